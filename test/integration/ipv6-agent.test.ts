/**
 * IPv6 host configuration and routing by the agent itself, with real hosts:
 * a private OVS (userspace datapath), the embedded NB, the flowdrake agent,
 * and "VMs" in namespaces whose kernels and ISC dhclient do what they would
 * on a cloud VM. Router r1 joins netA (2001:db8:61::/64, slaac) and netB
 * (2001:db8:62::/64, dhcpv6-stateful).
 *
 *   - a1 forms its SLAAC address (the one the NB holds for it) and a
 *     default route via the router's link-local address; a solicitation
 *     (rdisc6) is punted by nd_ra and answered by unicast to a1.
 *   - b1 is told by the RA to use DHCPv6 (M flag, no autonomous prefix);
 *     dhclient -6 binds the NB's address through the dhcp app.
 *   - a1 pings b1 across the router: the kernel resolves the router's
 *     link-local address (arp app), the first packet is routed reactively,
 *     the hop limit goes down by one.
 *   - c1, whose kernel never solicits, plugged into netC before the router
 *     joins it, configures itself from the agent's first unsolicited RA.
 */
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Agent } from "../../src/controller/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { NbApi } from "../../src/nb/api.js";
import { openEmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import {
  ICMPV6_TYPE,
  linkLocalFromMac,
  parseEthernet,
  readPcap,
  slaacAddress,
} from "../../src/packet/index.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run, start } from "../../src/util/exec.js";
import { makeRunDir, useOvsSandbox, waitFor } from "../harness/index.js";
import { bounceLink, needBinary, vmSysctl, waitLinkLocal } from "./ipv6-lab.js";

const sb = useOvsSandbox({ label: "ipv6-agent" });
let dir: string;
let store: NbStore;
let api: NbApi;
let agent: Agent | undefined;
const vms: Record<string, VmPort> = {};

const MAC = { a1: "fa:16:3e:61:00:11", b1: "fa:16:3e:62:00:11", c1: "fa:16:3e:63:00:11" } as const;
const A1_ADDR = slaacAddress("2001:db8:61::", MAC.a1);
const C1_ADDR = slaacAddress("2001:db8:63::", MAC.c1);
const B1_ADDR = "2001:db8:62::21";

async function globalAddrs(vm: string): Promise<string> {
  return (
    await run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"], { netns: vms[vm]!.netns })
  ).stdout;
}

async function defaultRoute(vm: string): Promise<string> {
  return (await run(["ip", "-6", "route", "show", "default"], { netns: vms[vm]!.netns })).stdout.trim();
}

/** The router leg's MAC on a network (the NB picks it when the interface is added). */
async function routerMac(networkId: string): Promise<string> {
  const r = await api.get("lrouter", "r1");
  const itf = r?.value.interfaces.find((i) => i.networkId === networkId);
  if (!itf) throw new Error(`r1 has no interface on ${networkId}`);
  return itf.macAddress;
}

beforeAll(async () => {
  needBinary("dhclient", "isc-dhcp-client");
  dir = makeRunDir("ipv6-agent");
  store = await openEmbeddedStore(join(dir, "nb"));
  api = new NbApi(store);
  await api.create("tenant", { id: "t1" });
  for (const [net, seg, sub, cidr, mode] of [
    ["netA", 601, "subA", "2001:db8:61::/64", "slaac"],
    ["netB", 602, "subB", "2001:db8:62::/64", "dhcpv6-stateful"],
    ["netC", 603, "subC", "2001:db8:63::/64", "slaac"],
  ] as const) {
    await api.create("lswitch", { id: net, tenantId: "t1", networkType: "geneve", segmentationId: seg });
    await api.create("subnet", {
      id: sub,
      tenantId: "t1",
      networkId: net,
      cidr,
      ipVersion: 6,
      gatewayIp: cidr.replace("::/64", "::1"),
      ipv6RaMode: mode,
      ipv6AddressMode: mode,
    });
  }
  await api.create("lrouter", { id: "r1", tenantId: "t1" });
  await api.routerAddInterface("r1", { subnetId: "subA" });
  await api.routerAddInterface("r1", { subnetId: "subB" });
  const port = (id: string, net: string, sub: string, ip: string) =>
    api.create("lport", {
      id,
      tenantId: "t1",
      networkId: net,
      macAddress: MAC[id as keyof typeof MAC],
      fixedIps: [{ subnetId: sub, ipAddress: ip }],
    });
  await port("a1", "netA", "subA", A1_ADDR);
  await port("b1", "netB", "subB", B1_ADDR);
  await port("c1", "netC", "subC", C1_ADDR);
  agent = await Agent.start(
    parseAgentConfig({
      chassis: "host1",
      tunnelIp: "192.0.2.1",
      ovsdb: sb().dbRemote,
      datapathType: "netdev",
      metrics: "",
      logLevel: "silent",
      dhcp: { domain: "flowdrake.test" },
    }),
    { store },
  );
  for (const id of ["a1", "b1", "c1"] as const) {
    vms[id] = await sb().addVm(id, { ifaceId: id, mac: MAC[id] });
    await vmSysctl(vms[id].netns, "forwarding", 0);
    await vmSysctl(vms[id].netns, "accept_ra", 1);
    await vmSysctl(vms[id].netns, "addr_gen_mode", 0);
  }
  await vmSysctl(vms.c1!.netns, "router_solicitations", 0);
  await waitFor(() => agent!.localPortCount() === 3, 20_000, "three ports bound");
  await agent.settle();
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("IPv6 through the agent", () => {
  it("a1 forms its SLAAC address and a default route via the router's link-local address", async () => {
    // the link comes up again with the VM's own MAC, so its link-local address and solicitation use it
    await bounceLink(vms.a1!.netns);
    await waitFor(
      async () => (await globalAddrs("a1")).includes(`inet6 ${A1_ADDR}/64`),
      20_000,
      `${A1_ADDR} on a1`,
    );
    const ll = linkLocalFromMac(await routerMac("netA"));
    await waitFor(
      async () => (await defaultRoute("a1")).startsWith(`default via ${ll} dev eth0 proto ra`),
      10_000,
      "a1's default route from the RA",
    );
  }, 40_000);

  it("a solicitation from a1 is punted and answered by unicast to a1", async () => {
    needBinary("rdisc6", "ndisc6");
    const rmac = await routerMac("netA");
    const pcap = join(dir, "a1-ra.pcap");
    const tcpdump = start(
      ["tcpdump", "-i", "eth0", "-Q", "in", "--immediate-mode", "-U", "-nn", "-w", pcap, "icmp6"],
      { netns: vms.a1!.netns },
    );
    try {
      await waitFor(() => existsSync(pcap) && statSync(pcap).size >= 24, 10_000, "tcpdump to open its pcap");
      await waitLinkLocal(vms.a1!.netns);
      const before = agent!.packetIns.get("l3") ?? 0;
      const r = await run(["rdisc6", "-1", "-r", "3", "-w", "1500", "eth0"], {
        netns: vms.a1!.netns,
        timeoutMs: 20_000,
        allowFailure: true,
      });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`from ${linkLocalFromMac(rmac)}`));
      expect(r.stdout).toMatch(/Prefix\s*:\s*2001:db8:61::\/64/);
      expect(r.stdout).toMatch(/DNS search list\s*:\s*flowdrake\.test/);
      expect((agent!.packetIns.get("l3") ?? 0) - before).toBeGreaterThanOrEqual(1);
      // the answer went to a1's own MAC: a solicited RA, not the all-nodes periodic one
      await waitFor(
        () =>
          readPcap(readFileSync(pcap)).records.some((rec) => {
            const f = parseEthernet(rec.data);
            return (
              f.icmpv6?.type === ICMPV6_TYPE.ROUTER_ADVERTISEMENT &&
              f.eth.dst === MAC.a1 &&
              f.eth.src === rmac
            );
          }),
        10_000,
        "a unicast RA to a1 in the capture",
      );
    } finally {
      tcpdump.kill("SIGKILL");
    }
  }, 40_000);

  it("b1 is sent to DHCPv6 by the RA and dhclient -6 binds the NB's address", async () => {
    await bounceLink(vms.b1!.netns);
    const ll = linkLocalFromMac(await routerMac("netB"));
    await waitFor(
      async () => (await defaultRoute("b1")).startsWith(`default via ${ll}`),
      20_000,
      "b1's default route from the RA",
    );
    // managed: no address formed from the prefix
    expect(await globalAddrs("b1")).not.toMatch(/2001:db8:62::/);
    const script = join(dir, "b1.sh");
    const bound = join(dir, "b1.bound");
    writeFileSync(
      script,
      [
        "#!/bin/sh",
        `case "$reason" in BOUND6|RENEW6|REBIND6) ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" nodad; echo "$new_ip6_address" > '${bound}' ;; esac`,
        "exit 0",
        "",
      ].join("\n"),
    );
    chmodSync(script, 0o755);
    const argv = [
      "dhclient",
      "-6",
      "-1",
      "-cf",
      "/dev/null",
      "-lf",
      join(dir, "b1.leases"),
      "-pf",
      join(dir, "b1.pid"),
      "-sf",
      script,
      "eth0",
    ];
    try {
      const r = await run(argv, { netns: vms.b1!.netns, timeoutMs: 30_000, allowFailure: true });
      expect(r.code, r.stdout + r.stderr).toBe(0);
      await waitFor(() => existsSync(bound), 10_000, "dhclient's BOUND6");
      expect(readFileSync(bound, "utf8").trim()).toBe(B1_ADDR);
      expect(await globalAddrs("b1")).toContain(`inet6 ${B1_ADDR}/`);
      expect(agent!.packetIns.get("dhcp") ?? 0).toBeGreaterThanOrEqual(2);
    } finally {
      await run(["dhclient", "-6", "-x", "-pf", join(dir, "b1.pid")], {
        netns: vms.b1!.netns,
        allowFailure: true,
      });
    }
  }, 60_000);

  it("a1 pings b1 across the router; the hop limit goes down by one", async () => {
    const r = await run(["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", B1_ADDR], {
      netns: vms.a1!.netns,
      allowFailure: true,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ttl=63/);
    // a1 resolved the router's link-local address: its neighbour entry is reachable, with the router's MAC
    const neigh = (await run(["ip", "-6", "neigh", "show", "dev", "eth0"], { netns: vms.a1!.netns })).stdout;
    expect(neigh).toContain(
      `${linkLocalFromMac(await routerMac("netA"))} lladdr ${await routerMac("netA")} router`,
    );
  }, 30_000);

  it("c1, which never solicits, configures itself from the first unsolicited RA once the router joins netC", async () => {
    await bounceLink(vms.c1!.netns);
    const sent = agent!.packetIns.get("l3") ?? 0;
    await api.routerAddInterface("r1", { subnetId: "subC" });
    await waitFor(
      async () => (await globalAddrs("c1")).includes(`inet6 ${C1_ADDR}/64`),
      20_000,
      `${C1_ADDR} on c1`,
    );
    const ll = linkLocalFromMac(await routerMac("netC"));
    expect(await defaultRoute("c1")).toMatch(new RegExp(`^default via ${ll} dev eth0 proto ra`));
    // not an answer to a solicitation: c1 sent none
    expect(agent!.packetIns.get("l3") ?? 0).toBe(sent);
  }, 40_000);
});
