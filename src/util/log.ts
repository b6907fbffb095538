/**
 * Structured logging through pino. Modules ask for a child logger named after
 * their layer (`logger("ovsdb")`); the level comes from FLOWDRAKE_LOG_LEVEL
 * (default "info", "silent" in tests unless asked for) and logs go to stderr so
 * that CLI output on stdout stays machine-readable.
 */
import { type Logger, pino } from "pino";

const defaultLevel = process.env.FLOWDRAKE_LOG_LEVEL ?? (process.env.VITEST ? "silent" : "info");

let root: Logger = pino({ level: defaultLevel, base: { pid: process.pid } }, pino.destination(2));

// pino children copy their parent's level when created; remember them so that
// a level set later (from a CLI flag or config file) reaches every module.
const children: Logger[] = [];

export function setLogLevel(level: string): void {
  root.level = level;
  for (const c of children) c.level = level;
}

export function setRootLogger(l: Logger): void {
  root = l;
}

export function logger(component: string, bindings: Record<string, unknown> = {}): Logger {
  const child = root.child({ component, ...bindings });
  children.push(child);
  return child;
}

export type { Logger };
