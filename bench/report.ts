/**
 * Shared benchmark reporting: machine facts, JSON results under
 * bench/results/<suite>.json, and a plain table for people.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";

export interface MachineFacts {
  date: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  ovs: string;
  kernel: string;
}

export function machineFacts(): MachineFacts {
  const version = (argv: string[]) => {
    try {
      return execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8" }).split("\n")[0]!.trim();
    } catch {
      return "not installed";
    }
  };
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    ovs: version(["ovs-vswitchd", "--version"]),
    kernel: version(["uname", "-r"]),
  };
}

export const resultsDir = join(import.meta.dirname, "..", "..", "bench", "results");

export function writeResult(suite: string, data: Record<string, unknown>): string {
  mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, `${suite}.json`);
  writeFileSync(path, `${JSON.stringify({ suite, machine: machineFacts(), ...data }, null, 2)}\n`);
  return path;
}

export function printTable(rows: Record<string, string | number>[]): void {
  if (!rows.length) return;
  const cols = Object.keys(rows[0]!);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(width[i]!)).join("  ");
  process.stdout.write(`${line(cols)}\n${line(width.map((w) => "-".repeat(w)))}\n`);
  for (const r of rows) process.stdout.write(`${line(cols.map((c) => String(r[c] ?? "")))}\n`);
}
