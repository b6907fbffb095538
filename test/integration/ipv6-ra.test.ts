/**
 * Router advertisements against real hosts through a real switch: a private
 * OVS (netdev datapath) with three "VMs" (namespaces on veth ports), each on
 * its own network with one IPv6 subnet — slaac, dhcpv6-stateful,
 * dhcpv6-stateless — behind a router leg. flowdrake's OpenFlow client punts
 * router solicitations; `handleRouterSolicitation` decides and a packet_out
 * answers out of the asking port. Periodic RAs come from `decideRa` driven
 * by an RaScheduler on a real timer.
 *
 *   - The Linux kernel in vm1 solicits when its link comes up and configures
 *     itself from the unicast answer: a SLAAC address in the prefix (EUI-64
 *     of its MAC), the default route via the router's link-local address,
 *     the network's MTU.
 *   - rdisc6 (ndisc6) in each VM shows the flags, prefix flags, MTU, RDNSS
 *     and DNSSL its subnet's mode calls for.
 *   - vm3's kernel, told never to solicit, configures its address from the
 *     periodic multicast RA alone.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decideRa,
  handleRouterSolicitation,
  type RaDecision,
  raConfig,
  type RsContext,
} from "../../src/apps/ipv6/ra.js";
import { RaScheduler } from "../../src/apps/ipv6/schedule.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import { linkLocalFromMac, parseEthernet, slaacAddress } from "../../src/packet/index.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";
import { bounceLink, type Lab, needBinary, startLab, vmSysctl, waitLinkLocal } from "./ipv6-lab.js";

const sandbox = useOvsSandbox({ label: "ra6", datapath: "netdev" });

const ROUTER_MAC = "fa:16:3e:aa:00:10";
const ROUTER_LL = linkLocalFromMac(ROUTER_MAC);
const MODES = ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"] as const;

function network(i: number): Network {
  return {
    id: `net${i}`,
    tenantId: "t1",
    name: `net${i}`,
    description: "",
    networkType: "geneve",
    segmentationId: 200 + i,
    mtu: 1400,
    portSecurityEnabled: true,
  } as Network;
}

function subnet(i: number): Subnet {
  const mode = MODES[i - 1]!;
  return {
    id: `sub${i}`,
    tenantId: "t1",
    name: `sub${i}`,
    description: "",
    networkId: `net${i}`,
    cidr: `2001:db8:${i}0::/64`,
    ipVersion: 6,
    gatewayIp: `2001:db8:${i}0::1`,
    allocationPools: [],
    enableDhcp: true,
    dhcpOptions: {},
    dnsNameservers: [`2001:db8:${i}0::53`, "10.0.0.53"],
    hostRoutes: [],
    ipv6RaMode: mode,
    ipv6AddressMode: mode,
  } as Subnet;
}

function port(i: number, mac: string): Port {
  return {
    id: `port${i}`,
    tenantId: "t1",
    name: `vm${i}`,
    description: "",
    networkId: `net${i}`,
    macAddress: mac,
    fixedIps: [{ subnetId: `sub${i}`, ipAddress: slaacAddress(`2001:db8:${i}0::`, mac) }],
    deviceOwner: "compute:nova",
    deviceId: `vm${i}`,
    adminStateUp: true,
    portSecurityEnabled: true,
    allowedAddressPairs: [],
    securityGroups: [],
    extraDhcpOptions: [],
  } as Port;
}

const MACS = ["fa:16:3e:00:10:05", "fa:16:3e:00:20:05", "fa:16:3e:00:30:05"];
const config = raConfig({ maxRtrAdvInterval: 4, minRtrAdvInterval: 3 });

interface Seen {
  ofport: number;
  ipSrc?: string;
  decision: RaDecision;
}

let lab: Lab;
const vms: VmPort[] = [];
const contexts = new Map<number, RsContext>();
const seen: Seen[] = [];
const periodic: { ofport: number; at: number }[] = [];
const periodicFailures: string[] = [];
const timers: NodeJS.Timeout[] = [];

beforeAll(async () => {
  needBinary("rdisc6", "ndisc6");
  const sb = sandbox();
  for (let i = 1; i <= 3; i++) {
    const vm = await sb.addVm(`ra6v${i}`, { mac: MACS[i - 1], ifaceId: `port${i}` });
    vms.push(vm);
    // The namespace's own view of IPv6: a host that accepts RAs and forms EUI-64 addresses.
    await vmSysctl(vm.netns, "forwarding", 0);
    await vmSysctl(vm.netns, "accept_ra", 1);
    await vmSysctl(vm.netns, "addr_gen_mode", 0);
    contexts.set(vm.ofport, {
      port: port(i, MACS[i - 1]!),
      macAddress: ROUTER_MAC,
      subnets: [subnet(i)],
      network: network(i),
      domain: "flowdrake.test",
      config,
    });
  }
  lab = await startLab(sb, (inPort, data, l) => {
    const ctx = contexts.get(inPort);
    if (!ctx) return;
    const decision = handleRouterSolicitation(data, ctx);
    let ipSrc: string | undefined;
    try {
      ipSrc = parseEthernet(data).ipv6?.src;
    } catch {
      // left undefined: the decision says why
    }
    seen.push({ ofport: inPort, ipSrc, decision });
    if (decision.kind === "send") void l.packetOut(inPort, decision.frame);
  });
}, 60_000);

afterAll(() => {
  for (const t of timers) clearTimeout(t);
  lab?.close();
});

async function rdisc6(netns: string): Promise<string> {
  const r = await run(["rdisc6", "-1", "-r", "3", "-w", "1500", "eth0"], {
    netns,
    timeoutMs: 20_000,
    allowFailure: true,
  });
  expect(r.code, `rdisc6 failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

function field(out: string, name: string): string[] {
  const re = new RegExp(`^\\s*${name.replace(/[.()]/g, "\\$&")}\\s*:\\s*(.*?)\\s*$`, "gm");
  return [...out.matchAll(re)].map((m) => m[1]!);
}

describe("router advertisements through ovs-vswitchd", () => {
  it("vm1's kernel solicits on link-up and configures SLAAC, the default route and the MTU from the answer", async () => {
    const vm = vms[0]!;
    const before = seen.length;
    await bounceLink(vm.netns);
    const want = slaacAddress("2001:db8:10::", MACS[0]!);
    const addr = await waitFor(
      async () => {
        const { stdout } = await run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"], {
          netns: vm.netns,
        });
        return stdout.includes(`inet6 ${want}/64`) ? stdout : undefined;
      },
      20_000,
      `SLAAC address ${want} on vm1`,
    );
    expect(addr).toMatch(/dynamic/);
    const route = await waitFor(
      async () => (await run(["ip", "-6", "route", "show", "default"], { netns: vm.netns })).stdout.trim(),
      10_000,
      "a default route on vm1",
    );
    expect(route).toMatch(new RegExp(`^default via ${ROUTER_LL} dev eth0 proto ra `));
    const mtu = (await run(["cat", "/proc/sys/net/ipv6/conf/eth0/mtu"], { netns: vm.netns })).stdout.trim();
    expect(mtu).toBe("1400");
    // The kernel's solicitation came from its link-local address and was answered unicast to it.
    const ll = await waitLinkLocal(vm.netns);
    const answered = seen.slice(before).filter((s) => s.ofport === vm.ofport && s.decision.kind === "send");
    expect(answered.length).toBeGreaterThanOrEqual(1);
    for (const s of answered) {
      expect(s.ipSrc).toBe(ll);
      expect(s.decision).toMatchObject({ to: { mac: MACS[0], ip: ll }, managed: false, other: false });
    }
  }, 40_000);

  it("rdisc6 in vm1 (slaac) sees no M/O flags, an autonomous on-link prefix, the MTU, RDNSS and DNSSL", async () => {
    const vm = vms[0]!;
    await waitLinkLocal(vm.netns);
    const out = await rdisc6(vm.netns);
    expect(field(out, "Stateful address conf.")).toEqual(["No"]);
    expect(field(out, "Stateful other conf.")).toEqual(["No"]);
    expect(field(out, "Router preference")).toEqual(["medium"]);
    expect(field(out, "Router lifetime")[0]).toMatch(/^12 \(0x0000000c\) seconds$/);
    expect(field(out, "Prefix")).toEqual(["2001:db8:10::/64"]);
    expect(field(out, "On-link")).toEqual(["Yes"]);
    expect(field(out, "Autonomous address conf.")).toEqual(["Yes"]);
    expect(field(out, "MTU")).toEqual(["1400 bytes (valid)"]);
    expect(field(out, "Recursive DNS server")).toEqual(["2001:db8:10::53"]);
    expect(field(out, "DNS search list")).toEqual(["flowdrake.test"]);
    expect(field(out, "Source link-layer address")).toEqual([ROUTER_MAC.toUpperCase()]);
    expect(out).toContain(`from ${ROUTER_LL}`);
  }, 40_000);

  it("rdisc6 in vm2 (dhcpv6-stateful) sees M set and a prefix without A", async () => {
    const vm = vms[1]!;
    await waitLinkLocal(vm.netns);
    const out = await rdisc6(vm.netns);
    expect(field(out, "Stateful address conf.")).toEqual(["Yes"]);
    expect(field(out, "Stateful other conf.")).toEqual(["No"]);
    expect(field(out, "Prefix")).toEqual(["2001:db8:20::/64"]);
    expect(field(out, "On-link")).toEqual(["Yes"]);
    expect(field(out, "Autonomous address conf.")).toEqual(["No"]);
    expect(field(out, "Recursive DNS server")).toEqual(["2001:db8:20::53"]);
  }, 40_000);

  it("rdisc6 in vm3 (dhcpv6-stateless) sees O set and an autonomous prefix", async () => {
    const vm = vms[2]!;
    await waitLinkLocal(vm.netns);
    const out = await rdisc6(vm.netns);
    expect(field(out, "Stateful address conf.")).toEqual(["No"]);
    expect(field(out, "Stateful other conf.")).toEqual(["Yes"]);
    expect(field(out, "Prefix")).toEqual(["2001:db8:30::/64"]);
    expect(field(out, "Autonomous address conf.")).toEqual(["Yes"]);
  }, 40_000);

  it("vm3's kernel, never soliciting, configures SLAAC from the scheduler's periodic multicast RAs", async () => {
    const vm = vms[2]!;
    await vmSysctl(vm.netns, "router_solicitations", 0);
    await bounceLink(vm.netns);
    const ctx = contexts.get(vm.ofport)!;
    const sched = new RaScheduler(config);
    const fire = (): void => {
      const d = decideRa(ctx);
      if (d.kind === "send") void lab.packetOut(vm.ofport, d.frame);
      else periodicFailures.push(d.reason);
      const now = Date.now();
      periodic.push({ ofport: vm.ofport, at: now });
      timers.push(setTimeout(fire, sched.sent(now) - now));
    };
    const solicitsBefore = seen.filter((s) => s.ofport === vm.ofport).length;
    timers.push(setTimeout(fire, sched.start(Date.now()) - Date.now()));
    const want = slaacAddress("2001:db8:30::", MACS[2]!);
    await waitFor(
      async () => {
        const { stdout } = await run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"], {
          netns: vm.netns,
        });
        return stdout.includes(`inet6 ${want}/64`);
      },
      20_000,
      `SLAAC address ${want} on vm3 from periodic RAs`,
    );
    // A second periodic RA follows within [min, max] of the first.
    await waitFor(() => periodic.length >= 2, 10_000, "a second periodic RA");
    const gap = periodic[1]!.at - periodic[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(3000 - 50);
    expect(gap).toBeLessThanOrEqual(4000 + 500);
    for (const t of timers) clearTimeout(t);
    // vm3 asked nothing: the address came from the multicast RAs.
    expect(seen.filter((s) => s.ofport === vm.ofport).length).toBe(solicitsBefore);
    expect(periodicFailures).toEqual([]);
  }, 40_000);
});
