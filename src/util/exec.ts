/**
 * Running the system tools flowdrake and its tests drive (ip, ovs-vsctl,
 * ovsdb-tool, tc, etcd…): argument vectors only, never a shell string, and a
 * failure carries the command line, exit status and stderr.
 */
import { execFile, spawn } from "node:child_process";
import { FlowdrakeError } from "./errors.js";

export interface RunOptions {
  /** Run inside this network namespace (via `ip netns exec`). */
  netns?: string;
  env?: NodeJS.ProcessEnv;
  input?: string | Buffer;
  timeoutMs?: number;
  /** Do not throw on a non-zero exit; the caller inspects `code`. */
  allowFailure?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class CommandError extends FlowdrakeError {
  constructor(argv: string[], result: RunResult) {
    super(
      "COMMAND",
      `${argv.join(" ")} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`,
      { argv, ...result },
    );
  }
}

export function withNetns(argv: string[], netns?: string): string[] {
  return netns ? ["ip", "netns", "exec", netns, ...argv] : argv;
}

export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = withNetns(argv, opts.netns);
  return new Promise((resolve, reject) => {
    const child = execFile(
      full[0]!,
      full.slice(1),
      {
        env: opts.env ?? process.env,
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 256 * 1024 * 1024,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        const result = { code, stdout, stderr };
        if (code !== 0 && !opts.allowFailure) reject(new CommandError(full, result));
        else resolve(result);
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Start a long-running process; the caller owns its lifetime. */
export function start(
  argv: string[],
  opts: { netns?: string; env?: NodeJS.ProcessEnv; logFile?: number } = {},
) {
  const full = withNetns(argv, opts.netns);
  return spawn(full[0]!, full.slice(1), {
    env: opts.env ?? process.env,
    stdio: ["ignore", opts.logFile ?? "ignore", opts.logFile ?? "ignore"],
  });
}
