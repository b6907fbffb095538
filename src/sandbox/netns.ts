/**
 * Network namespaces and veth pairs: the "hosts" and "VMs" of tests and of the
 * demo. A VM is a namespace with a real Linux IP stack whose eth0 is one end of
 * a veth pair; the other end is a port on an OVS bridge in the host namespace.
 */
import { run } from "../util/exec.js";
import { type Cleanup, uniqueToken } from "./rundir.js";

export async function createNetns(label: string, cleanup: Cleanup): Promise<string> {
  const name = `fd${uniqueToken()}-${label}`;
  await run(["ip", "netns", "add", name]);
  cleanup.add(`netns ${name}`, async () => {
    // Processes still inside keep the namespace alive; kill them first.
    const { stdout } = await run(["ip", "netns", "pids", name], { allowFailure: true });
    for (const pid of stdout.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
    await run(["ip", "netns", "del", name], { allowFailure: true });
  });
  await run(["ip", "link", "set", "lo", "up"], { netns: name });
  return name;
}

export function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ["ip", "netns", "exec", netns, ...argv] : argv;
}

/**
 * Create a veth pair with `a` in namespace `nsA` and `b` in `nsB` (undefined
 * means the caller's namespace), both up.
 */
export async function createVeth(
  a: { name: string; netns?: string | undefined },
  b: { name: string; netns?: string | undefined },
): Promise<void> {
  const argv = ["ip", "link", "add", a.name];
  if (a.netns) argv.push("netns", a.netns);
  argv.push("type", "veth", "peer", "name", b.name);
  if (b.netns) argv.push("netns", b.netns);
  await run(argv);
  await run(["ip", "link", "set", a.name, "up"], { netns: a.netns });
  await run(["ip", "link", "set", b.name, "up"], { netns: b.netns });
}
