/**
 * `flowdrake tc …`: iproute2's tc syntax for the flower subset flowdrake
 * speaks, sent to the kernel through flowdrake's own netlink bindings
 * (TcClient over the koffi socket), or printed as bytes:
 *
 *   flowdrake tc [--netns NAME] qdisc add|del dev DEV clsact|ingress
 *   flowdrake tc [--netns NAME] qdisc show [dev DEV]
 *   flowdrake tc [--netns NAME] filter add|replace|del dev DEV ingress|egress [chain N] [prio N]
 *                                  [handle N] [protocol P] flower …
 *   flowdrake tc [--netns NAME] [--json] filter show dev DEV ingress|egress [chain N] [prio N] …
 *   flowdrake tc [--netns NAME] batch FILE        (the lines of `tc -b FILE`; "-" reads stdin)
 *   flowdrake tc --dry-run --hex [--ifindex NAME=N] <a qdisc or filter command>
 *
 * `--dry-run --hex` prints the exact rtnetlink request (the bytes the golden
 * tests compare with what `tc` 6.1 sends) and opens no socket; its device
 * names come from `--ifindex NAME=N` or /sys/class/net. Live commands ask the
 * kernel (RTM_GETLINK) in the target namespace.
 *
 * `batch` parses every line before it sends anything (a typo loses nothing),
 * then sends the requests packed many per sendto(2) with acks, like
 * installFlowerRules. Unlike `tc -b` it does not stop at the first kernel
 * error: every failed line is reported with its number and the command exits 1
 * (what `tc -force -b` does). With --json each `filter show` line of a batch
 * prints one compact JSON array on one line (JSON Lines).
 *
 * The flowdrake flags may appear anywhere; every other word goes to the tc
 * parser untouched (so `ct_state -trk` keeps its dash). Kernel refusals
 * surface as NetlinkError: errno name, text and the kernel's extended-ack
 * message ("TC classifier not found").
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { BatchResult, OutMessage } from "../offload/netlink/client.js";
import { NetlinkError } from "../offload/netlink/errors.js";
import {
  type InstalledFilter,
  TcClient,
  commandMessage,
  encodeRequest,
  filterAddMessage,
  parentOf,
} from "../offload/netlink/tc/client.js";
import { FlowerBatchEncoder } from "../offload/netlink/tc/template.js";
import type { FlowerAction, FlowerRule } from "../offload/netlink/tc/rule.js";
import { TC_H_EGRESS_PARENT } from "../offload/netlink/tc/schema.js";
import {
  type TcCommand,
  actionText,
  formatRule,
  mentionedDevices,
  parseTcCommand,
  protocolName,
} from "../offload/netlink/tc/syntax.js";
import { FlowdrakeError, UsageError } from "../util/errors.js";

export interface TcCliOptions {
  dryRun: boolean;
  hex: boolean;
  json: boolean;
  netns?: string;
  ifindex: Record<string, number>;
  /** The tc words: "filter add dev v0 ingress … flower …". */
  args: string[];
}

function flagValue(argv: string[], i: number, flag: string): [string | undefined, number] {
  const w = argv[i]!;
  if (w === flag) return [argv[i + 1], i + 1];
  return [w.slice(flag.length + 1), i];
}

/** Split flowdrake's own flags out of the argv; the rest is tc's. */
export function splitTcArgv(argv: string[]): TcCliOptions {
  const o: TcCliOptions = { dryRun: false, hex: false, json: false, ifindex: {}, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i]!;
    if (w === "--dry-run") o.dryRun = true;
    else if (w === "--hex") o.hex = true;
    else if (w === "--json" || w === "-j") o.json = true;
    else if (w === "--netns" || w.startsWith("--netns=")) {
      const [v, next] = flagValue(argv, i, "--netns");
      i = next;
      if (!v || !/^[^/\0\s]{1,64}$/.test(v) || v === "." || v === "..") {
        throw new UsageError(`--netns expects a namespace name, got "${v ?? ""}"`);
      }
      o.netns = v;
    } else if (w === "--ifindex" || w.startsWith("--ifindex=")) {
      const [v, next] = flagValue(argv, i, "--ifindex");
      i = next;
      const m = /^([^=\s]+)=(\d+)$/.exec(v ?? "");
      if (!m) throw new UsageError(`--ifindex expects NAME=N, got "${v ?? ""}"`);
      o.ifindex[m[1]!] = Number(m[2]);
    } else if (w === "--") continue;
    else o.args.push(w);
  }
  return o;
}

function sysfsResolver(map: Record<string, number>): (dev: string) => number {
  return (dev) => {
    const known = map[dev];
    if (known !== undefined) return known;
    checkDevName(dev);
    try {
      return Number(readFileSync(`/sys/class/net/${dev}/ifindex`, "utf8").trim());
    } catch {
      throw new UsageError(`no such device: ${dev} (pass --ifindex ${dev}=N to name it)`, { dev });
    }
  };
}

function checkDevName(dev: string): void {
  if (!/^[^/\0\s]{1,15}$/.test(dev) || dev === "." || dev === "..") {
    throw new UsageError(`invalid device name "${dev}"`);
  }
}

/** `--dry-run --hex`: the request a command line sends, as hex (no socket). */
export function runTc(argv: string[]): string {
  const o = splitTcArgv(argv);
  if (!o.dryRun || !o.hex) {
    throw new UsageError("runTc prints requests only: pass --dry-run --hex (live commands use runTcLive)");
  }
  if (o.args.length === 0) throw new UsageError("usage: flowdrake tc --dry-run --hex filter add dev DEV …");
  const msg = commandMessage(parseTcCommand(o.args, sysfsResolver(o.ifindex)));
  return `${encodeRequest(msg).toString("hex")}\n`;
}

// ---------------------------------------------------------------- live

/** One line of a batch file, split into words (tc -b rules: # comments, blank lines skipped). */
export function batchLines(text: string): { line: number; words: string[] }[] {
  const out: { line: number; words: string[] }[] = [];
  text.split("\n").forEach((raw, i) => {
    const hash = raw.indexOf("#");
    const line = (hash < 0 ? raw : raw.slice(0, hash)).trim();
    if (!line) return;
    const words = line.split(/\s+/);
    if (words[0] === "tc") words.shift();
    if (words.length) out.push({ line: i + 1, words });
  });
  return out;
}

/** Device names → ifindex, asked of the kernel in the socket's namespace. */
async function resolveDevices(
  tc: TcClient,
  names: Iterable<string>,
  known: Record<string, number>,
  netns: string | undefined,
): Promise<Record<string, number>> {
  const map: Record<string, number> = { ...known };
  for (const dev of names) {
    if (map[dev] !== undefined) continue;
    checkDevName(dev);
    try {
      map[dev] = await tc.ifindex(dev);
    } catch (err) {
      if (err instanceof NetlinkError && err.errnoName === "ENODEV") {
        throw new UsageError(`no such device: ${dev}${netns ? ` in network namespace ${netns}` : ""}`, {
          dev,
          netns,
        });
      }
      throw err;
    }
  }
  return map;
}

/** Rule-level counters: tc counts per action; a flower rule's first action sees every hit. */
export interface RuleStats {
  packets: number;
  bytes: number;
  hwPackets: number;
  hwBytes: number;
  swPackets: number;
  swBytes: number;
  lastUseSecs?: number;
}

export function ruleStats(rule: FlowerRule): RuleStats | undefined {
  const s = rule.actions.find((a) => a.stats)?.stats;
  if (!s) return undefined;
  const bytes = Number(s.bytes);
  const hwBytes = Number(s.hwBytes ?? 0n);
  const hwPackets = s.hwPackets ?? 0;
  const out: RuleStats = {
    packets: s.packets,
    bytes,
    hwPackets,
    hwBytes,
    swPackets: s.packets - hwPackets,
    swBytes: bytes - hwBytes,
  };
  if (s.lastUseSecs !== undefined) out.lastUseSecs = s.lastUseSecs;
  return out;
}

function actionJson(a: FlowerAction, devName: (i: number) => string): Record<string, unknown> {
  const { stats, ...rest } = a;
  const out: Record<string, unknown> = { ...rest, text: actionText(a, devName).trim() };
  if (a.kind === "mirred") out.dev = a.dev ?? devName(a.ifindex);
  if (a.kind === "other" && a.options) out.options = a.options.toString("hex");
  if (stats) {
    out.stats = {
      packets: stats.packets,
      bytes: Number(stats.bytes),
      ...(stats.hwPackets !== undefined
        ? { hwPackets: stats.hwPackets, hwBytes: Number(stats.hwBytes ?? 0n) }
        : {}),
      ...(stats.installedSecs !== undefined
        ? { installedSecs: stats.installedSecs, lastUseSecs: stats.lastUseSecs }
        : {}),
    };
  }
  return out;
}

export interface FilterJson {
  dev: string;
  hook: string;
  kind: string;
  chain: number;
  prio: number;
  protocol: string;
  /** The flower eth_type key of a protocol-all filter (FlowerRule.ethType). */
  ethType?: string;
  handle?: number;
  match?: Record<string, unknown>;
  flags?: Record<string, boolean>;
  inHw?: boolean;
  inHwCount?: number;
  stats?: RuleStats;
  actions?: Record<string, unknown>[];
}

function hookName(parent: number): string {
  return parent === TC_H_EGRESS_PARENT ? "egress" : "ingress";
}

/** A decoded filter as plain JSON (numbers, not bigints). */
export function filterJson(f: InstalledFilter, dev: string, devName: (i: number) => string): FilterJson {
  const r = f.rule;
  const base: FilterJson = {
    dev,
    hook: hookName(f.parent),
    kind: f.kind,
    chain: r?.chain ?? f.chain,
    prio: r?.prio ?? f.prio,
    protocol: protocolName(r?.protocol ?? f.protocol),
  };
  const handle = r?.handle ?? f.handle;
  if (handle) base.handle = handle;
  if (!r) return base;
  if (r.ethType !== undefined) base.ethType = protocolName(r.ethType);
  base.match = r.match as Record<string, unknown>;
  base.flags = { ...(r.flags ?? {}) } as Record<string, boolean>;
  base.inHw = Boolean(r.flags?.inHw);
  if (r.inHwCount !== undefined) base.inHwCount = r.inHwCount;
  const st = ruleStats(r);
  if (st) base.stats = st;
  base.actions = r.actions.map((a) => actionJson(a, devName));
  return base;
}

/** tc-like text for one dumped filter, with a counters line per rule. */
export function filterText(f: InstalledFilter, devName: (i: number) => string): string {
  if (!f.rule) {
    return `filter protocol ${protocolName(f.protocol)} pref ${f.prio} ${f.kind} chain ${f.chain}${
      f.handle ? ` handle 0x${f.handle.toString(16)}` : ""
    }${f.kind === "flower" ? "" : " (options not decoded by flowdrake)"}`;
  }
  const text = formatRule(f.rule, devName);
  const s = ruleStats(f.rule);
  if (!s) return text;
  return `${text}\n  stats: ${s.packets} pkt ${s.bytes} bytes (sw ${s.swPackets} pkt ${s.swBytes} bytes, hw ${s.hwPackets} pkt ${s.hwBytes} bytes) ${f.rule.flags?.inHw ? "in_hw" : "not_in_hw"}`;
}

/** Raised by `batch` when the kernel refused some lines (the others were applied). */
export class TcBatchError extends FlowdrakeError {
  constructor(
    readonly failures: { line: number; command: string; error: NetlinkError }[],
    total: number,
  ) {
    super(
      "NETLINK",
      `${failures.length} of ${total} batch commands failed:\n${failures
        .slice(0, 20)
        .map((f) => `  line ${f.line}: ${f.command}\n    ${f.error.message}`)
        .join("\n")}${failures.length > 20 ? `\n  … and ${failures.length - 20} more` : ""}`,
      { failed: failures.length, total },
    );
  }
}

/** A hint for the kernel refusals people meet first. */
function withHint(err: unknown): unknown {
  if (!(err instanceof NetlinkError)) return err;
  const m = err.extack.msg ?? "";
  let hint = "";
  if (/classifier not found/i.test(m)) hint = "the kernel has no cls_flower (modprobe cls_flower)";
  else if (/action.*not found|unknown action/i.test(m))
    hint = "an action module is missing (modprobe act_<kind>)";
  else if (err.errnoName === "EINVAL" && /parent q?disc/i.test(m))
    hint = "add the qdisc first: flowdrake tc qdisc add dev DEV clsact";
  if (!hint) return err;
  return new NetlinkError(err.errno, { ...err.extack, msg: `${m} (hint: ${hint})` }, err.request);
}

interface Io {
  out: (s: string) => void;
}

async function showFilters(
  tc: TcClient,
  cmd: Extract<TcCommand, { selector: unknown }>,
  json: "pretty" | "line" | false,
  io: Io,
): Promise<void> {
  const sel = cmd.selector;
  const all = await tc.dumpFilters(cmd.target, sel.chain !== undefined ? { chain: sel.chain } : {});
  const chosen = all.filter((f) => {
    if (sel.prio !== undefined && (f.rule?.prio ?? f.prio) !== sel.prio) return false;
    if (sel.protocol !== undefined && (f.rule?.protocol ?? f.protocol) !== sel.protocol) return false;
    if (sel.handle !== undefined && (f.rule?.handle ?? f.handle) !== sel.handle) return false;
    if (sel.kind === "flower" && f.kind !== "flower") return false;
    // The kernel lists each (chain, prio) once without a handle before its filters; tc prints it,
    // flowdrake keeps it only for kinds it cannot decode.
    return f.rule !== undefined || f.kind !== "flower";
  });
  const names = await tc.links();
  const devName = (i: number) => names.get(i) ?? `if${i}`;
  const docs = chosen.map((f) => filterJson(f, cmd.dev, devName));
  if (json) io.out(`${JSON.stringify(docs, null, json === "pretty" ? 2 : undefined)}\n`);
  else io.out(chosen.map((f) => `${filterText(f, devName)}\n`).join(""));
}

async function showQdiscs(tc: TcClient, dev: string | undefined, o: TcCliOptions, io: Io): Promise<void> {
  const map = dev ? await resolveDevices(tc, [dev], o.ifindex, o.netns) : {};
  const qd = await tc.dumpQdiscs(dev ? map[dev] : 0);
  const names = await tc.links();
  const rows = qd.map((q) => ({
    dev: names.get(q.ifindex) ?? `if${q.ifindex}`,
    kind: q.kind,
    handle: `${(q.handle >>> 16).toString(16)}:`,
    parent:
      q.parent === 0xffffffff
        ? "root"
        : `${(q.parent >>> 16).toString(16)}:${(q.parent & 0xffff).toString(16)}`,
  }));
  if (o.json) io.out(`${JSON.stringify(rows, null, 2)}\n`);
  else io.out(rows.map((r) => `qdisc ${r.kind} ${r.handle} dev ${r.dev} parent ${r.parent}\n`).join(""));
}

/** The request of one parsed command (not show); filter adds of one target share a template encoder. */
function mutations(): (cmd: TcCommand) => OutMessage {
  const encoders = new Map<string, FlowerBatchEncoder>();
  return (cmd) => {
    if (cmd.object !== "filter" || (cmd.verb !== "add" && cmd.verb !== "replace")) return commandMessage(cmd);
    const key = `${cmd.verb} ${cmd.target.ifindex} ${parentOf(cmd.target)}`;
    let enc = encoders.get(key);
    if (!enc) {
      const { target } = cmd;
      const replace = cmd.verb === "replace";
      enc = new FlowerBatchEncoder((r) => filterAddMessage(target, r, { replace }));
      encoders.set(key, enc);
    }
    return enc.message(cmd.rule);
  };
}

function mutation(cmd: TcCommand): OutMessage {
  return commandMessage(cmd);
}

async function runBatch(tc: TcClient, o: TcCliOptions, file: string, io: Io): Promise<void> {
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read batch file ${file}: ${(err as Error).message}`);
  }
  const lines = batchLines(text);
  const devices = new Set<string>();
  for (const l of lines) for (const d of mentionedDevices(l.words)) devices.add(d);
  const map = await resolveDevices(tc, devices, o.ifindex, o.netns);
  const resolve = (d: string) => {
    const i = map[d];
    if (i === undefined) throw new UsageError(`no such device: ${d}`);
    return i;
  };
  const parsed = lines.map((l) => {
    try {
      return { ...l, cmd: parseTcCommand(l.words, resolve) };
    } catch (err) {
      if (err instanceof FlowdrakeError) {
        throw new UsageError(`${file}:${l.line}: ${err.message} (nothing was sent)`, { line: l.line });
      }
      throw err;
    }
  });
  const failures: { line: number; command: string; error: NetlinkError }[] = [];
  const encode = mutations();
  let pending: typeof parsed = [];
  const flush = async () => {
    if (!pending.length) return;
    const group = pending;
    pending = [];
    const res: BatchResult = await tc.nl.batch(
      group.map((p) => encode(p.cmd)),
      { batchSize: 512, ack: "last" },
    );
    for (const f of res.failed) {
      const p = group[f.index]!;
      failures.push({ line: p.line, command: p.words.join(" "), error: withHint(f.error) as NetlinkError });
    }
  };
  for (const p of parsed) {
    if (p.cmd.object === "filter" && p.cmd.verb === "show") {
      await flush();
      await showFilters(tc, p.cmd, o.json ? "line" : false, io);
    } else pending.push(p);
  }
  await flush();
  if (failures.length) throw new TcBatchError(failures, parsed.length);
}

/** Run a live `flowdrake tc` command line (everything after "tc"). */
export async function runTcLive(argv: string[], io: Io): Promise<void> {
  const o = splitTcArgv(argv);
  if (o.dryRun) {
    io.out(runTc(argv));
    return;
  }
  if (o.hex) throw new UsageError("--hex needs --dry-run");
  const [object, verb] = o.args;
  if (!object) throw new UsageError("usage: flowdrake tc [--netns NAME] qdisc|filter|batch …");
  const tc = TcClient.open(o.netns ? { netns: o.netns } : {});
  try {
    if (object === "batch") {
      if (!verb || o.args.length !== 2) throw new UsageError("usage: flowdrake tc batch FILE");
      await runBatch(tc, o, verb, io);
      return;
    }
    if (object === "qdisc" && (verb === "show" || verb === "list" || verb === undefined)) {
      const rest = o.args.slice(2);
      if (rest.length && (rest[0] !== "dev" || rest.length !== 2)) {
        throw new UsageError("usage: flowdrake tc qdisc show [dev DEV]");
      }
      await showQdiscs(tc, rest[1], o, io);
      return;
    }
    const map = await resolveDevices(tc, mentionedDevices(o.args), o.ifindex, o.netns);
    const cmd = parseTcCommand(o.args, (d) => {
      const i = map[d];
      if (i === undefined) throw new UsageError(`no such device: ${d}`);
      return i;
    });
    if (cmd.object === "filter" && cmd.verb === "show") {
      await showFilters(tc, cmd, o.json ? "pretty" : false, io);
      return;
    }
    try {
      await tc.nl.request(mutation(cmd));
    } catch (err) {
      throw withHint(err);
    }
  } finally {
    tc.close();
  }
}

export function register(program: Command): void {
  program
    .command("tc")
    .description("tc qdisc/filter flower commands through flowdrake's netlink bindings (iproute2 syntax)")
    .usage(
      "[--netns NAME] [--json] [--dry-run --hex] [--ifindex NAME=N] " +
        "<qdisc add|del|show | filter add|replace|del|show | batch FILE> …",
    )
    .argument("[args...]", "tc arguments, as for iproute2's tc")
    .allowUnknownOption()
    .allowExcessArguments()
    .action(async (_args: string[], _opts: unknown, cmd: Command) => {
      await runTcLive(cmd.args, { out: (s) => process.stdout.write(s) });
    });
}
