/**
 * An AppContext over a LocalModel for tests of packet-in handlers without
 * the agent: it records the frames a handler sends (parsed) and the reactive
 * flows it installs, tracks reads through the model as the agent does, and
 * answers the rest with `overrides` or a default (`sendThrough` sent,
 * `resubmit` and `continueAt` done).
 */
import type { AppContext, ReactiveFlows } from "../../src/apps/types.js";
import type { LocalModel } from "../../src/controller/model.js";
import { parseEthernet, type Frame } from "../../src/packet/index.js";
import { logger } from "../../src/util/log.js";

export interface HandlerTrace {
  sent: { port: number; frame: Frame }[];
  installed: ReactiveFlows[];
}

export function recordingContext(
  m: LocalModel,
  name: string,
  overrides: Partial<AppContext> = {},
): { ctx: AppContext; trace: HandlerTrace } {
  const trace: HandlerTrace = { sent: [], installed: [] };
  const ctx: AppContext = {
    view: m,
    packetOut: async (p, frame) => {
      trace.sent.push({ port: p, frame: parseEthernet(frame) });
    },
    sendThrough: async () => true,
    resubmit: async () => undefined,
    continueAt: async () => undefined,
    track: (fn) => {
      const deps = new Set<string>();
      const result = m.tracking(deps, fn);
      return { result, deps: [...deps] };
    },
    installReactive: async (r) => {
      trace.installed.push(r);
    },
    log: logger(name),
    ...overrides,
  };
  return { ctx, trace };
}
