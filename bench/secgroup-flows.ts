/**
 * Flow attribution for the security-group benchmark (bench/secgroup.ts):
 * which of br-int's flows the security groups cost, on flowdrake and on OVN.
 *
 * Two methods, both on `ovs-ofctl --no-stats dump-flows` lines:
 *
 *   - by owner: flowdrake's cookies name the app that wrote a flow
 *     (src/datapath/cookies.ts: mark 0xfd, app id in bits 55..48), so the
 *     secgroup app's flows are the ones whose cookie decodes to "secgroup";
 *     ovn-controller's cookies are the first 32 bits of the SB Logical_Flow
 *     that produced a flow, so `ovn-sbctl --uuid lflow-list` maps each flow
 *     to its logical stage (ls_in_acl, ls_out_pre_acl, …).
 *   - by difference: the same switch before and after the groups (or ACLs)
 *     were written, compared as multisets of flows with the cookie left out:
 *     the net change in flow count, and which flows came and went. Whatever
 *     the groups cost anywhere in the pipeline is in the net change, so this
 *     needs no knowledge of the other side's table layout.
 */
import { appOfCookie } from "../src/datapath/cookies.js";
import type { OvsSandbox } from "../src/sandbox/ovs.js";
import { FlowdrakeError } from "../src/util/errors.js";
import { run } from "../src/util/exec.js";

export interface DumpedFlow {
  table: number;
  priority: number;
  cookie: bigint;
  /** The line without its cookie: what the diff compares. */
  key: string;
}

/** Parse dump-flows lines (header lines and blank lines skipped). */
export function parseFlows(lines: readonly string[]): DumpedFlow[] {
  const out: DumpedFlow[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || /^(OFPST|NXST|OFPIT)_/.test(line)) continue;
    const cookie = /(?:^|[ ,])cookie=0x([0-9a-f]+)/.exec(line)?.[1];
    const table = /(?:^|[ ,])table=(\d+)/.exec(line)?.[1];
    const priority = /(?:^|[ ,])priority=(\d+)/.exec(line)?.[1];
    if (!/ actions=/.test(` ${line}`)) {
      throw new FlowdrakeError("PARSE", `not a dump-flows line: ${line}`);
    }
    out.push({
      table: table === undefined ? 0 : Number(table),
      priority: priority === undefined ? 32768 : Number(priority),
      cookie: cookie === undefined ? 0n : BigInt(`0x${cookie}`),
      key: line.replace(/(^|[ ,])cookie=0x[0-9a-f]+(?:\/0x[0-9a-f]+)?,\s*/, "$1").replace(/\s+/g, " "),
    });
  }
  return out;
}

/** A bridge's flows, as `ovs-ofctl -O OpenFlow15 --no-stats dump-flows` prints them. */
export async function dumpBridgeFlows(ovs: OvsSandbox, bridge = "br-int"): Promise<DumpedFlow[]> {
  const { stdout } = await run(
    ["ovs-ofctl", "-O", "OpenFlow15", "--no-stats", "dump-flows", ovs.mgmtRemote(bridge)],
    { env: ovs.env },
  );
  return parseFlows(stdout.split("\n"));
}

/** Flow count per OpenFlow table, tables in numeric order. */
export function countByTable(flows: readonly DumpedFlow[]): Record<string, number> {
  const out = new Map<number, number>();
  for (const f of flows) out.set(f.table, (out.get(f.table) ?? 0) + 1);
  return Object.fromEntries([...out.entries()].sort((a, b) => a[0] - b[0]).map(([t, n]) => [String(t), n]));
}

/** The flows flowdrake's secgroup app owns (by cookie). */
export function secgroupOwned(flows: readonly DumpedFlow[]): DumpedFlow[] {
  return flows.filter((f) => appOfCookie(f.cookie) === "secgroup");
}

export interface FlowDelta {
  before: number;
  after: number;
  /** after − before */
  net: number;
  added: DumpedFlow[];
  removed: DumpedFlow[];
}

/** Multiset difference of two dumps of one switch, by flow (cookie ignored). */
export function flowDelta(before: readonly DumpedFlow[], after: readonly DumpedFlow[]): FlowDelta {
  const left = new Map<string, DumpedFlow[]>();
  for (const f of before) {
    const l = left.get(f.key);
    if (l) l.push(f);
    else left.set(f.key, [f]);
  }
  const added: DumpedFlow[] = [];
  for (const f of after) {
    const l = left.get(f.key);
    if (l?.length) l.pop();
    else added.push(f);
  }
  const removed = [...left.values()].flat();
  return { before: before.length, after: after.length, net: after.length - before.length, added, removed };
}

/**
 * `ovn-sbctl --uuid lflow-list` → cookie (the Logical_Flow uuid's first 32
 * bits, as ovn-controller writes it) → logical stage name.
 */
export function parseLflowStages(text: string): Map<bigint, string> {
  const out = new Map<bigint, string>();
  for (const line of text.split("\n")) {
    const m = /^\s*uuid=0x([0-9a-f]+),\s*table=\d+\s*\(\s*([\w-]+)\s*\)/.exec(line);
    if (m) out.set(BigInt(`0x${m[1]}`), m[2]!);
  }
  return out;
}

/** Flow count per logical stage; flows no logical flow produced count as "(physical)". */
export function countByStage(
  flows: readonly DumpedFlow[],
  stages: ReadonlyMap<bigint, string>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of flows) {
    const s = stages.get(f.cookie & 0xffff_ffffn) ?? "(physical)";
    out[s] = (out[s] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
}

export function median(xs: readonly number[]): number {
  if (!xs.length) throw new FlowdrakeError("USAGE", "median of no samples");
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
