/**
 * Programs run inside a VM's namespace by the integration tests: a long-running
 * process whose stdout lines are collected as they come, and one connection
 * attempt with tcp-tool.py (its `connect` command).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { run } from "../../src/util/exec.js";

export const TCP_TOOL = join(import.meta.dirname, "tcp-tool.py");

export interface LineProc {
  proc: ChildProcess;
  /** stdout so far, one entry per complete line */
  lines: string[];
}

/** Start `argv` in `netns`; the caller kills `proc` (also on failure). */
export function spawnLines(netns: string, argv: string[]): LineProc {
  const proc = spawn("ip", ["netns", "exec", netns, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let buf = "";
  proc.stdout!.on("data", (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split("\n");
    buf = parts.pop()!;
    lines.push(...parts);
  });
  return { proc, lines };
}

/** One TCP connection from `netns`: true when it connected and echoed within `secs`. */
export async function tcpConnects(netns: string, host: string, port: number, secs: number): Promise<boolean> {
  const r = await run(["python3", TCP_TOOL, "connect", host, String(port), String(secs)], {
    netns,
    allowFailure: true,
    timeoutMs: (secs + 10) * 1000,
  });
  if (r.code !== 0 && !/failed|no echo/.test(r.stdout)) throw new Error(`tcp-tool: ${r.stdout}${r.stderr}`);
  return r.code === 0;
}
