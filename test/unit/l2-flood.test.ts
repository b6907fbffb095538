/**
 * The l2 app's flood set in chunks: a network with more copies than
 * FLOOD_CHUNK gets one l2_flood flow per chunk, chained through the
 * floodChunk register (reg4), each copy exactly once and in order — a local
 * port's copy through egress security, a remote chassis' copy through its
 * tunnel.
 */
import { describe, expect, it } from "vitest";
import { loadApps } from "../../src/apps/index.js";
import { FLOOD_CHUNK } from "../../src/apps/l2.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { formatFlow } from "../../src/openflow/text.js";
import { binding, chassis, net, newModel, port, subnet } from "../harness/model-fixture.js";

const mac = (i: number) =>
  `fa:16:3e:00:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;

/** net1 (geneve 101) with `locals` local ports (ofports 1..locals) and one port on each of `remotes` chassis. */
function world(locals: number, remotes: number): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 101 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.1.0.0/16"));
  for (let i = 1; i <= locals; i++) {
    m.setPort(`p${i}`, port(`p${i}`, "net1", mac(i), [["sub1", `10.1.${i >> 8}.${i & 255}`]]));
    m.setBinding(`p${i}`, binding(`p${i}`, i));
  }
  for (let c = 1; c <= remotes; c++) {
    m.setChassis(`h${c}`, chassis(`h${c}`, `192.0.2.${100 + c}`));
    m.setAlive(`h${c}`, true);
    const i = 1000 + c;
    m.setPort(
      `r${c}`,
      port(`r${c}`, "net1", mac(i), [["sub1", `10.1.${i >> 8}.${i & 255}`]], { chassis: `h${c}` }),
    );
  }
  return m;
}

function floodLines(m: LocalModel): string[] {
  const e = new Engine(m, loadApps(["l2"]));
  e.recomputeAll();
  return e
    .allFlows()
    .filter((d) => d.owner === "l2/network/net1")
    .map((d) => formatFlow({ ...d.flow, cookie: 0n }))
    .sort();
}

const copy = (ofport: number) => `set_field:0x${ofport.toString(16)}->reg7,resubmit(,55)`;
const remote = (ip: number) => `set_field:0x${ip.toString(16)}->reg8,resubmit(,50)`;

describe("l2 flood chunks", () => {
  it(`${FLOOD_CHUNK} copies fit one flow; one more starts a second chunk`, () => {
    const ports = (a: number, b: number) =>
      Array.from({ length: b - a + 1 }, (_, k) => copy(a + k)).join(",");
    expect(floodLines(world(FLOOD_CHUNK, 0))).toEqual([
      `table=40, priority=50,reg6=0x65 actions=goto_table:45`,
      `table=45, priority=100,reg4=0x0,reg6=0x65 actions=${ports(1, FLOOD_CHUNK)}`,
    ]);
    expect(floodLines(world(FLOOD_CHUNK + 1, 0))).toEqual([
      `table=40, priority=50,reg6=0x65 actions=goto_table:45`,
      `table=45, priority=100,reg4=0x0,reg6=0x65 actions=${ports(1, FLOOD_CHUNK)},set_field:0x1->reg4,resubmit(,45)`,
      `table=45, priority=100,reg4=0x1,reg6=0x65 actions=${copy(FLOOD_CHUNK + 1)}`,
    ]);
  });

  it("remote chassis come after the local ports, across chunk borders", () => {
    const n = 2 * FLOOD_CHUNK - 1;
    const lines = floodLines(world(n, 2));
    const base = 0xc0000200; // 192.0.2.0
    const all = [...Array.from({ length: n }, (_, k) => copy(k + 1)), remote(base + 101), remote(base + 102)];
    expect(lines).toEqual([
      `table=40, priority=50,reg6=0x65 actions=goto_table:45`,
      `table=45, priority=100,reg4=0x0,reg6=0x65 actions=${all.slice(0, FLOOD_CHUNK).join(",")},set_field:0x1->reg4,resubmit(,45)`,
      `table=45, priority=100,reg4=0x1,reg6=0x65 actions=${all.slice(FLOOD_CHUNK, 2 * FLOOD_CHUNK).join(",")},set_field:0x2->reg4,resubmit(,45)`,
      `table=45, priority=100,reg4=0x2,reg6=0x65 actions=${all.slice(2 * FLOOD_CHUNK).join(",")}`,
    ]);
  });
});
