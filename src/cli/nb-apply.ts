/**
 * `flowdrake nb apply -f topology.yaml [--prune] [--dry-run]`: make the NB
 * model match a topology file (YAML or JSON), the way operators seed a lab.
 * Planning and execution live in src/nb/apply.ts; this module reads the
 * file, prints one line per change (`+ network net-a`, `~ port vm1
 * (macAddress)`, `- port p9`, or `no changes`) and maps errors to the `nb`
 * exit codes. A file that cannot be applied is refused before any write.
 * The plan runs as one batch (see src/nb/apply.ts): when it stops, the
 * changes printed are exactly the ones committed. Malformed stored objects
 * of the kinds apply compares get a warning line each and are left alone;
 * a file that lists or refers to one is refused.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { parse as parseYaml } from "yaml";
import { type Change, executePlan, formatChange, parseTopology, planApply, readState } from "../nb/apply.js";
import { ValidationError } from "../nb/model/index.js";
import { UsageError } from "../util/errors.js";
import { type NbOpts, WAIT_OPTION, common, warnMalformed, withApi } from "./nb-run.js";

interface ApplyOpts extends NbOpts {
  file?: string;
  prune?: boolean;
  dryRun?: boolean;
}

function readTopology(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new UsageError(`-f ${file}: ${(err as Error).message}`);
  }
  if (/^\s*\{/.test(text)) {
    // JSON is YAML too, but JSON.parse reads a generated 1,000-port file ~10x faster
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // not strict JSON after all: let the YAML parser read it (and word any error)
    }
  }
  try {
    return parseYaml(text);
  } catch (err) {
    throw new ValidationError("topology", file, "(file)", `is not valid YAML: ${(err as Error).message}`);
  }
}

const changeJson = (c: Change): Record<string, unknown> => ({ ...c, line: formatChange(c) });

export function register(nb: Command): void {
  common(
    nb
      .command("apply")
      .description(
        "make the model match a topology file: create what is missing, update what differs, " +
          "delete what the file drops (--prune, only in the tenants the file names); prints each change",
      )
      .requiredOption("-f, --file <topology.yaml>", "topology (YAML or JSON); see examples/topology.yaml")
      .option("--prune", "delete objects of the file's tenants that the file does not list")
      .option("--dry-run", "print the changes without writing anything")
      .option(...WAIT_OPTION),
  ).action((o: ApplyOpts) =>
    withApi(o, async (api) => {
      const topology = parseTopology(readTopology(o.file!), o.file);
      const { state, malformed } = await readState(api);
      warnMalformed(malformed);
      const plan = planApply(topology, state, { prune: o.prune === true, malformed });
      if (o.dryRun || plan.changes.length === 0) {
        if (o.json)
          return `${JSON.stringify({ dryRun: o.dryRun === true, changes: plan.changes.map(changeJson) }, null, 2)}\n`;
        if (plan.changes.length === 0) return "no changes\n";
        return `${plan.changes.map(formatChange).join("\n")}\n(dry run: nothing written)\n`;
      }
      const done: Change[] = [];
      try {
        await executePlan(api, plan, {
          onChange: (c) => {
            done.push(c);
            if (!o.json) process.stdout.write(`${formatChange(c)}\n`);
          },
        });
      } catch (err) {
        if (!o.json) process.stdout.write(`stopped after ${done.length} of ${plan.changes.length} changes\n`);
        throw err;
      }
      if (o.json) return `${JSON.stringify({ dryRun: false, changes: done.map(changeJson) }, null, 2)}\n`;
      return `${done.length} change${done.length === 1 ? "" : "s"} applied\n`;
    }),
  );
}
