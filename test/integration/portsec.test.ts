/**
 * Port security end to end: a private OVS (userspace datapath), the embedded
 * NB, the flowdrake agent, and VMs in namespaces that really put spoofed
 * frames on their wire (test/harness/frame-tool.py, an AF_PACKET socket) —
 * the frames of test/unit/portsec-app.test.ts, built by
 * test/harness/spoof-frames.ts. A receiver VM on the same network sniffs
 * its interface; every frame is sent to broadcast or all-nodes, so l2 floods
 * whatever port security lets through to it.
 *
 *   net1 (port security on)    a1 sender, a2 sender with allowed address
 *                              pairs (one with its own MAC), r1 receiver
 *   net2 (port security off)   b1 sender, b2 receiver
 *
 * Whether a frame arrived is decided without a sleep: after the frames
 * under test the sender sends a sentinel (a frame port security passes);
 * once the receiver has it, a second sentinel goes out, and once that one
 * arrived too, everything sent before the first has been through
 * ovs-vswitchd and out to the receiver (one port, one thread, one queue).
 * Each refusal is paired with a frame that differs in the checked field
 * and does arrive, so a frame lost for another reason cannot pass for a
 * refusal. The VMs' own stacks (ARP, neighbour discovery, ping over IPv4,
 * IPv6 and link-local) get through the same checks.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { linkLocalFromMac } from "../../src/packet/ndp.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";
import { arp, na, ra, udp } from "../harness/spoof-frames.js";

const TOOL = join(dirname(fileURLToPath(import.meta.url)), "../harness/frame-tool.py");
const sb = useOvsSandbox({ label: "portsec" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const procs: ChildProcess[] = [];

const PAIR_MAC = "fa:16:3e:81:aa:01";
const VM = {
  a1: { net: "net1", mac: "fa:16:3e:81:00:11", ip: "10.81.0.11", ip6: "fd81::11" },
  a2: { net: "net1", mac: "fa:16:3e:81:00:12", ip: "10.81.0.12", ip6: undefined },
  r1: { net: "net1", mac: "fa:16:3e:81:00:20", ip: "10.81.0.20", ip6: "fd81::20" },
  b1: { net: "net2", mac: "fa:16:3e:82:00:11", ip: "10.82.0.11", ip6: undefined },
  b2: { net: "net2", mac: "fa:16:3e:82:00:20", ip: "10.82.0.20", ip6: undefined },
} as const;
type VmName = keyof typeof VM;
const vms: Partial<Record<VmName, VmPort>> = {};
const LL_A1 = linkLocalFromMac(VM.a1.mac);

/** A receiver's sniffer: the hex of every frame its interface received so far. */
interface Sniffer {
  frames: Set<string>;
  seen(frame: Buffer): boolean;
}
const sniffers: Partial<Record<VmName, Sniffer>> = {};

async function sniff(vm: VmName): Promise<Sniffer> {
  const proc = spawn("ip", ["netns", "exec", vms[vm]!.netns, "python3", TOOL, "sniff", "eth0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  procs.push(proc);
  const s: Sniffer = {
    frames: new Set(),
    seen: (f) => {
      const hex = f.toString("hex");
      if (s.frames.has(hex)) return true;
      for (const got of s.frames) if (got.startsWith(hex)) return true;
      return false;
    },
  };
  let buf = "";
  let listening = false;
  proc.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split("\n");
    buf = lines.pop()!;
    for (const l of lines) {
      if (l === "listening") listening = true;
      else s.frames.add(l);
    }
  });
  await waitFor(() => listening, 20_000, `the sniffer on ${vm}`);
  return s;
}

/** One sender process a VM (frame-tool.py send, frames on stdin): a spawn costs seconds on a busy machine. */
const senders: Partial<Record<VmName, { proc: ChildProcess; acks: number }>> = {};

async function send(vm: VmName, frames: Buffer[]): Promise<void> {
  let s = senders[vm];
  if (!s) {
    const proc = spawn("ip", ["netns", "exec", vms[vm]!.netns, "python3", TOOL, "send", "eth0"], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    procs.push(proc);
    const made = { proc, acks: 0 };
    let buf = "";
    proc.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\n");
      buf = lines.pop()!;
      made.acks += lines.filter((l) => l.startsWith("sent ")).length;
    });
    s = senders[vm] = made;
  }
  const want = s.acks + 1;
  s.proc.stdin!.write(`${frames.map((f) => f.toString("hex")).join(" ")}\n`);
  await waitFor(() => s.acks >= want, 20_000, `${vm} to send ${frames.length} frames`);
}

let sentinels = 0;
function sentinel(vm: VmName): Buffer {
  const v = VM[vm];
  return udp({ mac: v.mac, src: v.ip, sport: 40000, dport: 40000, marker: `sentinel-${vm}-${sentinels++}` });
}

/** Send `frames` from `from`, then two sentinels (see the module comment); which frames reached `to`. */
async function delivered(from: VmName, to: VmName, frames: Buffer[]): Promise<boolean[]> {
  const rx = sniffers[to]!;
  const first = sentinel(from);
  await send(from, [...frames, first]);
  await waitFor(() => rx.seen(first), 20_000, `${to} to receive the first sentinel from ${from}`);
  const second = sentinel(from);
  await send(from, [second]);
  await waitFor(() => rx.seen(second), 20_000, `${to} to receive the second sentinel from ${from}`);
  return frames.map((f) => rx.seen(f));
}

/** Write a change and wait until the agent's switch realises it. */
async function realised<T extends { modRevision: number }>(write: Promise<T>): Promise<void> {
  const { modRevision } = await write;
  await waitFor(() => agent!.realised >= modRevision, 20_000, `revision ${modRevision} realised`);
}

/** One ping answered; the VM's stack resolves the neighbour first (a few tries when the machine is busy). */
async function reaches(from: VmName, to: string): Promise<boolean> {
  return waitFor(() => pings(from, to), 30_000, `a ping from ${from} to ${to} answered`);
}

async function pings(from: VmName, to: string): Promise<boolean> {
  const r = await run(["ping", "-c", "1", "-W", "2", to], { netns: vms[from]!.netns, allowFailure: true });
  return r.code === 0;
}

beforeAll(async () => {
  dir = makeRunDir("portsec");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  await api.create("lswitch", { id: "net1", tenantId: "t1", networkType: "geneve", segmentationId: 801 });
  await api.create("lswitch", {
    id: "net2",
    tenantId: "t1",
    networkType: "geneve",
    segmentationId: 802,
    portSecurityEnabled: false,
  });
  await api.create("subnet", {
    id: "sub1",
    tenantId: "t1",
    networkId: "net1",
    cidr: "10.81.0.0/24",
    gatewayIp: "10.81.0.1",
  });
  await api.create("subnet", {
    id: "sub16",
    tenantId: "t1",
    networkId: "net1",
    cidr: "fd81::/64",
    ipVersion: 6,
    gatewayIp: "fd81::1",
  });
  await api.create("subnet", {
    id: "sub2",
    tenantId: "t1",
    networkId: "net2",
    cidr: "10.82.0.0/24",
    gatewayIp: "10.82.0.1",
  });
  for (const [id, v] of Object.entries(VM) as [VmName, (typeof VM)[VmName]][]) {
    const sub = v.net === "net1" ? "sub1" : "sub2";
    await api.create("lport", {
      id,
      tenantId: "t1",
      networkId: v.net,
      macAddress: v.mac,
      fixedIps: [
        { subnetId: sub, ipAddress: v.ip },
        ...(v.ip6 ? [{ subnetId: "sub16", ipAddress: v.ip6 }] : []),
      ],
      ...(id === "a2"
        ? {
            allowedAddressPairs: [
              { ipAddress: "10.81.0.100" },
              { ipAddress: "10.81.0.128/25", macAddress: PAIR_MAC },
            ],
          }
        : {}),
    });
  }
  agent = await Agent.start(
    parseAgentConfig({
      chassis: "host1",
      tunnelIp: "192.0.2.1",
      ovsdb: sb().dbRemote,
      datapathType: "netdev",
      metrics: "",
      logLevel: "silent",
    }),
    { store },
  );
  for (const [id, v] of Object.entries(VM) as [VmName, (typeof VM)[VmName]][]) {
    vms[id] = await sb().addVm(id, { ifaceId: id, mac: v.mac, ipCidr: `${v.ip}/24` });
    if (v.ip6) await run(["ip", "-6", "addr", "add", `${v.ip6}/64`, "dev", "eth0"], { netns: vms[id].netns });
  }
  await waitFor(() => agent!.localPortCount() === 5, 20_000, "five ports bound");
  await agent.settle();
  sniffers.r1 = await sniff("r1");
  sniffers.b2 = await sniff("b2");
}, 120_000);

afterAll(async () => {
  for (const p of procs) p.kill("SIGKILL");
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("port security with VMs sending spoofed frames", { timeout: 120_000 }, () => {
  it("a VM's own stack gets through: ping over IPv4, IPv6 and link-local (ARP and neighbour discovery)", async () => {
    expect(await reaches("a1", VM.r1.ip)).toBe(true);
    // DAD must finish first (an address stays tentative until its NS from :: went unanswered)
    for (const vm of ["a1", "r1"] as const) {
      await waitFor(
        async () =>
          !(
            await run(["ip", "-6", "addr", "show", "dev", "eth0"], { netns: vms[vm]!.netns })
          ).stdout.includes("tentative"),
        20_000,
        `DAD on ${vm}`,
      );
    }
    expect(await reaches("a1", VM.r1.ip6!)).toBe(true);
    // r1's own link-local address (formed from the MAC the veth had when it came up): not known to the
    // NB, so a1's solicitation floods, and r1's stack answers with its own advertisement
    const shown = (
      await run(["ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"], { netns: vms.r1!.netns })
    ).stdout;
    const ll = /inet6 (fe80::[0-9a-f:]+)\//.exec(shown)?.[1];
    expect(ll, shown).toBeDefined();
    expect(await reaches("a1", `${ll}%eth0`)).toBe(true);
  });

  it("no DHCP server reply leaves a VM, from its own address or from 0.0.0.0", async () => {
    const own = udp({ mac: VM.a1.mac, src: VM.a1.ip, sport: 67, dport: 68, marker: "dhcp-own" });
    const zero = udp({ mac: VM.a1.mac, src: "0.0.0.0", sport: 67, dport: 68, marker: "dhcp-zero" });
    const unicast = udp({
      mac: VM.a1.mac,
      src: VM.a1.ip,
      dst: VM.r1.ip,
      dstMac: VM.r1.mac,
      sport: 67,
      dport: 68,
      marker: "dhcp-unicast",
    });
    const otherPort = udp({ mac: VM.a1.mac, src: VM.a1.ip, sport: 66, dport: 68, marker: "dhcp-66" });
    expect(await delivered("a1", "r1", [own, zero, unicast, otherPort])).toEqual([false, false, false, true]);
  });

  it("no ARP naming another sender MAC than the frame's", async () => {
    const forged = arp({ mac: VM.a1.mac, sha: VM.r1.mac, spa: VM.a1.ip, tpa: VM.r1.ip });
    const forgedProbe = arp({ mac: VM.a1.mac, sha: VM.r1.mac, spa: "0.0.0.0", tpa: VM.a1.ip, op: 1 });
    const honest = arp({ mac: VM.a1.mac, spa: VM.a1.ip, tpa: VM.r1.ip });
    expect(await delivered("a1", "r1", [forged, forgedProbe, honest])).toEqual([false, false, true]);
  });

  it("an allowed address pair with its own MAC sends from that MAC only, with the pair's addresses only", async () => {
    const pairIp = udp({ mac: PAIR_MAC, src: "10.81.0.130", sport: 5000, dport: 5000, marker: "pair-ip" });
    const pairArp = arp({ mac: PAIR_MAC, spa: "10.81.0.130", tpa: VM.r1.ip });
    const portMac = udp({
      mac: VM.a2.mac,
      src: "10.81.0.130",
      sport: 5000,
      dport: 5000,
      marker: "pair-portmac",
    });
    const portMacArp = arp({ mac: VM.a2.mac, spa: "10.81.0.130", tpa: VM.r1.ip });
    const pairMacPortIp = udp({
      mac: PAIR_MAC,
      src: VM.a2.ip,
      sport: 5000,
      dport: 5000,
      marker: "pair-mac-portip",
    });
    const plainPair = udp({
      mac: VM.a2.mac,
      src: "10.81.0.100",
      sport: 5000,
      dport: 5000,
      marker: "plain-pair",
    });
    expect(
      await delivered("a2", "r1", [pairIp, pairArp, portMac, portMacArp, pairMacPortIp, plainPair]),
    ).toEqual([true, true, false, false, false, true]);
  });

  it("port security off on the network passes anything from its ports; turned on, the same frames drop", async () => {
    const frames = (tag: string): Buffer[] => [
      udp({ mac: "fa:16:3e:99:99:99", src: "10.82.0.99", sport: 5000, dport: 5000, marker: `spoof-${tag}` }),
      udp({ mac: VM.b1.mac, src: VM.b1.ip, sport: 67, dport: 68, marker: `dhcp-${tag}` }),
      arp({ mac: VM.b1.mac, sha: VM.b2.mac, spa: "10.82.0.99", tpa: VM.b2.ip }),
    ];
    expect(await delivered("b1", "b2", frames("off"))).toEqual([true, true, true]);
    await realised(api.update("lswitch", "net2", { portSecurityEnabled: true }));
    expect(await delivered("b1", "b2", frames("on").slice(0, 2))).toEqual([false, false]);
    await realised(api.update("lswitch", "net2", { portSecurityEnabled: false }));
    expect(await delivered("b1", "b2", frames("off-again").slice(0, 2))).toEqual([true, true]);
  });

  it("no DHCPv6 server reply or router advertisement leaves a VM", async () => {
    const dhcp6 = udp({ mac: VM.a1.mac, src: LL_A1, sport: 547, dport: 546, marker: "dhcp6-server" });
    const advert = ra({ mac: VM.a1.mac, src: LL_A1 });
    const client = udp({ mac: VM.a1.mac, src: LL_A1, sport: 5000, dport: 546, marker: "dhcp6-5000" });
    expect(await delivered("a1", "r1", [dhcp6, advert, client])).toEqual([false, false, true]);
  });

  it("no neighbour advertisement for another VM's address, or with another link-layer address", async () => {
    const poison = na({ mac: VM.a1.mac, src: VM.a1.ip6!, target: VM.r1.ip6! });
    const poisonLl = na({ mac: VM.a1.mac, src: LL_A1, target: VM.r1.ip6! });
    const otherTll = na({ mac: VM.a1.mac, src: VM.a1.ip6!, target: VM.a1.ip6!, ll: VM.r1.mac });
    const own = na({ mac: VM.a1.mac, src: VM.a1.ip6!, target: VM.a1.ip6! });
    expect(await delivered("a1", "r1", [poison, poisonLl, otherTll, own])).toEqual([
      false,
      false,
      false,
      true,
    ]);
  });
});
