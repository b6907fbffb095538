/**
 * The lane's host side without a full boot: marker parsing, and the timeout —
 * a deadline that passes while the guest is still booting (3 s is far less
 * than a TCG boot takes), so what the timeout test proves is the host side:
 * qemu is killed at the deadline, has exited (no process left) when bootLane
 * throws, and the error says so. It does not boot a guest that then hangs:
 * such a guest is normally cut short from inside first (flowdrake.timeout,
 * 25 s before the host's deadline, and scenarioScript's per-scenario
 * timeout), and the host's kill is the same code path either way.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { FlowdrakeError } from "../../src/util/errors.js";
import { bootLane, parseMarker } from "./lane.js";

/** Whether `pid` is a live process (a zombie counts as gone: it runs nothing). */
function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe("kernel lane API", () => {
  it("parses marker lines", () => {
    expect(parseMarker('@@RESULT ping {"rc": 0}')).toMatchObject({
      tag: "RESULT",
      key: "ping",
      value: { rc: 0 },
    });
    expect(parseMarker("@@LANE-EXIT 3")).toMatchObject({ tag: "LANE-EXIT", key: "3" });
    expect(parseMarker("+ echo @@RESULT x")).toBeUndefined();
  });

  it("kills qemu at the deadline (no process left) and fails clearly", async () => {
    const lines: string[] = [];
    const err = await bootLane({ script: "sleep 600", timeoutMs: 3000, onLine: (l) => lines.push(l) }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FlowdrakeError);
    const e = err as FlowdrakeError;
    expect(e.code).toBe("LANE_TIMEOUT");
    expect(e.message).toMatch(/did not finish within 3000 ms \(qemu killed\)/);
    const { pid, signal, booted, durationMs } = e.context as {
      pid: number;
      signal: string;
      booted: boolean;
      durationMs: number;
    };
    expect(pid).toBeGreaterThan(0);
    expect(signal).toBe("SIGKILL");
    expect(alive(pid)).toBe(false);
    expect(durationMs).toBeGreaterThanOrEqual(3000);
    // what this proves is the host side: the guest had not booted when the deadline passed
    expect(booted).toBe(false);
    expect(lines.some((l) => l.includes("@@LANE-BOOTED"))).toBe(false);
  });
});
