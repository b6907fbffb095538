/**
 * `l2.mode: reactive` at the flow level: which flows the l2 and arp apps
 * keep for ports on other chassis, what their packet-in handlers install and
 * send on, what the reactive flows depend on, and that an agent restarted
 * with them installed adopts them. The l3 app's host route to a port on
 * another chassis goes straight to its tunnel in either mode.
 */
import { describe, expect, it } from "vitest";
import { loadApps, type AppName } from "../../src/apps/index.js";
import type { AppContext, PacketInEvent, ReactiveFlows } from "../../src/apps/types.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { F, regName, type RegField, type TableName } from "../../src/datapath/index.js";
import { formatFlow, parseFlow } from "../../src/openflow/text.js";
import { buildArpRequest } from "../../src/packet/builders.js";
import { buildFrame, parseEthernet } from "../../src/packet/frame.js";
import { logger } from "../../src/util/log.js";
import {
  binding,
  chassis,
  net,
  newModel,
  port,
  router,
  routerKeyHex,
  subnet,
} from "../harness/model-fixture.js";

const VM1 = "fa:16:3e:01:00:11";
const VM3 = "fa:16:3e:01:00:13";
const VM5 = "fa:16:3e:02:00:15";
const R_MAC = "fa:16:3e:00:00:01";

/** host1: vm1 local and vm3 on host2 (geneve net1, VNI 101); vm4 local and vm5 on host2 (vlan net2). */
function model(): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/24"));
  m.setSubnet("sub6", subnet("sub6", "net1", "fd00:1::/64"));
  m.setPort("vm1", port("vm1", "net1", VM1, [["sub1", "10.1.0.11"]]));
  m.setPort(
    "vm3",
    port(
      "vm3",
      "net1",
      VM3,
      [
        ["sub1", "10.1.0.13"],
        ["sub6", "fd00:1::13"],
      ],
      { chassis: "host2" },
    ),
  );
  m.setChassis("host2", chassis("host2", "192.0.2.2"));
  m.setAlive("host2", true);
  m.setBinding("vm1", binding("vm1", 1));
  m.setProviderPorts(new Map([["physnet1", 50]]));
  m.setNetwork(
    "net2",
    net("net2", { networkType: "vlan", physicalNetwork: "physnet1", segmentationId: 100 }),
  );
  m.setSubnet("sub2", subnet("sub2", "net2", "10.2.0.0/24", { enableDhcp: false }));
  m.setPort("vm4", port("vm4", "net2", "fa:16:3e:02:00:14", [["sub2", "10.2.0.14"]]));
  m.setPort("vm5", port("vm5", "net2", VM5, [["sub2", "10.2.0.15"]], { chassis: "host2" }));
  m.setBinding("vm4", binding("vm4", 4));
  return m;
}

function setup(mode: "proactive" | "reactive", apps = ["l2", "arp"]) {
  const m = model();
  const loaded = loadApps(apps, { l2: { mode } });
  const e = new Engine(m, loaded);
  e.recomputeAll();
  const app = (name: string) => loaded.find((a) => a.name === name)!;
  return { m, e, app };
}

const lines = (e: Engine, app: string): string[] =>
  e
    .allFlows()
    .filter((d) => d.owner.startsWith(`${app}/`))
    .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
    .sort();

interface Trace {
  installed: ReactiveFlows[];
  continued: { table: TableName; regs: [string, number][] }[];
  sent: { port: number; frame: Buffer }[];
}

function context(m: LocalModel, e: Engine, appName: AppName): { ctx: AppContext; t: Trace } {
  const t: Trace = { installed: [], continued: [], sent: [] };
  const ctx: AppContext = {
    view: m,
    packetOut: async (p, frame) => {
      t.sent.push({ port: p, frame });
    },
    resubmit: async () => {
      throw new Error("l2.mode reactive never re-runs a packet from table 0");
    },
    sendThrough: async () => {
      throw new Error("l2.mode reactive never sends a packet through a flow");
    },
    continueAt: async (table: TableName, _pkt: PacketInEvent, regs?: ReadonlyMap<RegField, number>) => {
      t.continued.push({ table, regs: [...(regs ?? [])].map(([f, v]) => [f.name, v]) });
    },
    track: (fn) => {
      const deps = new Set<string>();
      const result = m.tracking(deps, fn);
      return { result, deps: [...deps] };
    },
    installReactive: async (r) => {
      t.installed.push(r);
      e.setReactive(appName, r.key, r.flows, r.deps);
    },
    log: logger("test-l2-reactive"),
  };
  return { ctx, t };
}

/** A unicast frame from vm1 to `dst`, punted from l2_lookup with net1's key in the network register. */
function unicast(dst: string): PacketInEvent {
  return {
    inPort: 1,
    tableId: 40,
    cookie: 0n,
    data: buildFrame({
      eth: { src: VM1, dst },
      ipv4: { src: "10.1.0.11", dst: "10.1.0.13", ttl: 64 },
      udp: { srcPort: 40000, dstPort: 5000 },
      payload: Buffer.from("x"),
    }),
    fields: new Map([
      ["in_port", 1],
      [regName(F.network), 101],
      [regName(F.inPort), 1],
    ]),
  };
}

describe("l2.mode reactive: the flows ahead of time", () => {
  it("drops the remote port's l2_lookup and ARP flows on a tunnelled network, and adds the punts", () => {
    const pro = setup("proactive");
    const re = setup("reactive");
    const vm3l2 = `table=40, priority=100,reg6=0x65,dl_dst=${VM3} actions=set_field:0xc0000202->reg8,goto_table:50`;
    expect(lines(pro.e, "l2")).toContain(vm3l2);
    expect(lines(re.e, "l2")).not.toContain(vm3l2);
    expect(lines(re.e, "l2")).toContain(
      "table=40, priority=60,reg0=0x0/0x1,reg6=0x65,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=CONTROLLER:65535",
    );
    expect(lines(pro.e, "l2").some((l) => l.includes("priority=60"))).toBe(false);
    const vm3arp = (l: string) => l.includes("arp_tpa=10.1.0.13") || l.includes("nd_target=fd00:1::13");
    expect(lines(pro.e, "arp").filter(vm3arp)).toHaveLength(2);
    expect(lines(re.e, "arp").filter(vm3arp)).toEqual([]);
    expect(lines(re.e, "arp")).toEqual(
      expect.arrayContaining([
        "table=20, priority=50,arp,reg0=0x0/0x1,reg6=0x65,arp_op=1 actions=CONTROLLER:65535",
        "table=20, priority=50,icmp6,reg0=0x0/0x1,reg6=0x65,icmp_type=135 actions=CONTROLLER:65535",
      ]),
    );
  });

  it("keeps local ports and provider networks as they are in proactive mode", () => {
    const pro = setup("proactive");
    const re = setup("reactive");
    const untouched = (l: string) =>
      l.includes(VM1) || l.includes("reg6=0x1000064") || l.includes("10.1.0.11");
    expect(lines(re.e, "l2").filter(untouched)).toEqual(lines(pro.e, "l2").filter(untouched));
    expect(lines(re.e, "arp").filter(untouched)).toEqual(lines(pro.e, "arp").filter(untouched));
    // vm5 is on the other chassis, but on a vlan network: the physical network finds it
    expect(lines(re.e, "l2")).toContain(
      `table=40, priority=100,reg6=0x1000064,dl_dst=${VM5} actions=goto_table:52`,
    );
  });
});

describe("l2.mode reactive: the first frame", () => {
  it("installs the remote port's flow with an idle timeout and sends the frame on from l2_lookup", async () => {
    const { m, e, app } = setup("reactive");
    const { ctx, t } = context(m, e, "l2");
    await app("l2").packetIn!(unicast(VM3), ctx);
    expect(t.installed).toHaveLength(1);
    const r = t.installed[0]!;
    expect(r.key).toBe(`101/${VM3}`);
    expect(r.flows.map((b) => formatFlow(b.build(0n)))).toEqual([
      `table=40, idle_timeout=300, send_flow_rem priority=100,reg6=0x65,dl_dst=${VM3} actions=set_field:0xc0000202->reg8,goto_table:50`,
    ]);
    expect(r.deps).toEqual(expect.arrayContaining(["port:vm3", "chassis:host2"]));
    expect(t.continued).toEqual([{ table: "l2_lookup", regs: [] }]);
  });

  it("floods a frame to a MAC that is no port on another live chassis, installing nothing", async () => {
    const { m, e, app } = setup("reactive");
    const { ctx, t } = context(m, e, "l2");
    await app("l2").packetIn!(unicast("fa:16:3e:99:99:99"), ctx);
    m.setAlive("host2", false);
    e.recomputeChanged();
    await app("l2").packetIn!(unicast(VM3), ctx);
    expect(t.installed).toEqual([]);
    expect(t.continued).toEqual([
      { table: "l2_flood", regs: [["floodChunk", 0]] },
      { table: "l2_flood", regs: [["floodChunk", 0]] },
    ]);
  });

  it("the flow goes when the port's chassis dies, the port moves or is deleted", async () => {
    for (const change of [
      (m: LocalModel) => m.setAlive("host2", false),
      (m: LocalModel) =>
        m.setPort("vm3", port("vm3", "net1", VM3, [["sub1", "10.1.0.13"]], { chassis: "host3" })),
      (m: LocalModel) => m.setPort("vm3", undefined),
    ]) {
      const { m, e, app } = setup("reactive");
      const { ctx } = context(m, e, "l2");
      await app("l2").packetIn!(unicast(VM3), ctx);
      expect([...e.ownerKeys()].filter((k) => k.startsWith("l2/reactive/"))).toHaveLength(1);
      change(m);
      const changes = e.recomputeChanged();
      expect([...e.ownerKeys()].filter((k) => k.startsWith("l2/reactive/"))).toEqual([]);
      expect(changes.some((c) => c.owner.startsWith("l2/reactive/") && c.after === undefined)).toBe(true);
    }
  });

  it("a restarted agent adopts the installed flow, and not one that no longer matches the model", async () => {
    const { m, e, app } = setup("reactive");
    const { ctx } = context(m, e, "l2");
    await app("l2").packetIn!(unicast(VM3), ctx);
    const installed = e.allFlows().find((d) => d.owner.startsWith("l2/reactive/"))!.flow;
    const fresh = setup("reactive");
    const adopt = (f: typeof installed) =>
      fresh.app("l2").adoptReactive!(f, {
        view: fresh.m,
        track: (fn) => {
          const deps = new Set<string>();
          return { result: fresh.m.tracking(deps, fn), deps: [...deps] };
        },
      });
    expect(adopt(installed)).toMatchObject({ key: `101/${VM3}` });
    const stale = parseFlow(formatFlow(installed).replace("0xc0000202->reg8", "0xc0000209->reg8"));
    expect(adopt({ ...stale, cookie: installed.cookie })).toBeUndefined();
    // proactive mode adopts none: the port's flow is an owned one there
    const pro = setup("proactive");
    expect(
      pro.app("l2").adoptReactive!(installed, {
        view: pro.m,
        track: (fn) => ({ result: fn(), deps: [] }),
      }),
    ).toBeUndefined();
  });
});

describe("l2.mode reactive: ARP from the agent", () => {
  const request = (tpa: string, spa = "10.1.0.11"): PacketInEvent => ({
    inPort: 1,
    tableId: 20,
    cookie: 0n,
    data: buildArpRequest({ senderMac: VM1, senderIp: spa, targetIp: tpa }),
    fields: new Map([[regName(F.network), 101]]),
  });

  it("answers a request for a remote port's address out of the asking port", async () => {
    const { m, e, app } = setup("reactive");
    const { ctx, t } = context(m, e, "arp");
    await app("arp").packetIn!(request("10.1.0.13"), ctx);
    expect(t.continued).toEqual([]);
    expect(t.sent).toHaveLength(1);
    expect(t.sent[0]!.port).toBe(1);
    const reply = parseEthernet(t.sent[0]!.frame);
    expect(reply.eth).toMatchObject({ src: VM3, dst: VM1 });
    expect(reply.arp).toMatchObject({ op: 2, sha: VM3, spa: "10.1.0.13", tha: VM1, tpa: "10.1.0.11" });
  });

  it("sends on a request for an address no remote port has, and a gratuitous one", async () => {
    const { m, e, app } = setup("reactive");
    const { ctx, t } = context(m, e, "arp");
    await app("arp").packetIn!(request("10.1.0.99"), ctx);
    await app("arp").packetIn!(request("10.1.0.11", "10.1.0.11"), ctx);
    expect(t.sent).toEqual([]);
    expect(t.continued).toEqual([
      { table: "l2_lookup", regs: [] },
      { table: "l2_lookup", regs: [] },
    ]);
  });
});

describe("l3: a host route to a port on another chassis", () => {
  it("goes straight to egress_tunnel with the chassis' address, not through l2_lookup", () => {
    const m = model();
    m.setRouter(
      "r1",
      router("r1", [
        {
          subnetId: "sub1",
          portId: "rp1",
          networkId: "net1",
          ipAddress: "10.1.0.1",
          cidr: "10.1.0.0/24",
          macAddress: R_MAC,
        },
      ]),
    );
    const e = new Engine(m, loadApps(["l3"], { l3: { mode: "proactive" } }));
    e.recomputeAll();
    const routes = lines(e, "l3").filter((l) => l.includes("nw_dst=10.1.0.13 "));
    expect(routes).toEqual([
      `table=30, priority=332,ip,reg2=${routerKeyHex("r1")},nw_dst=10.1.0.13 actions=set_field:${R_MAC}->eth_src,set_field:${VM3}->eth_dst,dec_ttl,set_field:0x65->reg6,set_field:0xc0000202->reg8,goto_table:50`,
    ]);
  });
});
