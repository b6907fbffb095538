/**
 * `flowdrake caps`: what this host's NICs can offload, and what must change
 * for them to offload. `--capture DIR` saves everything the report read so the
 * same report can be produced elsewhere with `--from DIR`.
 */
import type { Command } from "commander";
import {
  buildReport,
  captureSource,
  discover,
  formatReport,
  liveSource,
  recordingSource,
} from "../offload/caps/index.js";
import type { HostSource } from "../offload/caps/source.js";
import { UsageError } from "../util/errors.js";
import { capsProbes } from "./caps-probes.js";

interface CapsOptions {
  json?: boolean;
  from?: string;
  capture?: string;
  ovsdb?: string;
}

export async function runCaps(opts: CapsOptions): Promise<string> {
  if (opts.from && opts.capture) throw new UsageError("--from and --capture cannot be combined");
  let source: HostSource = opts.from ? captureSource(opts.from) : liveSource(await capsProbes(opts.ovsdb));
  if (opts.capture) source = recordingSource(source, opts.capture);
  const report = buildReport(await discover(source));
  return opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report);
}

export function register(program: Command): void {
  program
    .command("caps")
    .description("report what this host's NICs can offload, and what to change so they do")
    .option("--json", "machine-readable report")
    .option("--from <dir>", "analyse a capture made with --capture instead of this host")
    .option(
      "--capture <dir>",
      "also save everything the report reads (sysfs, netlink answers, OVS settings) to DIR",
    )
    .option(
      "--ovsdb <remote>",
      "OVSDB to read other_config offload settings from",
      "unix:/var/run/openvswitch/db.sock",
    )
    .action(async (opts: CapsOptions) => {
      process.stdout.write(await runCaps(opts));
    });
}
