/**
 * The multi-host underlay, proven with plain ovs-ofctl flows (no agent): two
 * simulated hosts, each with its own ovsdb-server and ovs-vswitchd (netdev
 * datapath), one VM each on the same /24; flow-based Geneve and VXLAN ports
 * on br-int; real ping between the VMs; tcpdump on the underlay shows the
 * UDP 6081 / 4789 datagrams between the tunnel IPs carrying the VNI the flows
 * set, with the VMs' ICMP inside. Then three hosts, a cut link and a heal.
 */
import { readdirSync } from "node:fs";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildFrame } from "../../src/packet/index.js";
import { decodeUnderlayFrame, type SimHost, TUNNEL_ENCAPS, Underlay } from "../../src/sandbox/multihost.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { sandboxRoot } from "../../src/sandbox/rundir.js";
import { DecodeError } from "../../src/util/errors.js";
import { run } from "../../src/util/exec.js";
import { useUnderlay } from "../harness/multihost.js";

const GENEVE_OFPORT = 10;
const VXLAN_OFPORT = 11;

/**
 * `count` pings that wait for `count` replies, up to a 5 s deadline. Without
 * `-w`, ping gives up on the remaining replies max(2 × the slowest RTT, the
 * interval) after its last request once any reply has come — 0.2 s here — so
 * on a loaded machine a reply delayed a little longer read as lost ("1
 * received"). With `-w` it may send more than `count` requests while it waits;
 * the tests count replies.
 */
function ping(vm: VmPort, ip: string, count = 3) {
  return run(["ping", "-c", String(count), "-i", "0.2", "-w", "5", ip], {
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
  const u = useUnderlay({ hosts: ["host1", "host2"], cidr: "192.168.77.0/24" });
  let vm1: VmPort;
  let vm2: VmPort;

  beforeAll(async () => {
    vm1 = await u().host("host1").addVm("vm1", { ipCidr: "10.50.0.1/24", mac: "02:00:0a:32:00:01" });
    vm2 = await u().host("host2").addVm("vm2", { ipCidr: "10.50.0.2/24", mac: "02:00:0a:32:00:02" });
    for (const h of u().hosts) {
      await h.addTunnelPort("fd-geneve", "geneve", { ofport: GENEVE_OFPORT });
      await h.addTunnelPort("fd-vxlan", "vxlan", { ofport: VXLAN_OFPORT });
    }
  }, 60_000);

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
      // A full 1500-byte VM frame fits the 1600-byte underlay once encapsulated.
      const big = await run(
        ["ping", "-c", "2", "-i", "0.2", "-w", "5", "-M", "do", "-s", "1472", "10.50.0.2"],
        {
          netns: vm1.netns,
          allowFailure: true,
        },
      );
      expect(big.stdout).toContain("2 received");
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

describe("multi-host underlay: three hosts (the third added to a running underlay)", () => {
  let ul: Underlay | undefined;
  const vms: VmPort[] = [];

  beforeAll(async () => {
    ul = await Underlay.start({ hosts: ["hA", "hB"], cidr: "10.200.0.0/24" });
    // The third chassis joins a running underlay.
    const c = await ul.addHost("hC");
    expect(c.tunnelIp).toBe("10.200.0.3");
    expect((await ul.host("hA").tunnelState()).neighbors).toContain("10.200.0.3");
    await expect(ul.addHost("hC")).rejects.toThrow(/already exists/);
    for (const [i, h] of ul.hosts.entries()) {
      vms.push(await h.addVm(`v3${i}`, { ipCidr: `10.60.0.${i + 1}/24`, mac: `02:00:0a:3c:00:0${i + 1}` }));
      await h.addTunnelPort("fd-geneve", "geneve", { ofport: GENEVE_OFPORT });
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

describe("multi-host underlay: OVS resolves tunnel neighbours itself", () => {
  let ul: Underlay | undefined;
  afterAll(async () => {
    await ul?.stop();
  });

  it("learns the peer's MAC by ARP through br-phy when no static entry is set", async () => {
    ul = await Underlay.start({ hosts: ["dyn1", "dyn2"], cidr: "172.31.9.0/24", staticNeighbors: false });
    const [h1, h2] = ul.hosts as [SimHost, SimHost];
    expect((await h1.tunnelState()).neighbors).not.toContain(h2.tunnelIp);
    const a = await h1.addVm("dA", { ipCidr: "10.70.0.1/24" });
    const b = await h2.addVm("dB", { ipCidr: "10.70.0.2/24" });
    for (const h of ul.hosts) await h.addTunnelPort("fd-vxlan", "vxlan", { ofport: VXLAN_OFPORT });
    await tunnelFlows(
      [
        { host: h1, vm: a },
        { host: h2, vm: b },
      ],
      VXLAN_OFPORT,
      42,
    );
    // The first packets may be dropped while OVS resolves the next hop.
    const res = await ping(a, "10.70.0.2", 6);
    expect(res.stdout).toMatch(/[1-6] received/);
    expect((await h1.tunnelState()).neighbors.toLowerCase()).toContain(h2.tunnelMac);
    expect((await h2.tunnelState()).neighbors.toLowerCase()).toContain(h1.tunnelMac);
  });
});

describe("multi-host underlay: failed start", () => {
  it("leaves no namespace behind when a host fails to come up", async () => {
    const mine = async () =>
      (await run(["ip", "netns", "list"])).stdout
        .split("\n")
        .filter((l) => l.startsWith(`fd${process.pid}x`))
        .map((l) => l.split(" ")[0])
        .sort();
    const before = await mine();
    // br-phy asked for twice: the host's sandbox fails once the underlay namespace,
    // its bridge and run dir exist; all of them must go.
    await expect(Underlay.start({ hosts: ["ok1", "bad2"], bridges: ["br-int", "br-phy"] })).rejects.toThrow(
      /br-phy/,
    );
    expect(await mine()).toEqual(before);
    expect(
      readdirSync(sandboxRoot).filter((d) => d.startsWith(`${process.pid}x`) && d.endsWith("underlay")),
    ).toEqual([]);
    await expect(Underlay.start({ hosts: ["x", "x"] })).rejects.toThrow(/duplicate/);
    await expect(Underlay.start({ hosts: ["x"], cidr: "10.0.0.0/33" })).rejects.toThrow(/cidr/);
  });
});

describe("underlay frame decoder", () => {
  const inner = buildFrame({
    eth: { src: "02:00:00:00:00:01", dst: "02:00:00:00:00:02" },
    ipv4: { src: "10.1.0.1", dst: "10.1.0.2" },
    icmp: { type: 8, rest: 0x00010001 },
  });
  const outer = (dstPort: number, header: Buffer, body: Buffer) =>
    buildFrame({
      eth: { src: "02:fd:c0:a8:4d:01", dst: "02:fd:c0:a8:4d:02" },
      ipv4: { src: "192.168.77.1", dst: "192.168.77.2" },
      udp: { srcPort: 40000, dstPort, checksum: 0 },
      payload: Buffer.concat([header, body]),
    });

  it("decodes Geneve (with options) and VXLAN headers and the inner frame", () => {
    const geneve = Buffer.from([0x02, 0x00, 0x65, 0x58, 0x00, 0x13, 0x89, 0x00, 1, 2, 3, 4, 5, 6, 7, 8]);
    const g = decodeUnderlayFrame(outer(6081, geneve, inner), "h1");
    expect(g).toMatchObject({ from: "h1", encap: "geneve", vni: 5001, dstPort: 6081, srcIp: "192.168.77.1" });
    expect(g?.inner?.ipv4).toMatchObject({ src: "10.1.0.1", dst: "10.1.0.2" });
    const vxlan = Buffer.from([0x08, 0, 0, 0, 0x00, 0x1b, 0x5a, 0x00]);
    const v = decodeUnderlayFrame(outer(4789, vxlan, inner), "h2");
    expect(v).toMatchObject({ encap: "vxlan", vni: 7002, dstPort: 4789 });
    expect(v?.inner?.icmp?.type).toBe(8);
    expect(decodeUnderlayFrame(outer(53, Buffer.alloc(0), inner), "h1")?.encap).toBeUndefined();
    expect(() => decodeUnderlayFrame(outer(4789, Buffer.from([0, 0, 0, 0, 0, 0, 1, 0]), inner), "h")).toThrow(
      DecodeError,
    );
  });

  it("raises DecodeError (or returns) on random and truncated frames, never anything else", () => {
    const ports = Object.values(TUNNEL_ENCAPS).map((e) => e.udpPort);
    const frames = fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
      fc
        .tuple(fc.constantFrom(...ports), fc.uint8Array({ maxLength: 120 }), fc.nat(200))
        .map(([port, body, cut]) => {
          const f = outer(port, Buffer.from(body), Buffer.alloc(0));
          return f.subarray(0, Math.max(14, f.length - cut));
        }),
      fc.tuple(fc.constantFrom(...ports), fc.nat(0xffffff), fc.nat(inner.length)).map(([port, vni, cut]) => {
        const h = Buffer.from([port === 6081 ? 0 : 8, 0, port === 6081 ? 0x65 : 0, port === 6081 ? 0x58 : 0]);
        const v = Buffer.from([vni >> 16, (vni >> 8) & 0xff, vni & 0xff, 0]);
        return outer(port, Buffer.concat([h, v]), inner.subarray(0, inner.length - cut));
      }),
    );
    fc.assert(
      fc.property(frames, (buf) => {
        try {
          const p = decodeUnderlayFrame(buf, "x");
          if (p?.vni !== undefined) expect(p.vni).toBeLessThan(2 ** 24);
        } catch (err) {
          if (!(err instanceof DecodeError)) throw err;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
