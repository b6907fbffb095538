/**
 * Which br-int ports the NIC sees, and the profile the agent plans for
 * (src/offload/datapath/devices.ts), on the sysfs/devlink captures of
 * test/fixtures/caps: a ConnectX-6 Dx in switchdev mode with two VF
 * representors, and a virtio VM where the kernel lane's veth
 * "representors" are named by `offload.ports`. And the `offload` keys of the
 * agent's config that choose the mode.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { discover } from "../../src/offload/caps/discover.js";
import { captureSource } from "../../src/offload/caps/source.js";
import { flagsToConfig } from "../../src/cli/agent.js";
import { parseAgentConfig } from "../../src/controller/config.js";
import { offloadSocket, requestedMode } from "../../src/controller/tc-reconciler-config.js";
import { deviceMap, globMatch, type OvsInterface } from "../../src/offload/datapath/devices.js";

const fixture = (name: string) =>
  discover(captureSource(join(import.meta.dirname, "..", "fixtures", "caps", name)));

const bridgePorts: OvsInterface[] = [
  { name: "br-int", type: "internal", ofport: 65534 },
  { name: "enp8s0f0npf0vf0", type: "", ofport: 1 },
  { name: "enp8s0f0npf0vf1", type: "system", ofport: 2 },
  { name: "tap7", type: "", ofport: 3 },
  { name: "patch-physnet1", type: "patch", ofport: 4 },
  { name: "genev0", type: "geneve", ofport: 10 },
  { name: "vxlan0", type: "vxlan", ofport: 11 },
  { name: "new-port", type: "", ofport: -1 },
];

describe("the device map", () => {
  it("maps VF representors (sysfs phys_switch_id, phys_port_name) and tunnels; taps and patch ports stay off the NIC", async () => {
    const host = await fixture("cx6dx-switchdev");
    const m = deviceMap(bridgePorts, host, { bridge: "br-int", patterns: [] });
    expect([...m.ports.hardware]).toEqual([
      [1, "enp8s0f0npf0vf0"],
      [2, "enp8s0f0npf0vf1"],
    ]);
    expect([...m.ports.tunnels]).toEqual([
      [10, "geneve"],
      [11, "vxlan"],
    ]);
    expect(m.profile.id).toBe("connectx-6-dx");
    expect(m.profileReason).toBe("discovered: the eswitch of enp8s0f0np0 (PCI 15b3:101d)");
    expect(m.hardware).toBe(true);
    expect(m.mapped.map((p) => [p.ofport, p.role, p.netdev])).toEqual([
      [1, "representor", "enp8s0f0npf0vf0"],
      [2, "representor", "enp8s0f0npf0vf1"],
      [3, "not on the NIC", undefined],
      [10, "tunnel", "genev_sys_6081"],
      [11, "tunnel", "vxlan_sys_4789"],
    ]);
  });

  it("plans for a switchdev NIC before any representor is plugged into the bridge", async () => {
    const host = await fixture("cx6dx-switchdev");
    const m = deviceMap(
      bridgePorts.filter((p) => !p.name.startsWith("enp")),
      host,
      { bridge: "br-int", patterns: [] },
    );
    expect(m.ports.hardware.size).toBe(0);
    expect(m.profile.id).toBe("connectx-6-dx");
    expect(m.profileReason).toMatch(/is in switchdev mode; no representor is on br-int yet$/);
    expect(m.hardware).toBe(true);
  });

  it("takes offload.ports as eswitch ports (veth stand-ins); the profile must then be named", async () => {
    const host = await fixture("virtio-vm");
    const lane: OvsInterface[] = [
      { name: "vm1", type: "", ofport: 1 },
      { name: "vm2", type: "", ofport: 2 },
      { name: "uplink", type: "", ofport: 3 },
    ];
    const none = deviceMap(lane, host, { bridge: "br-int", patterns: ["vm?"] });
    expect([...none.ports.hardware.values()]).toEqual(["vm1", "vm2"]);
    expect(none.profile.id).toBe("none");
    expect(none.profileReason).toBe("offload.ports names ports but no offload.profile is configured");
    expect(none.hardware).toBe(false);
    const named = deviceMap(lane, host, { bridge: "br-int", patterns: ["vm?"], profile: "connectx-6-dx" });
    expect(named.profile.id).toBe("connectx-6-dx");
    expect(named.profileReason).toBe("configured (offload.profile: connectx-6-dx)");
    expect(named.mapped.map((p) => p.role)).toEqual(["configured", "configured", "not on the NIC"]);
    const bare = deviceMap(lane, host, { bridge: "br-int", patterns: [] });
    expect(bare.profileReason).toBe("no port of the bridge is an eswitch representor");
  });

  it("matches globs like fnmatch", () => {
    expect(globMatch("eth*_vf?", "eth0_vf3")).toBe(true);
    expect(globMatch("eth*_vf?", "eth0_vf13")).toBe(false);
    expect(globMatch("tap.1", "tapx1")).toBe(false);
    expect(globMatch("tap.1", "tap.1")).toBe(true);
  });
});

describe("offload.mode in the agent's config", () => {
  const base = { chassis: "h1", tunnelIp: "192.0.2.1" };
  it("defaults to ovs when an OVS other_config key is set, else none", () => {
    expect(requestedMode(parseAgentConfig(base).offload)).toBe("none");
    expect(requestedMode(parseAgentConfig({ ...base, offload: { maxIdleMs: 1000 } }).offload)).toBe("ovs");
    expect(requestedMode(parseAgentConfig({ ...base, offload: { mode: "planner" } }).offload)).toBe(
      "planner",
    );
  });

  it("refuses planner mode with OVS's own hw-offload, and unknown profiles, with the reason", () => {
    expect(() => parseAgentConfig({ ...base, offload: { mode: "planner", hwOffload: true } })).toThrow(
      "offload.hwOffload: must not be true with mode planner: OVS's own offload and flowdrake's would share the ports' tc",
    );
    expect(() => parseAgentConfig({ ...base, offload: { mode: "planner", profile: "cx9" } })).toThrow(
      /offload\.profile: is not a known NIC profile \(connectx-4-lx, .*none\)/,
    );
  });

  it("puts the explain socket next to a unix ovsdb socket, where caps finds it from its own --ovsdb", () => {
    const c = parseAgentConfig({ ...base, ovsdb: "unix:/run/ovs1/db.sock", bridge: "br-x" });
    expect(offloadSocket(c)).toBe("/run/ovs1/flowdrake.br-x.sock");
    expect(offloadSocket({ ...c, ovsdb: "tcp:10.0.0.1:6640" })).toBe(
      "/var/run/flowdrake/flowdrake.br-x.sock",
    );
    expect(offloadSocket({ ...c, offload: { ...c.offload, socket: "/s" } })).toBe("/s");
  });
});

describe("a patch port to a bridge named in offload.uplinks", () => {
  const brEx = (extra: OvsInterface[] = []): OvsInterface[] => [
    { name: "br-ex", type: "internal", ofport: 65534, mac: "02:00:00:00:bb:01" },
    { name: "patch-physnet1-int", type: "patch", ofport: 1 },
    { name: "enp8s0f0np0", type: "", ofport: 2 },
    ...extra,
  ];
  const bridges = (ifaces: OvsInterface[], uplink = "enp8s0f0np0") =>
    new Map([["patch-physnet1", { bridge: "br-ex", uplink, ifaces }]]);

  it("stands for the bridge's uplink, with the MACs of the bridge's own ports", async () => {
    const host = await fixture("cx6dx-switchdev");
    const m = deviceMap(bridgePorts, host, { bridge: "br-int", patterns: [], bridges: bridges(brEx()) });
    expect(m.ports.hardware.get(4)).toBe("enp8s0f0np0");
    expect([...(m.ports.bridged ?? [])]).toEqual([[4, [0x02000000bb01n]]]);
    expect(m.mapped.find((p) => p.ofport === 4)).toEqual({
      ofport: 4,
      name: "patch-physnet1",
      role: "bridge uplink",
      netdev: "enp8s0f0np0",
    });
    // without the key the patch port stays off the NIC, as before
    const plain = deviceMap(bridgePorts, host, { bridge: "br-int", patterns: [] });
    expect(plain.ports.hardware.has(4)).toBe(false);
    expect(plain.ports.bridged).toBeUndefined();
  });

  it("stays off the NIC, saying why, when the bridge holds another port, lacks the uplink or its own MAC", async () => {
    const host = await fixture("cx6dx-switchdev");
    const note = (ifaces: OvsInterface[], uplink?: string) => {
      const m = deviceMap(bridgePorts, host, {
        bridge: "br-int",
        patterns: [],
        bridges: bridges(ifaces, uplink),
      });
      expect(m.ports.hardware.has(4)).toBe(false);
      expect(m.ports.bridged).toBeUndefined();
      return m.mapped.find((p) => p.ofport === 4);
    };
    expect(note(brEx([{ name: "eth9", type: "", ofport: 3 }]))).toEqual({
      ofport: 4,
      name: "patch-physnet1",
      role: "not on the NIC",
      note: "br-ex holds more than patch-physnet1's peer, enp8s0f0np0 and its own ports (patch-physnet1-int, eth9): what it switches where is not known",
    });
    expect(note(brEx(), "eth7")?.note).toBe("br-ex has no port eth7 (offload.uplinks)");
    expect(note(brEx().map((i) => (i.type === "internal" ? { ...i, mac: undefined } : i)))?.note).toBe(
      "OVS reports no MAC for br-ex's own port yet",
    );
  });

  it("is an agent key and a flag: offload.uplinks / --offload-uplinks br-ex=p0", () => {
    const c = parseAgentConfig({
      chassis: "h1",
      tunnelIp: "192.0.2.1",
      offload: { uplinks: { "br-ex": "p0" } },
    });
    expect(c.offload.uplinks).toEqual({ "br-ex": "p0" });
    expect(parseAgentConfig({ chassis: "h1", tunnelIp: "192.0.2.1" }).offload.uplinks).toEqual({});
    expect(flagsToConfig({ offloadUplinks: ["br-ex=p0"] })).toEqual({
      offload: { uplinks: { "br-ex": "p0" } },
    });
  });
});
