/**
 * The kernel side of the offload datapath: flowdrake's flower filters on
 * the ingress of each device, through its own netlink bindings.
 *
 *   devices()        name → ifindex of every link (RTM_GETLINK dump)
 *   ensureIngress()  a clsact qdisc where the device has no ingress hook yet
 *                    (an existing ingress or clsact qdisc — OVS's, say — is
 *                    used as it is; qdiscs are never deleted)
 *   dump(dev)        the device's flowdrake filters (told apart by the
 *                    cookie on their actions, translate.ts) with counters,
 *                    and how many foreign filters it holds, which are
 *                    never touched
 *   send(ops)        adds, in-place replacements and deletions as one
 *                    netlink batch, in the given order, each acknowledged:
 *                    the kernel's refusal of one filter (its errno and
 *                    message) costs only that filter
 *
 * Filters are added with handles flowdrake picks (per device, above every
 * handle it finds installed), so a replacement and a deletion name exactly
 * the filter they mean; all of flowdrake's filters use protocol all and
 * carry their ethertype as a flower key (FlowerRule.ethType), so filters of
 * several ethertypes share a prio.
 */
import { NetlinkError } from "../netlink/errors.js";
import type { OutMessage } from "../netlink/client.js";
import { filterAddMessage, filterDelMessage, type InstalledFilter, TcClient } from "../netlink/tc/client.js";
import { ETH_P_ALL, type FlowerRule } from "../netlink/tc/rule.js";
import { TC_H_INGRESS } from "../netlink/tc/schema.js";
import { logger } from "../../util/log.js";
import { parseFilterCookie } from "./translate.js";

const log = logger("tc-datapath");

export interface FilterCounters {
  packets: number;
  bytes: number;
  hwPackets: number;
  hwBytes: number;
  /** Seconds since a packet last hit the filter (the first action's tcf_t). */
  lastUseSecs?: number;
}

/** One of flowdrake's filters as the kernel holds it. */
export interface KernelFilter {
  dev: string;
  ifindex: number;
  chain: number;
  prio: number;
  handle: number;
  keyHash: string;
  sigHash: string;
  inHw: boolean;
  counters: FilterCounters;
}

export type KernelOp =
  | { op: "add" | "replace"; dev: string; ifindex: number; rule: FlowerRule; handle: number }
  | { op: "delete"; dev: string; ifindex: number; chain: number; prio: number; handle: number };

export interface OpError {
  index: number;
  errno: number;
  errnoName: string;
  message: string;
}

/** The kernel interface the reconciler needs (the real one below; tests of the logic use their own). */
export interface TcDatapath {
  devices(): Promise<Map<string, number>>;
  ensureIngress(ifindex: number): Promise<void>;
  dump(dev: string, ifindex: number): Promise<{ ours: KernelFilter[]; foreign: number }>;
  send(ops: readonly KernelOp[]): Promise<OpError[]>;
  close(): void;
}

/** The counters of a decoded filter: its first action's (every action of a filter counts the same packets). */
export function countersOf(rule: FlowerRule | undefined): FilterCounters {
  const s = rule?.actions.find((a) => a.stats)?.stats;
  const packets = s?.packets ?? 0;
  const hwPackets = s?.hwPackets ?? 0;
  return {
    packets,
    bytes: Number(s?.bytes ?? 0n),
    hwPackets,
    hwBytes: Number(s?.hwBytes ?? 0n),
    ...(s?.lastUseSecs !== undefined ? { lastUseSecs: s.lastUseSecs } : {}),
  };
}

/** A dumped filter as one of flowdrake's, or undefined for a foreign one (or the per-prio head entry). */
export function ourFilter(dev: string, f: InstalledFilter): KernelFilter | undefined {
  if (f.kind !== "flower" || !f.rule || !f.handle) return undefined;
  const tag = parseFilterCookie(f.rule.actions[0]?.cookie);
  if (!tag) return undefined;
  return {
    dev,
    ifindex: f.ifindex,
    chain: f.chain,
    prio: f.prio,
    handle: f.handle,
    keyHash: tag.keyHash,
    sigHash: tag.sigHash,
    inHw: Boolean(f.rule.flags?.inHw),
    counters: countersOf(f.rule),
  };
}

export function kernelMessage(op: KernelOp): OutMessage {
  const target = { ifindex: op.ifindex, hook: "ingress" as const };
  if (op.op === "delete") {
    return filterDelMessage(target, {
      chain: op.chain,
      prio: op.prio,
      protocol: ETH_P_ALL,
      handle: op.handle,
      kind: "flower",
    });
  }
  return filterAddMessage(target, { ...op.rule, handle: op.handle }, { replace: op.op === "replace" });
}

export class NetlinkTcDatapath implements TcDatapath {
  private constructor(private readonly tc: TcClient) {}

  static open(): NetlinkTcDatapath {
    return new NetlinkTcDatapath(TcClient.open());
  }

  async devices(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const [i, name] of await this.tc.links()) out.set(name, i);
    return out;
  }

  async ensureIngress(ifindex: number): Promise<void> {
    const qdiscs = await this.tc.dumpQdiscs(ifindex);
    if (qdiscs.some((q) => q.parent === TC_H_INGRESS)) return;
    try {
      await this.tc.addQdisc(ifindex, "clsact");
    } catch (err) {
      // Someone (OVS) added one in between: fine.
      if (!(err instanceof NetlinkError && err.errnoName === "EEXIST")) throw err;
    }
  }

  async dump(dev: string, ifindex: number): Promise<{ ours: KernelFilter[]; foreign: number }> {
    const all = await this.tc.dumpFilters({ ifindex, hook: "ingress" });
    const ours: KernelFilter[] = [];
    let foreign = 0;
    for (const f of all) {
      const o = ourFilter(dev, f);
      if (o) ours.push(o);
      else if (f.handle) foreign++;
    }
    return { ours, foreign };
  }

  async send(ops: readonly KernelOp[]): Promise<OpError[]> {
    if (!ops.length) return [];
    const r = await this.tc.nl.batch(ops.map(kernelMessage), { ack: "each", batchSize: 256 });
    return r.failed
      .map(({ index, error }) => {
        const op = ops[index]!;
        // A filter that is already gone needs no deletion.
        if (op.op === "delete" && error.errnoName === "ENOENT") return undefined;
        log.debug({ op: op.op, dev: op.dev, err: error.message }, "the kernel refused a tc operation");
        return { index, errno: error.errno, errnoName: error.errnoName, message: error.message };
      })
      .filter((e): e is OpError => e !== undefined);
  }

  close(): void {
    this.tc.close();
  }
}
