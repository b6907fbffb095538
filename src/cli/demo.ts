/**
 * `flowdrake demo` (what `npm run demo` runs after setup): the whole system on
 * one machine with nothing but the embedded defaults, real parts only.
 *
 *   1. the NB CLI (`flowdrake nb apply -f examples/topology.yaml`, a child
 *      process) writes a small lab into an embedded NB store in a run dir:
 *      two Geneve networks, a router, a security group, three VM ports;
 *   2. a private Open vSwitch (userspace datapath) starts in its own namespace
 *      and the node agent (src/controller/agent.ts) starts on it with that NB,
 *      which the demo holds and serves on nb/nb.sock in the run dir (so
 *      `flowdrake nb … --db embedded:RUNDIR/nb` works beside it with --keep);
 *   3. three "VMs" (namespaces with a real IP stack) are plugged into br-int
 *      the Nova/os-vif way, by external_ids:iface-id — nothing else tells the
 *      agent about them;
 *   4. busybox udhcpc in every VM gets its address from the agent's DHCP app,
 *      vm1 pings vm2 (same network), vm3 (other network) pings vm1 through
 *      router r1 (the l3 app routes on this host: one first packet per
 *      direction goes to the agent, which installs a host route);
 *   5. a summary: the leases, packet-ins handled locally, flows per pipeline
 *      table with their packet counts, and what a ConnectX-6 Dx would carry;
 *   6. everything is torn down (also on failure or Ctrl-C) unless `--keep`.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { Agent } from "../controller/agent.js";
import { planFlowSet } from "./caps.js";
import { parseAgentConfig } from "../controller/config.js";
import { appOfCookie, table, tableById } from "../datapath/index.js";
import { openStore } from "../nb/store/open.js";
import type { NbStore } from "../nb/store/types.js";
import type { Port } from "../nb/model/schemas.js";
import { connectOpenFlow } from "../openflow/client.js";
import { flowFromStats } from "../openflow/flow.js";
import { runDhcpClient, type DhcpLease } from "../sandbox/dhcp-client.js";
import { OvsSandbox, type VmPort } from "../sandbox/ovs.js";
import { makeRunDir } from "../sandbox/rundir.js";
import { TUNNEL_PORT_NAMES } from "../controller/tunnel-ports.js";
import { run } from "../util/exec.js";
import { setLogLevel } from "../util/log.js";
import { packageRoot } from "../util/paths.js";

const ROOT = packageRoot();
const TOPOLOGY = join(ROOT, "examples/topology.yaml");
const CLI = join(ROOT, "dist/src/cli/main.js");
const VMS = ["vm1", "vm2", "vm3"] as const;

export interface DemoResult {
  ping: boolean;
  /** vm3 → vm1 across router r1, with the hop limit decremented once. */
  routed: boolean;
  leases: Record<string, DhcpLease | undefined>;
}

export async function runDemo(opts: { keep?: boolean; out?: (s: string) => void } = {}): Promise<DemoResult> {
  const say = opts.out ?? ((s: string) => process.stdout.write(`${s}\n`));
  // The demo narrates; the components' own logs (stderr) only when something is wrong.
  if (!process.env.FLOWDRAKE_LOG_LEVEL) setLogLevel("error");
  const dir = makeRunDir("demo");
  const nbUrl = `embedded:${join(dir, "nb")}`;
  let sb: OvsSandbox | undefined;
  let agent: Agent | undefined;
  let store: NbStore | undefined;
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await agent?.stop();
    await store?.close();
    await sb?.stop();
    await run(["rm", "-rf", dir], { allowFailure: true });
  };
  const onSignal = (): void => {
    void stop().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    say(`1. NB: flowdrake nb apply -f examples/topology.yaml --db ${nbUrl}`);
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run 'bash scripts/setup' first`);
    const applied = await run([process.execPath, CLI, "nb", "apply", "-f", TOPOLOGY, "--db", nbUrl], {
      allowFailure: true,
    });
    if (applied.code !== 0)
      throw new Error(`nb apply failed (${applied.code}): ${applied.stderr}${applied.stdout}`);
    for (const l of applied.stdout.trim().split("\n")) say(`   ${l}`);

    say("2. a private Open vSwitch (userspace datapath) in its own namespace, and the flowdrake agent on it");
    sb = await OvsSandbox.start({ label: "demo", datapath: "netdev" });
    store = await openStore(nbUrl, { serve: true });
    agent = await Agent.start(
      parseAgentConfig({
        chassis: "host1",
        tunnelIp: "192.0.2.1",
        ovsdb: sb.dbRemote,
        datapathType: "netdev",
        metrics: "",
        logLevel: "error",
      }),
      { store },
    );
    say(`   agent host1 ready: ${agent.lastPass?.flows ?? 0} flows (the pipeline's table-miss flows)`);

    say("3. plugging vm1, vm2, vm3 into br-int by external_ids:iface-id (the Nova/os-vif/OVN convention)");
    const vms: Record<string, VmPort> = {};
    for (const id of VMS) {
      const port = (await store.get("lport", id))?.value as Port | undefined;
      if (!port) throw new Error(`the topology has no port ${id}`);
      vms[id] = await sb.addVm(id, { ifaceId: id, mac: port.macAddress });
    }
    const a = agent;
    for (let i = 0; i < 200 && a.localPortCount() !== VMS.length; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const pass = await a.settle();
    say(`   bound ${a.localPortCount()} ports; ${pass?.flows ?? 0} flows in place`);

    say("4. DHCP (busybox udhcpc in each VM, answered by the agent) and ping");
    const leases: Record<string, DhcpLease | undefined> = {};
    for (const id of VMS) {
      leases[id] = await runDhcpClient(vms[id]!.netns, { apply: true, timeoutS: 10 });
      const l = leases[id];
      say(
        l
          ? `   ${id}: ${l.ip}/${l.mask ?? l.subnet} router ${l.router ?? "-"} dns ${l.dns ?? "-"} mtu ${l.mtu ?? "-"} lease ${l.lease ?? "-"}s`
          : `   ${id}: no DHCP answer`,
      );
    }
    const pingOut = await run(["ping", "-c", "3", "-i", "0.2", "-W", "2", leases.vm2?.ip ?? "10.10.0.12"], {
      netns: vms.vm1!.netns,
      allowFailure: true,
    });
    const summary =
      pingOut.stdout.split("\n").find((l) => l.includes("packets transmitted")) ?? pingOut.stderr;
    const ping = pingOut.code === 0;
    say(`   ping vm1 → vm2 (same network): ${ping ? "OK" : "FAILED"} (${summary.trim()})`);
    const l3Before = a.packetIns.get("l3") ?? 0;
    const puntsBefore = await l3Punts(sb);
    const cross = await run(["ping", "-c", "3", "-i", "0.2", "-W", "2", leases.vm1?.ip ?? "10.10.0.11"], {
      netns: vms.vm3!.netns,
      allowFailure: true,
    });
    const routed = cross.code === 0 && /ttl=63/.test(cross.stdout);
    const crossSummary =
      cross.stdout.split("\n").find((l) => l.includes("packets transmitted")) ?? cross.stderr;
    say(
      `   ping vm3 → vm1 (other network, through router r1): ${routed ? "OK, TTL 63" : "FAILED"} (${crossSummary.trim()});` +
        ` first packets to the agent: ${(await l3Punts(sb)) - puntsBefore} (one host route per direction, as the switch counted them), the rest stayed in OVS;` +
        ` l3 packet-ins the agent handled: ${(a.packetIns.get("l3") ?? 0) - l3Before}`,
    );

    say("5. summary");
    const pins = [...a.packetIns].map(([app, n]) => `${app} ${n}`).join(", ") || "none";
    say(`   packet-ins handled by this node's agent: ${pins}`);
    const conn = await connectOpenFlow(sb.mgmtRemote());
    try {
      const stats = await conn.flowStats();
      const perTable = new Map<number, { flows: number; packets: bigint }>();
      for (const s of stats) {
        const t = perTable.get(s.tableId) ?? { flows: 0, packets: 0n };
        t.flows++;
        t.packets += s.packetCount;
        perTable.set(s.tableId, t);
      }
      say("   flows per pipeline table (read back over OpenFlow):");
      for (const [id, t] of [...perTable].sort(([x], [y]) => x - y)) {
        say(
          `     ${String(id).padStart(2)} ${(tableById(id)?.name ?? "?").padEnd(17)} ${String(t.flows).padStart(3)} flows  ${t.packets} packets`,
        );
      }
      const hardware = new Map<number, string>();
      VMS.forEach((id, i) => hardware.set(vms[id]!.ofport, `pf0vf${i}`));
      const tunnels = new Map<number, "geneve" | "vxlan">();
      for (const encap of ["geneve", "vxlan"] as const) {
        const p = a.view.tunnelPort(encap);
        if (p) tunnels.set(p, encap);
      }
      const flows = stats.map(flowFromStats);
      const plan = planFlowSet(flows, "connectx-6-dx", { hardware, tunnels });
      const byReason = new Map<string, number>();
      let offloaded = 0;
      for (const d of plan.decisions.values()) {
        if (d.offloaded) offloaded++;
        byReason.set(d.reason, (byReason.get(d.reason) ?? 0) + 1);
      }
      say(
        `   on a ConnectX-6 Dx in switchdev mode (VMs as representors pf0vf0-2, ${TUNNEL_PORT_NAMES.geneve} as genev_sys_6081):` +
          ` ${offloaded} of ${flows.length} flows offloaded, ${plan.tc.length} tc rules`,
      );
      for (const [reason, n] of [...byReason].sort((x, y) => y[1] - x[1]).slice(0, 6)) {
        say(`     ${String(n).padStart(3)} × ${reason}`);
      }
    } finally {
      conn.close();
    }

    if (opts.keep) {
      say("");
      say("--keep: left running. Explore with:");
      say(`  ovs-ofctl -O OpenFlow13 dump-flows ${sb.mgmtRemote()}`);
      say(`  ip netns exec ${vms.vm1!.netns} ping ${leases.vm2?.ip ?? "10.10.0.12"}`);
      say(`  ovs-vsctl --db=${sb.dbRemote} show`);
      say("  flowdrake pipeline");
      say(`  flowdrake nb port list --db ${nbUrl}`);
      say(`run dir ${dir}; press Ctrl-C to tear down`);
      await new Promise<never>(() => {});
    }
    return { ping, routed, leases };
  } finally {
    if (!opts.keep) {
      await stop();
      say("6. torn down: agent, namespaces, OVS daemons, NB store and run dir removed");
    }
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export function register(program: Command): void {
  program
    .command("demo")
    .description(
      "run flowdrake on one machine: embedded NB, private OVS, the agent, three VMs, real DHCP, ping and routing",
    )
    .option("--keep", "leave everything running for exploration (Ctrl-C tears it down)")
    .action(async (opts: { keep?: boolean }) => {
      const r = await runDemo(opts);
      if (!r.ping || !r.routed || Object.values(r.leases).some((l) => !l)) process.exitCode = 1;
    });
}

/** Packets the switch sent to the agent from the l3 table (its punt flows' counters). */
async function l3Punts(sb: OvsSandbox): Promise<number> {
  const conn = await connectOpenFlow(sb.mgmtRemote());
  try {
    let n = 0n;
    for (const st of await conn.flowStats()) {
      if (st.tableId !== table("l3") || appOfCookie(st.cookie) !== "l3") continue;
      const toController = st.instructions.some(
        (i) =>
          i.type === "apply_actions" && i.actions.some((x) => x.type === "output" && x.port === 0xfffffffd),
      );
      if (toController) n += st.packetCount;
    }
    return Number(n);
  } finally {
    conn.close();
  }
}
