/**
 * flowdrake's tc messages against iproute2's: for every command line in
 * test/fixtures/tc/golden.json (bytes `tc` 6.1 sent, captured by
 * scripts/capture-tc-golden), parse the same argv with parseTcCommand, encode
 * it, and compare byte for byte apart from nlmsg_seq and nlmsg_pid (bytes
 * 8–15). Then decode iproute2's bytes into a FlowerRule / selector and
 * re-encode: the result must be the captured message again.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { OutMessage } from "../../src/offload/netlink/client.js";
import { NLM_F_REPLACE, decodeNlmsgs } from "../../src/offload/netlink/framing.js";
import {
  type FilterSelector,
  commandMessage,
  decodeFilter,
  encodeRequest,
  filterAddMessage,
  filterDelMessage,
  qdiscMessage,
} from "../../src/offload/netlink/tc/client.js";
import { decodeTcMessage, unpackInfo } from "../../src/offload/netlink/tc/message.js";
import {
  RTM_DELQDISC,
  RTM_DELTFILTER,
  RTM_NEWQDISC,
  RTM_NEWTFILTER,
} from "../../src/offload/netlink/tc/schema.js";
import { parseTcCommand } from "../../src/offload/netlink/tc/syntax.js";

interface GoldenCase {
  name: string;
  cmd: string;
  hex: string;
}
const here = dirname(fileURLToPath(import.meta.url));
const golden = JSON.parse(readFileSync(join(here, "../fixtures/tc/golden.json"), "utf8")) as {
  ifindex: Record<string, number>;
  cases: GoldenCase[];
};

function resolve(dev: string): number {
  const i = golden.ifindex[dev];
  if (i === undefined) throw new Error(`golden.json has no ifindex for ${dev}`);
  return i;
}

/** Zero nlmsg_seq and nlmsg_pid: the only bytes tc and flowdrake may differ in. */
function masked(b: Buffer): string {
  const c = Buffer.from(b);
  c.fill(0, 8, 16);
  return c.toString("hex").replace(/(.{8})/g, "$1 ");
}

describe("tc messages equal iproute2 6.1's", () => {
  it.each(golden.cases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const got = encodeRequest(commandMessage(parseTcCommand(c.cmd.split(/\s+/), resolve)));
    expect(masked(got)).toBe(masked(Buffer.from(c.hex, "hex")));
  });
});

/** iproute2's bytes → flowdrake's model (qdisc kind, FlowerRule, selector) → a message again. */
function fromCaptured(bytes: Buffer): OutMessage {
  const msgs = decodeNlmsgs(bytes);
  expect(msgs).toHaveLength(1);
  const m = decodeTcMessage(msgs[0]!);
  const kind = String(m.attrs.KIND ?? "");
  switch (m.type) {
    case RTM_NEWQDISC:
    case RTM_DELQDISC:
      if (kind !== "ingress" && kind !== "clsact") throw new Error(`unexpected qdisc kind ${kind}`);
      return qdiscMessage(m.type === RTM_NEWQDISC ? "add" : "del", m.tcm.ifindex, kind);
    case RTM_NEWTFILTER: {
      const f = decodeFilter(m);
      if (!f.rule) throw new Error("captured filter did not decode to a flower rule");
      return filterAddMessage({ ifindex: f.ifindex, parent: f.parent }, f.rule, {
        replace: (m.flags & NLM_F_REPLACE) !== 0,
      });
    }
    case RTM_DELTFILTER: {
      const { prio, protocol } = unpackInfo(m.tcm.info);
      const sel: FilterSelector = {};
      if (m.attrs.CHAIN !== undefined) sel.chain = Number(m.attrs.CHAIN);
      if (prio) sel.prio = prio;
      if (protocol) sel.protocol = protocol;
      if (m.tcm.handle) sel.handle = m.tcm.handle;
      if (kind === "flower") sel.kind = "flower";
      return filterDelMessage({ ifindex: m.tcm.ifindex, parent: m.tcm.parent }, sel);
    }
    default:
      throw new Error(`unexpected message type ${m.type}`);
  }
}

describe("iproute2's messages decode and re-encode to the same bytes", () => {
  it.each(golden.cases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const captured = Buffer.from(c.hex, "hex");
    const again = encodeRequest(fromCaptured(captured), captured.readUInt32LE(8), captured.readUInt32LE(12));
    expect(again.toString("hex")).toBe(c.hex);
  });
});

describe("iproute2's filter messages decode to the rule their command line parses to", () => {
  const adds = golden.cases.filter((c) => c.cmd.startsWith("filter add"));
  it.each(adds.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const parsed = parseTcCommand(c.cmd.split(/\s+/), resolve);
    if (parsed.object !== "filter" || parsed.verb !== "add") throw new Error("not a filter add");
    const m = decodeTcMessage(decodeNlmsgs(Buffer.from(c.hex, "hex"))[0]!);
    // The decoded rule also spells out defaults the command line left implicit
    // (an action's control); the device name is the one thing bytes cannot carry.
    const want = JSON.parse(JSON.stringify(parsed.rule, (k, v: unknown) => (k === "dev" ? undefined : v)));
    expect(decodeFilter(m).rule).toMatchObject(want);
  });
});
