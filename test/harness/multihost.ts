/**
 * Multi-host lab for a test file: `useUnderlay({hosts: ["host1", "host2"]})`
 * starts the simulated hosts (src/sandbox/multihost.ts) in beforeAll and
 * stops them in afterAll, also when a test failed.
 */
import { afterAll, beforeAll } from "vitest";
import { Underlay, type UnderlayOptions } from "../../src/sandbox/multihost.js";

export { decodeUnderlayFrame, SimHost, TUNNEL_ENCAPS, Underlay } from "../../src/sandbox/multihost.js";
export type { UnderlayPacket, TunnelEncap } from "../../src/sandbox/multihost.js";

export function useUnderlay(opts: UnderlayOptions, timeoutMs = 120_000): () => Underlay {
  let ul: Underlay | undefined;
  beforeAll(async () => {
    ul = await Underlay.start(opts);
  }, timeoutMs);
  afterAll(async () => {
    await ul?.stop();
  }, timeoutMs);
  return () => {
    if (!ul) throw new Error("underlay did not start (see beforeAll error)");
    return ul;
  };
}
