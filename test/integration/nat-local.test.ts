/**
 * NAT that stays on one chassis, with real parts: a private OVS (userspace
 * datapath and its conntrack), the embedded NB, the flowdrake agent with the
 * external network's physical network mapped to br-ex, "VMs" in namespaces
 * on br-int and an "external" host in a namespace on br-ex.
 *
 *   ext      flat on physnet1 (→ br-ex), external, 172.24.4.0/24; exthost .100
 *   net1     geneve 811, 10.81.1.0/24 ┐ router r1, gateway on ext at 172.24.4.10,
 *   net2     geneve 812, 10.81.2.0/24 ┘ this chassis its only gateway candidate
 *   vm1      10.81.1.11, floating IP 172.24.4.51
 *   vm2      10.81.1.12, no floating IP
 *   vm3      10.81.2.13, floating IP 172.24.4.53
 *
 * The hairpin: a VM reaches a floating IP of this chassis — vm2 (same subnet,
 * no floating IP) and vm3 (another subnet, its own floating IP) reach vm1's,
 * and vm1 its own — and the target sees the sender's floating IP, or the
 * gateway address for a VM without one, while the sender gets its replies
 * from the floating IP it sent to; the packets take the hairpin flows (for
 * vm1 to itself the one that clears in_port), not the physical network.
 *
 * Zone stability: with a TCP session open through vm1's floating IP (from the
 * external host) and one through SNAT (vm2 to the external host), a router
 * whose id hashes to r1's zone and sorts before it gets a gateway here: r1
 * keeps its zone, both sessions still echo, their conntrack entries are still
 * in r1's zone; and after an agent restart (the new router's gateway object
 * sorts first, so the NB alone would hand it r1's zone) the zones are the
 * same, nothing on the switch changes, and the sessions still echo.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { hashedZone } from "../../src/datapath/index.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";

/** TCP echo server (every line of every connection) that prints "peer <address>" per connection. */
const ECHO_SERVER = `
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("listening", flush=True)
def echo(c):
    with c:
        while True:
            d = c.recv(4096)
            if not d:
                return
            c.sendall(d)
while True:
    c, a = s.accept()
    print("peer", a[0], flush=True)
    threading.Thread(target=echo, args=(c,), daemon=True).start()
`;

/** One TCP session kept open: every stdin line is sent, and "echo <line>" printed when it comes back. */
const SESSION = `
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(3)
print("connected", s.getsockname()[1], flush=True)
for line in sys.stdin:
    s.sendall(line.encode())
    d = b""
    try:
        while not d.endswith(b"\\n"):
            c = s.recv(4096)
            if not c:
                print("closed", flush=True)
                sys.exit(1)
            d += c
        print("echo", d.decode().strip(), flush=True)
    except OSError as e:
        print("error", e, flush=True)
`;

const sb = useOvsSandbox({ label: "natlocal", bridges: ["br-int", "br-ex"] });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const vms: Record<string, VmPort> = {};
const procs: ChildProcess[] = [];

const SNAT_IP = "172.24.4.10";
const FIP1 = "172.24.4.51";
const FIP3 = "172.24.4.53";
const EXT_HOST = "172.24.4.100";

interface Proc {
  proc: ChildProcess;
  lines: string[];
}

/** A python program in a namespace, stdin open, its stdout lines collected; waits for `ready`. */
async function python(netns: string, program: string, args: string[], ready: string): Promise<Proc> {
  const proc = spawn("ip", ["netns", "exec", netns, "python3", "-c", program, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  procs.push(proc);
  const p: Proc = { proc, lines: [] };
  let buf = "";
  let err = "";
  proc.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split("\n");
    buf = parts.pop()!;
    p.lines.push(...parts);
  });
  proc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  await waitFor(
    () => {
      if (proc.exitCode !== null) throw new Error(`python in ${netns} exited: ${err}`);
      return p.lines.some((l) => l.startsWith(ready));
    },
    10_000,
    `${ready} from python in ${netns}`,
  );
  return p;
}

/** Send one line over an open session and wait for its echo (or the session's failure). */
async function echoes(s: Proc, text: string): Promise<boolean> {
  const from = s.lines.length;
  s.proc.stdin!.write(`${text}\n`);
  const done = await waitFor(
    () => s.lines.slice(from).find((l) => l.startsWith("echo ") || l.startsWith("error") || l === "closed"),
    10_000,
    `an answer to ${text}`,
  );
  return done === `echo ${text}`;
}

async function ping(netns: string, to: string): Promise<{ ok: boolean; out: string }> {
  const r = await run(["ping", "-c", "2", "-i", "0.2", "-W", "1", to], { netns, allowFailure: true });
  return { ok: r.code === 0, out: r.stdout + r.stderr };
}

/** One connection to an echo server: true when a line came back. */
async function connects(netns: string, host: string, port: number): Promise<boolean> {
  const s = await python(netns, SESSION, [host, String(port)], "connected").catch(() => undefined);
  if (!s) return false;
  const ok = await echoes(s, "hello");
  s.proc.kill("SIGKILL");
  return ok;
}

const peers = (s: Proc): string[] => s.lines.filter((l) => l.startsWith("peer ")).map((l) => l.slice(5));

async function realised(modRevision: number): Promise<void> {
  await waitFor(() => agent!.realised >= modRevision, 20_000, `revision ${modRevision} realised`);
}

/** conntrack entries of the userspace datapath, one line each. */
async function conntrack(): Promise<string[]> {
  const r = await sb().appctl("ovs-vswitchd", "dpctl/dump-conntrack");
  return r.stdout.split("\n").filter(Boolean);
}

/** The zone of the conntrack entry whose original direction is src:sport → dst:dport. */
async function zoneOf(src: string, sport: number, dst: string, dport: number): Promise<number | undefined> {
  const want = `orig=(src=${src},dst=${dst},sport=${sport},dport=${dport})`;
  const zones = (await conntrack())
    .filter((l) => l.includes(want))
    .map((l) => Number(/zone=(\d+)/.exec(l)?.[1] ?? 0))
    .filter((z) => z >= 0xff00);
  expect(zones.length, `${want} in a NAT zone`).toBeLessThanOrEqual(1);
  return zones[0];
}

function config() {
  return parseAgentConfig({
    chassis: "host1",
    tunnelIp: "192.0.2.1",
    ovsdb: sb().dbRemote,
    datapathType: "netdev",
    bridgeMappings: { physnet1: "br-ex" },
    metrics: "127.0.0.1:0",
    logLevel: "silent",
  });
}

beforeAll(async () => {
  dir = makeRunDir("nat-local-nb");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await sb().ofctl("add-flow", sb().mgmtRemote("br-ex"), "priority=0,actions=NORMAL");
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", {
    id: "ext",
    tenantId: "t1",
    networkType: "flat",
    physicalNetwork: "physnet1",
    external: true,
  });
  await api.create("subnet", {
    id: "extsub",
    tenantId: "t1",
    networkId: "ext",
    cidr: "172.24.4.0/24",
    gatewayIp: "172.24.4.1",
    enableDhcp: false,
  });
  await api.create("lrouter", { id: "r1", tenantId: "t1" });
  for (const n of [1, 2]) {
    await api.create("lswitch", {
      id: `net${n}`,
      tenantId: "t1",
      networkType: "geneve",
      segmentationId: 810 + n,
    });
    await api.create("subnet", {
      id: `sub${n}`,
      tenantId: "t1",
      networkId: `net${n}`,
      cidr: `10.81.${n}.0/24`,
      gatewayIp: `10.81.${n}.1`,
      enableDhcp: false,
    });
    await api.routerAddInterface("r1", { subnetId: `sub${n}` });
  }
  await api.create("snat", {
    id: "gw1",
    tenantId: "t1",
    routerId: "r1",
    externalNetworkId: "ext",
    externalIpAddress: SNAT_IP,
    gatewayChassis: ["host1"],
  });
  const VMS = [
    ["vm1", "net1", "sub1", "fa:16:3e:81:01:11", "10.81.1.11", FIP1],
    ["vm2", "net1", "sub1", "fa:16:3e:81:01:12", "10.81.1.12", undefined],
    ["vm3", "net2", "sub2", "fa:16:3e:81:02:13", "10.81.2.13", FIP3],
  ] as const;
  for (const [id, net, sub, mac, ip, fip] of VMS) {
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: mac,
      fixedIps: [{ subnetId: sub, ipAddress: ip }],
    });
    if (fip) {
      await api.create("fip", {
        id: `f-${id}`,
        tenantId: "t1",
        floatingNetworkId: "ext",
        floatingIpAddress: fip,
        portId: id,
      });
    }
  }
  agent = await Agent.start(config(), { store });
  for (const [id, , , mac, ip] of VMS) {
    vms[id] = await sb().addVm(id, {
      ifaceId: id,
      mac,
      ipCidr: `${ip}/24`,
      gateway: ip.replace(/\.\d+$/, ".1"),
    });
  }
  vms.exthost = await sb().addVm("exthost", {
    ifaceId: "exthost",
    bridge: "br-ex",
    mac: "02:00:00:24:04:64",
    ipCidr: `${EXT_HOST}/24`,
  });
  await waitFor(() => agent!.localPortCount() === 3, 20_000, "three ports bound");
  await agent.settle();
}, 120_000);

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("hairpin: a VM to a floating IP on its own chassis", () => {
  let server: Proc;
  beforeAll(async () => {
    server = await python(vms.vm1!.netns, ECHO_SERVER, ["8080"], "listening");
  });

  it("a VM without a floating IP on the same subnet: the target sees the gateway address, replies come from the floating IP", async () => {
    const p = await ping(vms.vm2!.netns, FIP1);
    expect(p.ok, p.out).toBe(true);
    expect(p.out).toMatch(new RegExp(`bytes from ${FIP1.replaceAll(".", "\\.")}: icmp_seq=1`));
    const before = peers(server).length;
    expect(await connects(vms.vm2!.netns, FIP1, 8080)).toBe(true);
    expect(peers(server).slice(before)).toEqual([SNAT_IP]);
  });

  it("a VM with a floating IP on another subnet: the target sees that floating IP", async () => {
    const p = await ping(vms.vm3!.netns, FIP1);
    expect(p.ok, p.out).toBe(true);
    expect(p.out).toMatch(new RegExp(`bytes from ${FIP1.replaceAll(".", "\\.")}: icmp_seq=1`));
    const before = peers(server).length;
    expect(await connects(vms.vm3!.netns, FIP1, 8080)).toBe(true);
    expect(peers(server).slice(before)).toEqual([FIP3]);
  });

  it("a VM to its own floating IP: its packets come back to it, from and to the floating IP", async () => {
    const p = await ping(vms.vm1!.netns, FIP1);
    expect(p.ok, p.out).toBe(true);
    expect(p.out).toMatch(new RegExp(`bytes from ${FIP1.replaceAll(".", "\\.")}: icmp_seq=1`));
    const before = peers(server).length;
    expect(await connects(vms.vm1!.netns, FIP1, 8080)).toBe(true);
    expect(peers(server).slice(before)).toEqual([FIP1]);
  });

  it("the packets took the hairpin flows, not the physical network", async () => {
    const { stdout } = await sb().ofctl("dump-flows", sb().mgmtRemote("br-int"), "table=37");
    const flows = stdout.split("\n");
    for (const ip of [FIP1, FIP3, SNAT_IP]) {
      const line = flows.find(
        (l) => l.includes(`nw_dst=${ip} `) && !l.includes("nw_src=") && l.includes("ct_clear"),
      );
      expect(line, `${ip}: ${flows.join("\n")}`).toMatch(/n_packets=[1-9]/);
    }
    // to itself: only vm1 sent from and to its own floating IP, and only that flow clears in_port
    const self = flows.filter((l) => l.includes("load:0->NXM_OF_IN_PORT[]"));
    expect(self.map((l) => /nw_src=([\d.]+),nw_dst=([\d.]+)/.exec(l)?.slice(1))).toEqual(
      expect.arrayContaining([
        [FIP1, FIP1],
        [FIP3, FIP3],
      ]),
    );
    expect(self).toHaveLength(2);
    expect(self.find((l) => l.includes(`nw_src=${FIP1},`))).toMatch(/n_packets=[1-9]/);
    expect(self.find((l) => l.includes(`nw_src=${FIP3},`))).toMatch(/n_packets=0,/);
  });
});

describe("NAT zones stay with their router", () => {
  const COLLIDING = (() => {
    for (let i = 0; i < 100_000; i++) if (hashedZone(`a${i}`) === hashedZone("r1")) return `a${i}`;
    throw new Error("no router id hashing to r1's zone");
  })();
  let zone: number;
  let viaFip: Proc;
  let viaSnat: Proc;
  let fipPort: number;
  let snatPort: number;

  beforeAll(async () => {
    zone = agent!.model.natZone("r1")!;
    expect(zone).toBe(hashedZone("r1"));
    await python(vms.vm1!.netns, ECHO_SERVER, ["7000"], "listening");
    await python(vms.exthost!.netns, ECHO_SERVER, ["7001"], "listening");
    viaFip = await python(vms.exthost!.netns, SESSION, [FIP1, "7000"], "connected");
    viaSnat = await python(vms.vm2!.netns, SESSION, [EXT_HOST, "7001"], "connected");
    fipPort = Number(viaFip.lines[0]!.split(" ")[1]);
    snatPort = Number(viaSnat.lines[0]!.split(" ")[1]);
    expect(await echoes(viaFip, "before")).toBe(true);
    expect(await echoes(viaSnat, "before")).toBe(true);
    expect(await zoneOf(EXT_HOST, fipPort, FIP1, 7000)).toBe(zone);
    expect(await zoneOf("10.81.1.12", snatPort, EXT_HOST, 7001)).toBe(zone);
  });

  it(`a router hashing to the same zone and sorting first (${COLLIDING}) gets another; open sessions keep working`, async () => {
    await api.create("lswitch", { id: "net3", tenantId: "t1", networkType: "geneve", segmentationId: 813 });
    await api.create("subnet", {
      id: "sub3",
      tenantId: "t1",
      networkId: "net3",
      cidr: "10.81.3.0/24",
      gatewayIp: "10.81.3.1",
      enableDhcp: false,
    });
    await api.create("lrouter", { id: COLLIDING, tenantId: "t1" });
    await api.routerAddInterface(COLLIDING, { subnetId: "sub3" });
    const g = await api.create("snat", {
      id: "gw0",
      tenantId: "t1",
      routerId: COLLIDING,
      externalNetworkId: "ext",
      externalIpAddress: "172.24.4.11",
      gatewayChassis: ["host1"],
    });
    await realised(g.modRevision);
    const other = agent!.model.natZone(COLLIDING);
    expect(other).toBeDefined();
    expect(other).not.toBe(zone);
    expect(agent!.model.natZone("r1")).toBe(zone);
    // the new router's flows are on the switch, in its own zone
    const nat = await sb().dumpFlows("br-int", ["table=35"]);
    expect(nat.some((l) => l.includes(`zone=${other}`) && l.includes("172.24.4.11"))).toBe(true);
    expect(nat.some((l) => l.includes(`zone=${zone}`) && l.includes(FIP1))).toBe(true);
    expect(await echoes(viaFip, "after-router")).toBe(true);
    expect(await echoes(viaSnat, "after-router")).toBe(true);
    expect(await zoneOf(EXT_HOST, fipPort, FIP1, 7000)).toBe(zone);
    expect(await zoneOf("10.81.1.12", snatPort, EXT_HOST, 7001)).toBe(zone);
  });

  it("a restarted agent gets the same zones back and changes nothing on the switch", async () => {
    const other = agent!.model.natZone(COLLIDING);
    await agent!.stop();
    agent = await Agent.start(config(), { store });
    expect(agent.model.natZone("r1")).toBe(zone);
    expect(agent.model.natZone(COLLIDING)).toBe(other);
    expect(agent.lastPass).toMatchObject({ added: 0, modified: 0, deleted: 0 });
    expect(await echoes(viaFip, "after-restart")).toBe(true);
    expect(await echoes(viaSnat, "after-restart")).toBe(true);
    expect(await zoneOf(EXT_HOST, fipPort, FIP1, 7000)).toBe(zone);
    expect(await zoneOf("10.81.1.12", snatPort, EXT_HOST, 7001)).toBe(zone);
  });
});
