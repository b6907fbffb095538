/**
 * The multi-host underlay, proven with plain ovs-ofctl flows (no agent): two
 * simulated hosts, each with its own ovsdb-server and ovs-vswitchd (netdev
 * datapath), one VM each on the same /24; flow-based Geneve and VXLAN ports
 * on br-int; real ping between the VMs; tcpdump on the underlay shows the
 * UDP 6081 / 4789 datagrams between the tunnel IPs carrying the VNI the flows
 * set, with the VMs' ICMP inside. Then three hosts, a cut link and a heal.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeUnderlayFrame, type SimHost, Underlay } from "../../src/sandbox/multihost.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { DecodeError } from "../../src/util/errors.js";
import { run } from "../../src/util/exec.js";

const GENEVE_OFPORT = 10;
const VXLAN_OFPORT = 11;

function ping(vm: VmPort, ip: string, count = 3) {
  return run(["ping", "-c", String(count), "-i", "0.2", "-W", "2", ip], {
    netns: vm.netns,
    allowFailure: true,
  });
}

/** VM on `from` → tunnel to `to` with `vni`; tunnel from anywhere with `vni` → VM on `to`. */
async function tunnelFlows(
  hosts: { host: SimHost; vm: VmPort }[],
  tunnelOfport: number,
  vni: number,
): Promise<void> {
  for (const { host } of hosts) await host.sandbox.ofctl("del-flows", host.sandbox.mgmtRemote());
  for (const { host, vm } of hosts) {
    const br = host.sandbox.mgmtRemote();
    // Every VM owns a /32 destination; ARP broadcast is replicated to every peer.
    const peers = hosts.filter((p) => p.host !== host);
    for (const p of peers) {
      await host.sandbox.ofctl(
        "add-flow",
        br,
        `priority=100,in_port=${vm.ofport},dl_dst=${p.vm.mac},actions=set_field:${vni}->tun_id,set_field:${p.host.tunnelIp}->tun_dst,output:${tunnelOfport}`,
      );
    }
    const flood = peers
      .map((p) => `set_field:${vni}->tun_id,set_field:${p.host.tunnelIp}->tun_dst,output:${tunnelOfport}`)
      .join(",");
    await host.sandbox.ofctl("add-flow", br, `priority=50,in_port=${vm.ofport},actions=${flood}`);
    await host.sandbox.ofctl(
      "add-flow",
      br,
      `priority=100,in_port=${tunnelOfport},tun_id=${vni},actions=output:${vm.ofport}`,
    );
  }
}

describe("multi-host underlay: two hosts, Geneve and VXLAN", () => {
  let ul: Underlay | undefined;
  let vm1: VmPort;
  let vm2: VmPort;
  const u = () => {
    if (!ul) throw new Error("underlay did not start (see beforeAll error)");
    return ul;
  };

  beforeAll(async () => {
    ul = await Underlay.start({ hosts: ["host1", "host2"], cidr: "192.168.77.0/24" });
    vm1 = await ul.host("host1").addVm("vm1", { ipCidr: "10.50.0.1/24", mac: "02:00:0a:32:00:01" });
    vm2 = await ul.host("host2").addVm("vm2", { ipCidr: "10.50.0.2/24", mac: "02:00:0a:32:00:02" });
    for (const h of ul.hosts) {
      await h.addTunnelPort("tun-geneve", "geneve", { ofport: GENEVE_OFPORT });
      await h.addTunnelPort("tun-vxlan", "vxlan", { ofport: VXLAN_OFPORT });
    }
  }, 120_000);
  afterAll(async () => {
    await ul?.stop();
  });

  it("gives each host its tunnel IP, OVS route and neighbour entries", async () => {
    const [h1, h2] = u().hosts as [SimHost, SimHost];
    expect(h1.tunnelIp).toBe("192.168.77.1");
    expect(h2.tunnelIp).toBe("192.168.77.2");
    const st = await h1.tunnelState();
    expect(st.routes).toContain("192.168.77.0/24 dev br-phy");
    expect(st.neighbors).toContain(h2.tunnelIp);
    expect(st.neighbors.toLowerCase()).toContain(h2.tunnelMac);
    expect(st.ports).toMatch(/geneve_sys.*6081|6081/);
    expect(st.ports).toContain("4789");
    // The underlay itself: host1's br-phy reaches host2's over the bridge.
    const p = await run(["ping", "-c", "1", "-W", "2", h2.tunnelIp], { netns: h1.netns, allowFailure: true });
    expect(p.stdout).toContain("1 received");
  });

  for (const [encap, ofport, vni, udpPort] of [
    ["geneve", GENEVE_OFPORT, 5001, 6081],
    ["vxlan", VXLAN_OFPORT, 7002, 4789],
  ] as const) {
    it(`VM1 pings VM2 over ${encap} (VNI ${vni} on UDP ${udpPort})`, async () => {
      const [h1, h2] = u().hosts as [SimHost, SimHost];
      await tunnelFlows(
        [
          { host: h1, vm: vm1 },
          { host: h2, vm: vm2 },
        ],
        ofport,
        vni,
      );
      const cap = await u().capture();
      const res = await ping(vm1, "10.50.0.2");
      const pkts = await cap.stop();
      expect(res.stdout).toContain("3 received");

      const tunnelled = pkts.filter((p) => p.encap === encap);
      expect(pkts.filter((p) => p.encap && p.encap !== encap)).toEqual([]);
      const requests = tunnelled.filter((p) => p.inner?.icmp?.type === 8);
      const replies = tunnelled.filter((p) => p.inner?.icmp?.type === 0);
      expect(requests.length).toBeGreaterThanOrEqual(3);
      expect(replies.length).toBeGreaterThanOrEqual(3);
      for (const p of requests) {
        expect(p).toMatchObject({
          from: "host1",
          srcIp: h1.tunnelIp,
          dstIp: h2.tunnelIp,
          dstPort: udpPort,
          vni,
        });
        expect(p.inner?.ipv4).toMatchObject({ src: "10.50.0.1", dst: "10.50.0.2" });
      }
      for (const p of replies) {
        expect(p).toMatchObject({
          from: "host2",
          srcIp: h2.tunnelIp,
          dstIp: h1.tunnelIp,
          dstPort: udpPort,
          vni,
        });
        expect(p.inner?.ipv4).toMatchObject({ src: "10.50.0.2", dst: "10.50.0.1" });
      }
    });
  }

  it("a cut link black-holes the tunnel; heal restores it", async () => {
    const [h1, h2] = u().hosts as [SimHost, SimHost];
    await tunnelFlows(
      [
        { host: h1, vm: vm1 },
        { host: h2, vm: vm2 },
      ],
      GENEVE_OFPORT,
      5001,
    );
    await u().cut("host2");
    try {
      const down = await ping(vm1, "10.50.0.2", 2);
      expect(down.stdout).toContain("0 received");
    } finally {
      await u().heal("host2");
    }
    const up = await ping(vm1, "10.50.0.2", 3);
    expect(up.stdout).toMatch(/[1-3] received/);
  });

  it("survives an ovs-vswitchd restart once flows and underlay state are put back", async () => {
    const [h1, h2] = u().hosts as [SimHost, SimHost];
    await h2.restartVswitchd();
    await tunnelFlows(
      [
        { host: h1, vm: vm1 },
        { host: h2, vm: vm2 },
      ],
      GENEVE_OFPORT,
      5001,
    );
    const res = await ping(vm1, "10.50.0.2");
    expect(res.stdout).toContain("3 received");
  });
});

describe("multi-host underlay: three hosts", () => {
  let ul: Underlay | undefined;
  const vms: VmPort[] = [];

  beforeAll(async () => {
    ul = await Underlay.start({ hosts: ["hA", "hB", "hC"], cidr: "10.200.0.0/24" });
    for (const [i, h] of ul.hosts.entries()) {
      vms.push(await h.addVm(`v3${i}`, { ipCidr: `10.60.0.${i + 1}/24`, mac: `02:00:0a:3c:00:0${i + 1}` }));
      await h.addTunnelPort("tun-geneve", "geneve", { ofport: GENEVE_OFPORT });
    }
  }, 120_000);
  afterAll(async () => {
    await ul?.stop();
  });

  it("every VM pings every other over Geneve, each pair on its own tunnel endpoints", async () => {
    if (!ul) throw new Error("underlay did not start");
    const hosts = ul.hosts.map((host, i) => ({ host, vm: vms[i]! }));
    await tunnelFlows(hosts, GENEVE_OFPORT, 9000);
    const cap = await ul.capture();
    for (const [i, a] of vms.entries()) {
      for (const j of [0, 1, 2].filter((x) => x !== i)) {
        const r = await ping(a, `10.60.0.${j + 1}`, 2);
        expect(r.stdout, `${a.netns} → 10.60.0.${j + 1}`).toContain("2 received");
      }
    }
    const pkts = await cap.stop();
    const pairs = new Set(
      pkts
        .filter((p) => p.encap === "geneve" && p.vni === 9000 && p.inner?.icmp)
        .map((p) => `${p.srcIp}>${p.dstIp}`),
    );
    expect([...pairs].sort()).toEqual(
      [
        "10.200.0.1>10.200.0.2",
        "10.200.0.1>10.200.0.3",
        "10.200.0.2>10.200.0.1",
        "10.200.0.2>10.200.0.3",
        "10.200.0.3>10.200.0.1",
        "10.200.0.3>10.200.0.2",
      ].sort(),
    );
  });
});

describe("underlay frame decoder", () => {
  it("raises DecodeError (or returns) on random and truncated frames, never anything else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          decodeUnderlayFrame(Buffer.from(bytes), "x");
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
