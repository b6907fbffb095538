/**
 * Structured logging through pino. Modules ask for a child logger named after
 * their layer (`logger("ovsdb")`); the level comes from FLOWDRAKE_LOG_LEVEL
 * (default "info", "silent" in tests unless asked for), a CLI flag or a config
 * file (`setLogLevel`), and logs go to stderr so that CLI output on stdout
 * stays machine-readable.
 *
 * Loggers are created once per component and cached: asking for the same
 * component again returns the same logger, so code on a hot path (a packet-in,
 * a reconcile) can never grow memory by asking for loggers. A level set
 * later reaches every logger made so far — pino children copy their parent's
 * level when created, so the cache is also the list to update.
 */
import { type Logger, pino } from "pino";

const defaultLevel = process.env.FLOWDRAKE_LOG_LEVEL ?? (process.env.VITEST ? "silent" : "info");

let root: Logger = pino({ level: defaultLevel, base: { pid: process.pid } }, pino.destination(2));

const children = new Map<string, Logger>();

export function setLogLevel(level: string): void {
  root.level = level;
  for (const c of children.values()) c.level = level;
}

export function logLevel(): string {
  return root.level;
}

export function setRootLogger(l: Logger): void {
  root = l;
  children.clear();
}

/** The logger of a component (with fixed bindings); one per distinct (component, bindings). */
export function logger(component: string, bindings: Record<string, unknown> = {}): Logger {
  const key = Object.keys(bindings).length ? `${component}\0${JSON.stringify(bindings)}` : component;
  let child = children.get(key);
  if (!child) {
    child = root.child({ component, ...bindings });
    children.set(key, child);
  }
  return child;
}

/** How many loggers exist (tests: asking again must not grow it). */
export function loggerCount(): number {
  return children.size;
}

export type { Logger };
