/**
 * The datapath layout's declarations and their load-time checks: tables in
 * increasing order with forward misses, register fields that never overlap,
 * cookies that name their app, owner and category, meter ids per purpose,
 * conntrack zones that are never shared, and a flow builder that refuses
 * what the layout forbids.
 */
import { describe, expect, it } from "vitest";
import {
  APP_IDS,
  CONTROLLER_METER,
  isOurMeter,
  CT_ZONE_MAX,
  CtZoneExhausted,
  CtZones,
  CT_ZONE_MIN,
  portZone,
  F,
  FLAG,
  PIPELINE,
  appOfCookie,
  categoryOfCookie,
  checkFields,
  checkPipeline,
  cookieFor,
  flow,
  formatPipeline,
  isOurs,
  meterId,
  table,
  type TableDef,
} from "../../src/datapath/index.js";
import { APP_FACTORIES } from "../../src/apps/index.js";
import { formatFlow } from "../../src/openflow/text.js";

describe("pipeline tables", () => {
  it("ids increase, names are unique, misses go forward to declared tables", () => {
    expect(() => checkPipeline(PIPELINE)).not.toThrow();
    expect(new Set(PIPELINE.map((t) => t.name)).size).toBe(PIPELINE.length);
    expect(table("classification")).toBe(0);
    expect(table("l2_flood")).toBe(45);
    expect(formatPipeline()).toMatch(/^TABLE\s+NAME\s+STAGE\s+MISS\s+PURPOSE/);
  });

  it("refuses a layout whose ids do not increase, or whose miss goes backwards or nowhere", () => {
    const t = (id: number, name: string, miss: TableDef["miss"] = "drop"): TableDef => ({
      id,
      name,
      stage: "classify",
      purpose: "",
      miss,
    });
    expect(() => checkPipeline([t(0, "a"), t(0, "b")])).toThrow(/does not follow/);
    expect(() => checkPipeline([t(5, "a"), t(3, "b")])).toThrow(/does not follow/);
    expect(() => checkPipeline([t(0, "a", { goto: "zz" })])).toThrow(/unknown table/);
    expect(() => checkPipeline([t(0, "a"), t(1, "b", { goto: "a" })])).toThrow(/backwards/);
    expect(() => checkPipeline([t(254, "a")])).toThrow(/outside/);
  });
});

describe("register fields", () => {
  it("do not overlap; an overlap or an out-of-range field is refused", () => {
    expect(() => checkFields(Object.values(F))).not.toThrow();
    expect(() =>
      checkFields([
        { name: "a", reg: 1, ofs: 0, nbits: 8, doc: "" },
        { name: "b", reg: 1, ofs: 7, nbits: 4, doc: "" },
      ]),
    ).toThrow(/a and b overlap in reg1/);
    expect(() =>
      checkFields([
        { name: "a", reg: 1, ofs: 0, nbits: 8, doc: "" },
        { name: "b", reg: 2, ofs: 0, nbits: 8, doc: "" },
      ]),
    ).not.toThrow();
    expect(() => checkFields([{ name: "c", reg: 3, ofs: 30, nbits: 4, doc: "" }])).toThrow(/out of range/);
  });
});

describe("app registry and cookies", () => {
  it("every loadable app has a cookie id, and ids are unique", () => {
    for (const name of Object.keys(APP_FACTORIES)) expect(APP_IDS).toHaveProperty(name);
    expect(new Set(Object.values(APP_IDS)).size).toBe(Object.keys(APP_IDS).length);
  });

  it("a cookie names its app, owner and category, deterministically", () => {
    const c = cookieFor("dhcp", "port/p1");
    expect(cookieFor("dhcp", "port/p1")).toBe(c);
    expect(cookieFor("dhcp", "port/p2")).not.toBe(c);
    expect(appOfCookie(c)).toBe("dhcp");
    expect(categoryOfCookie(c)).toBe("proactive");
    const r = cookieFor("l2", "reactive/x", "reactive");
    expect(appOfCookie(r)).toBe("l2");
    expect(categoryOfCookie(r)).toBe("reactive");
    expect(isOurs(0x1234n)).toBe(false);
    expect(appOfCookie(0x1234n)).toBeUndefined();
  });
});

describe("meter ids and conntrack zones", () => {
  it("meter ids are per purpose and per ofport, in disjoint ranges", () => {
    expect(meterId("dhcp", 7)).toBe(7);
    expect(meterId("nd", 7)).toBe(0x10007);
    expect(meterId("l3", 7)).toBe(0x20007);
    expect(meterId("nat", 7)).toBe(0x30007);
    expect(() => meterId("dhcp", 0)).toThrow(RangeError);
    expect(() => meterId("dhcp", 0xff00)).toThrow(RangeError);
    expect(isOurMeter(meterId("nd", 3))).toBe(true);
    expect(isOurMeter(CONTROLLER_METER)).toBe(true);
    expect(isOurMeter(0xfffffffd)).toBe(false); // OFPM_SLOWPATH: an operator's, not ours
    expect(isOurMeter(0x30001)).toBe(true);
    expect(isOurMeter(0x40001)).toBe(false);
    expect(isOurMeter(0)).toBe(false);
  });

  it("a preferred zone is taken when free, else the next free one", () => {
    const z = new CtZones();
    expect(z.zoneFor("nat/r1", CT_ZONE_MIN + 40)).toBe(CT_ZONE_MIN + 40);
    const second = z.zoneFor("nat/r2", CT_ZONE_MIN + 40);
    expect(second).not.toBe(CT_ZONE_MIN + 40);
    expect(second).toBeGreaterThanOrEqual(CT_ZONE_MIN);
    // out of range or a port zone: ignored
    expect(z.zoneFor("nat/r3", 5)).toBeGreaterThanOrEqual(CT_ZONE_MIN);
    expect(z.zoneFor("nat/r1", CT_ZONE_MIN + 7)).toBe(CT_ZONE_MIN + 40);
  });

  it("zones are unique per key, stable, reusable after release, restored from a snapshot", () => {
    const z = new CtZones();
    const a = z.zoneFor("port/a");
    const b = z.zoneFor("port/b");
    expect(a).not.toBe(b);
    expect(z.zoneFor("port/a")).toBe(a);
    z.release("port/a");
    expect(z.peek("port/a")).toBeUndefined();
    const again = new CtZones(z.snapshot());
    expect(again.zoneFor("port/b")).toBe(b);
    expect(again.zoneFor("port/c")).not.toBe(b);
    // bad snapshot entries (zone 0, duplicates) are dropped rather than shared
    // bad snapshot entries (zone 0, a port's zone, duplicates) are dropped rather than shared
    const bad = new CtZones([
      ["x", 0],
      ["w", 7],
      ["y", CT_ZONE_MIN + 5],
      ["z", CT_ZONE_MIN + 5],
    ]);
    expect(bad.peek("x")).toBeUndefined();
    expect(bad.peek("w")).toBeUndefined();
    expect(bad.peek("z")).toBeUndefined();
    expect(bad.zoneFor("z")).not.toBe(CT_ZONE_MIN + 5);
    // never a zone a port could have
    expect(a).toBeGreaterThan(portZone(0xfeff));
  });

  it("port zones are the ofport, inside the range CtZones leaves alone", () => {
    expect(portZone(1)).toBe(1);
    expect(portZone(0xfeff)).toBe(0xfeff);
    expect(portZone(0xfeff)).toBeLessThan(CT_ZONE_MIN);
    expect(() => portZone(0)).toThrow(RangeError);
    expect(() => portZone(0xff00)).toThrow(RangeError);
  });

  it("runs out loudly instead of sharing a zone", () => {
    const n = CT_ZONE_MAX - CT_ZONE_MIN + 1;
    const z = new CtZones(Array.from({ length: n }, (_, i): [string, number] => [`k${i}`, CT_ZONE_MIN + i]));
    expect(z.size).toBe(n);
    expect(() => z.zoneFor("one-more")).toThrow(CtZoneExhausted);
  });
});

describe("flow builder", () => {
  it("writes what ovs-ofctl would print", () => {
    const f = flow("egress_tunnel", 100)
      .reg(F.network, 101)
      .flag(FLAG.fromTunnel, false)
      .move(F.remoteChassis, "tun_dst")
      .set("tun_id", 101)
      .output(100)
      .build(0n);
    expect(formatFlow(f)).toBe(
      "table=50, priority=100,reg0=0x0/0x1,reg6=0x65 actions=move:NXM_NX_REG8[]->NXM_NX_TUN_IPV4_DST[],set_field:0x65->tun_id,output:100",
    );
  });

  it("shares a repeated value's match and action objects, frozen, and keeps a route's address its own", () => {
    const route = (ip: string) =>
      flow("l3", 300)
        .proto("ip")
        .reg(F.router, 7)
        .eq("ip_dst", ip)
        .set("eth_src", "fa:16:3e:aa:00:01")
        .decTtl()
        .load(F.network, 101)
        .output(3)
        .build(0n);
    const a = route("10.2.0.5");
    const b = route("10.2.0.6");
    expect(a.match[1]).toBe(b.match[1]); // the router key
    expect(a.match[2]).not.toBe(b.match[2]); // the address
    const actions = (f: typeof a) => (f.instructions[0] as { actions: unknown[] }).actions;
    for (let i = 0; i < 5; i++) expect(actions(a)[i]).toBe(actions(b)[i]);
    expect(Object.isFrozen(a.match[1])).toBe(true);
    expect(Object.isFrozen(actions(a)[0])).toBe(true);
    expect(formatFlow(a)).toBe(
      "table=30, priority=300,ip,reg2=0x7,nw_dst=10.2.0.5 actions=set_field:fa:16:3e:aa:00:01->eth_src,dec_ttl,set_field:0x65->reg6,output:3",
    );
  });

  it("stays correct past the bound of its shared values", () => {
    const built = Array.from({ length: 10_000 }, (_, i) =>
      flow("l2_lookup", 100).reg(F.network, i).output(i).build(0n),
    );
    expect(built.map((f) => formatFlow(f))).toEqual(
      built.map((_, i) => `table=40, priority=100,reg6=0x${i.toString(16)} actions=output:${i}`),
    );
    expect(flow("l2_lookup", 100).reg(F.network, 3).build(0n).match[0]).toBe(
      flow("l2_lookup", 100).reg(F.network, 3).build(0n).match[0],
    );
  });

  it("puts timeouts and flags into the flow only when set", () => {
    expect(flow("l3", 300).build(1n)).toStrictEqual({
      table: 30,
      priority: 300,
      cookie: 1n,
      match: [],
      instructions: [],
    });
    expect(flow("l3", 300).idleTimeout(300).sendFlowRemoved().build(1n)).toStrictEqual({
      table: 30,
      priority: 300,
      cookie: 1n,
      match: [],
      instructions: [],
      idleTimeout: 300,
      flags: 1,
    });
    expect(flow("l3", 300).hardTimeout(5).idleTimeout(9).build(1n)).toStrictEqual({
      table: 30,
      priority: 300,
      cookie: 1n,
      match: [],
      instructions: [],
      idleTimeout: 9,
      hardTimeout: 5,
    });
  });

  it("refuses a goto that does not go forward and a field OVS does not know", () => {
    expect(() => flow("l2_lookup", 1).goto("classification").build(0n)).toThrow(/forward/);
    expect(() => flow("l2_lookup", 1).eq("no_such_field", 1)).toThrow(/unknown field/);
  });
});
