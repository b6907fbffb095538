/**
 * Test harness shared by every test file: sandboxes that start in beforeAll
 * and are torn down in afterAll (also when a test failed), plus small helpers.
 * Each test file gets its own run directory and network namespaces, so vitest
 * may run files in parallel.
 */
import { afterAll, beforeAll } from "vitest";
import { OvsSandbox, type OvsSandboxOptions } from "../../src/sandbox/ovs.js";

export { createNetns, createVeth } from "../../src/sandbox/netns.js";
export { freeTcpPort, OvsSandbox } from "../../src/sandbox/ovs.js";
export { Cleanup, makeRunDir } from "../../src/sandbox/rundir.js";

/** Start an OVS sandbox for the whole file; `get()` returns it inside tests. */
export function useOvsSandbox(opts: OvsSandboxOptions = {}): () => OvsSandbox {
  let sb: OvsSandbox | undefined;
  beforeAll(async () => {
    sb = await OvsSandbox.start(opts);
  });
  afterAll(async () => {
    await sb?.stop();
  });
  return () => {
    if (!sb) throw new Error("OVS sandbox did not start (see beforeAll error)");
    return sb;
  };
}

/** Poll `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  timeoutMs = 10_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
