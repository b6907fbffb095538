/**
 * Installing a list of flow_mods (and group_mods/meter_mods) on one OpenFlow
 * session, fast and with a definite end: "installed" means the switch
 * answered the barrier that follows them, and every error it sent for one of
 * them is collected on the way (errors arrive before the barrier reply, since
 * the switch processes a session's messages in order).
 *
 *   bundle mode  one ONF bundle (atomic, ordered) per `chunkSize` messages:
 *                open → add × n → barrier, written at once (one round trip),
 *                then commit (or discard when an add was rejected); all of a
 *                chunk or none of it, done when the commit is answered.
 *   plain mode   messages written back to back in large socket writes, a
 *                barrier after every `chunkSize`, at most `window` barriers
 *                unanswered — so 100k flow_mods stream at socket speed while
 *                memory stays bounded by the window, not the list.
 *
 * Both modes ride on OfConnection.sendAll / bundleAdd: the bulk encoder
 * (openflow/wire-writer.ts) fills one chunk while the switch reads the
 * previous one, and 'drain' paces it when the socket is full. The xids are
 * allocated up front so every error can be attributed. OVN's ofctrl does the
 * same (bundle + barrier, applied on the barrier reply); this is the code
 * path the bench measures.
 */
import { FlowdrakeError } from "../util/errors.js";
import { logger } from "../util/log.js";
import { OpenFlowError, type OfConnection, type OfRequest } from "../openflow/connection.js";
import { OFP_NO_BUFFER, type FlowMod } from "../openflow/message.js";

const log = logger("flow-installer");

export interface InstallOptions {
  /** Use ONF bundles (default true). */
  bundle?: boolean;
  /** Messages per bundle / per barrier (default: bundle = all in one, plain = 2000). */
  chunkSize?: number;
  /** Plain mode: barriers outstanding at once (default 8). */
  window?: number;
  /** Throw a FlowInstallError when the switch rejected any message (default true). */
  throwOnError?: boolean;
  timeoutMs?: number;
}

export interface InstallResult {
  messages: number;
  durationMs: number;
  errors: OpenFlowError[];
}

export class FlowInstallError extends FlowdrakeError {
  constructor(
    readonly errors: OpenFlowError[],
    total: number,
  ) {
    super(
      "FLOW_INSTALL",
      `${errors.length} of ${total} OpenFlow messages were rejected; first: ${errors[0]?.message ?? "?"}`,
      { rejected: errors.length, total, first: errors[0]?.errorName },
    );
  }
}

type FlowModInput = Partial<Omit<FlowMod, "type" | "xid">> & Pick<FlowMod, "match" | "instructions">;

/** A flow_mod with the usual defaults (add, table 0, priority 32768, no timeouts, cookie 0). */
export function flowMod(f: FlowModInput): OfRequest {
  return {
    type: "flow_mod",
    cookie: 0n,
    cookieMask: 0n,
    tableId: 0,
    command: "add",
    idleTimeout: 0,
    hardTimeout: 0,
    priority: 0x8000,
    bufferId: OFP_NO_BUFFER,
    outPort: 0xffffffff,
    outGroup: 0xffffffff,
    flags: 0,
    ...f,
  };
}

export async function installFlows(
  conn: OfConnection,
  msgs: readonly OfRequest[],
  opts: InstallOptions = {},
): Promise<InstallResult> {
  const started = performance.now();
  const bundle = opts.bundle ?? true;
  const chunk = Math.max(1, opts.chunkSize ?? (bundle ? msgs.length || 1 : 2000));
  const window = Math.max(1, opts.window ?? 8);
  const mine = new Set<number>();
  const errors: OpenFlowError[] = [];
  const onError = (e: OpenFlowError): void => {
    if (mine.has(e.xid)) errors.push(e);
  };
  conn.on("of_error", onError);
  try {
    const barriers: Promise<void>[] = [];
    for (let i = 0; i < msgs.length; i += chunk) {
      const part = msgs.slice(i, i + chunk);
      // Every xid is known before the first byte leaves, so no error can arrive unrecognized.
      const xids = part.map((m) => m.xid ?? conn.allocXid());
      for (const x of xids) mine.add(x);
      if (bundle) {
        // open, adds and barrier in one round trip; the commit in a second
        const { bundleId: id, opened } = await conn.bundleOpenPipelined();
        const before = errors.length;
        await conn.bundleAdd(id, part, undefined, xids);
        // OVS validates a message when it is added; a rejected add leaves it out of the
        // bundle rather than failing the commit, so ask (barrier) before committing.
        await Promise.all([opened, conn.barrier(opts.timeoutMs)]);
        if (errors.length > before) {
          await conn.bundleDiscard(id);
          continue;
        }
        try {
          await conn.bundleCommit(id);
        } catch (err) {
          if (!(err instanceof OpenFlowError)) throw err;
          // The per-message errors (if any) were collected above; keep the commit's too.
          errors.push(err);
        }
      } else {
        await conn.sendAll(part, xids);
        barriers.push(conn.barrier(opts.timeoutMs));
        if (barriers.length >= window) await barriers.shift();
      }
    }
    await Promise.all(barriers);
    // a bundle is done when its commit was answered; plain messages when a barrier after them was
    if (!bundle) await conn.barrier(opts.timeoutMs);
  } finally {
    conn.off("of_error", onError);
  }
  const result = { messages: msgs.length, durationMs: performance.now() - started, errors };
  log.debug({ conn: conn.label, ...result, errors: errors.length, bundle }, "flows installed");
  if (errors.length && (opts.throwOnError ?? true)) throw new FlowInstallError(errors, msgs.length);
  return result;
}
