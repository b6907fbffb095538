/**
 * `flowdrake tc …`: iproute2's tc syntax for the flower subset flowdrake
 * speaks (qdisc add|del ingress|clsact, filter add|replace|del … flower …),
 * turned into the exact rtnetlink request flowdrake would send. With
 * `--dry-run --hex` it prints that message as hex — the bytes the golden tests
 * compare with what `tc` 6.1 sends — and opens no socket. Device names come
 * from `--ifindex NAME=N` or, failing that, /sys/class/net/NAME/ifindex.
 *
 * The flowdrake flags may appear anywhere; every other word goes to the tc
 * parser untouched (so `ct_state -trk` keeps its dash).
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { commandMessage, encodeRequest } from "../offload/netlink/tc/client.js";
import { parseTcCommand } from "../offload/netlink/tc/syntax.js";
import { UsageError } from "../util/errors.js";

export interface TcCliOptions {
  dryRun: boolean;
  hex: boolean;
  ifindex: Record<string, number>;
  /** The tc words: "filter add dev v0 ingress … flower …". */
  args: string[];
}

/** Split flowdrake's own flags out of the argv; the rest is tc's. */
export function splitTcArgv(argv: string[]): TcCliOptions {
  const o: TcCliOptions = { dryRun: false, hex: false, ifindex: {}, args: [] };
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i]!;
    if (w === "--dry-run") o.dryRun = true;
    else if (w === "--hex") o.hex = true;
    else if (w === "--ifindex" || w.startsWith("--ifindex=")) {
      const v = w === "--ifindex" ? argv[++i] : w.slice("--ifindex=".length);
      const m = /^([^=\s]+)=(\d+)$/.exec(v ?? "");
      if (!m) throw new UsageError(`--ifindex expects NAME=N, got "${v ?? ""}"`);
      o.ifindex[m[1]!] = Number(m[2]);
    } else if (w === "--") continue;
    else o.args.push(w);
  }
  return o;
}

function resolver(map: Record<string, number>): (dev: string) => number {
  return (dev) => {
    const known = map[dev];
    if (known !== undefined) return known;
    if (!/^[^/\0]{1,15}$/.test(dev) || dev === "." || dev === "..") {
      throw new UsageError(`invalid device name "${dev}"`);
    }
    try {
      return Number(readFileSync(`/sys/class/net/${dev}/ifindex`, "utf8").trim());
    } catch {
      throw new UsageError(`no such device: ${dev} (pass --ifindex ${dev}=N to name it)`, { dev });
    }
  };
}

/** Run `flowdrake tc` on an argv (everything after "tc"); returns what it prints. */
export function runTc(argv: string[]): string {
  const o = splitTcArgv(argv);
  if (!o.dryRun || !o.hex) {
    throw new UsageError("flowdrake tc only supports --dry-run --hex (print the netlink request as hex)");
  }
  if (o.args.length === 0) throw new UsageError("usage: flowdrake tc --dry-run --hex filter add dev DEV …");
  const msg = commandMessage(parseTcCommand(o.args, resolver(o.ifindex)));
  return `${encodeRequest(msg).toString("hex")}\n`;
}

export function register(program: Command): void {
  program
    .command("tc")
    .description("tc flower syntax → the rtnetlink request flowdrake sends (--dry-run --hex prints it)")
    .usage("--dry-run --hex [--ifindex NAME=N] <qdisc|filter> <add|replace|del> dev DEV …")
    .argument("[args...]", "tc arguments, as for iproute2's tc")
    .allowUnknownOption()
    .allowExcessArguments()
    .action((_args: string[], _opts: unknown, cmd: Command) => {
      process.stdout.write(runTc(cmd.args));
    });
}
