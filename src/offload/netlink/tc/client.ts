/**
 * tc over rtnetlink: qdiscs (ingress/clsact), flower filters (add, delete,
 * dump) and `installFlowerRules`, the bulk path used by the tc benchmark and
 * the offload planner. Messages are built by `qdiscMessage`/`filterMessage`
 * (pure, used by `--dry-run --hex` and the golden tests) and sent by TcClient.
 */
import type { ByteWriter } from "../../../util/bytes.js";
import { UsageError } from "../../../util/errors.js";
import { ByteReader } from "../../../util/bytes.js";
import { type AttrValues, attrSet } from "../attrs.js";
import { type BatchOptions, type BatchResult, NetlinkClient, type OutMessage } from "../client.js";
import {
  encodeNlmsg,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
} from "../framing.js";
import { NETLINK_ROUTE, type NetlinkSocketOptions } from "../socket.js";
import { decodeTcMessage, packInfo, tcBody, unpackInfo } from "./message.js";
import { type FlowerRule, flowerFromOptions, flowerOptions } from "./rule.js";
import type { TcCommand } from "./syntax.js";
import { FlowerBatchEncoder } from "./template.js";
import {
  INGRESS_QDISC_HANDLE,
  RTM_DELQDISC,
  RTM_DELTFILTER,
  RTM_GETQDISC,
  RTM_GETTFILTER,
  RTM_NEWQDISC,
  RTM_NEWTFILTER,
  TC_H_EGRESS_PARENT,
  TC_H_INGRESS,
  TC_H_INGRESS_PARENT,
} from "./schema.js";

export type Hook = "ingress" | "egress";

/** The one IFLA_* attribute tc needs from RTM_GETLINK answers (linux/if_link.h 6.1). */
const ifinfoAttrs = attrSet("IFLA", "linux/if_link.h 6.1", { IFNAME: { id: 3, type: "string" } });

export interface FilterTarget {
  ifindex: number;
  /** ingress/egress of an ingress or clsact qdisc, or a raw parent handle. */
  hook?: Hook;
  parent?: number;
}

/** What `tc filter del|show` selects on: any subset of chain, prio, protocol, handle. */
export interface FilterSelector {
  chain?: number;
  prio?: number;
  protocol?: number;
  handle?: number;
  /** Include "flower" (kind and the protocol's options) as tc does when the kind is named. */
  kind?: "flower";
}

export function parentOf(t: FilterTarget): number {
  if (t.parent !== undefined) return t.parent;
  return t.hook === "egress" ? TC_H_EGRESS_PARENT : TC_H_INGRESS_PARENT;
}

export function qdiscMessage(verb: "add" | "del", ifindex: number, kind: "ingress" | "clsact"): OutMessage {
  return {
    type: verb === "add" ? RTM_NEWQDISC : RTM_DELQDISC,
    typeName: verb === "add" ? `RTM_NEWQDISC ${kind}` : `RTM_DELQDISC ${kind}`,
    flags: verb === "add" ? NLM_F_CREATE | NLM_F_EXCL : 0,
    body: tcBody(
      { family: 0, ifindex, handle: INGRESS_QDISC_HANDLE, parent: TC_H_INGRESS, info: 0 },
      { KIND: kind },
    ),
  };
}

export function filterAddMessage(
  target: FilterTarget,
  rule: FlowerRule,
  opts: { replace?: boolean } = {},
): OutMessage {
  const attrs: AttrValues = {};
  if (rule.chain !== undefined) attrs.CHAIN = rule.chain;
  attrs.KIND = "flower";
  attrs.OPTIONS = flowerOptions(rule);
  return {
    type: RTM_NEWTFILTER,
    typeName: "RTM_NEWTFILTER flower",
    flags: NLM_F_CREATE | (opts.replace ? NLM_F_REPLACE : NLM_F_EXCL),
    body: tcBody(
      {
        family: 0,
        ifindex: target.ifindex,
        handle: rule.handle ?? 0,
        parent: parentOf(target),
        info: packInfo(rule.prio, rule.protocol),
      },
      attrs,
    ),
  };
}

function selectorBody(target: FilterTarget, sel: FilterSelector): (w: ByteWriter) => void {
  const attrs: AttrValues = {};
  if (sel.chain !== undefined) attrs.CHAIN = sel.chain;
  if (sel.kind === "flower") {
    attrs.KIND = "flower";
    const o: AttrValues = { FLAGS: 0 };
    if (sel.protocol !== undefined && sel.protocol !== 0 && sel.protocol !== 3) o.KEY_ETH_TYPE = sel.protocol;
    attrs.OPTIONS = o;
  }
  return tcBody(
    {
      family: 0,
      ifindex: target.ifindex,
      handle: sel.handle ?? 0,
      parent: parentOf(target),
      info: packInfo(sel.prio ?? 0, sel.protocol ?? 0),
    },
    attrs,
  );
}

export function filterDelMessage(target: FilterTarget, sel: FilterSelector): OutMessage {
  return { type: RTM_DELTFILTER, typeName: "RTM_DELTFILTER", flags: 0, body: selectorBody(target, sel) };
}

export interface InstalledFilter {
  ifindex: number;
  parent: number;
  kind: string;
  chain: number;
  prio: number;
  protocol: number;
  /** 0 for the per-(chain, prio) entry the kernel lists before its filters. */
  handle: number;
  rule?: FlowerRule;
}

export interface QdiscInfo {
  ifindex: number;
  kind: string;
  handle: number;
  parent: number;
}

export class TcClient {
  constructor(readonly nl: NetlinkClient) {}

  static open(opts: NetlinkSocketOptions = {}): TcClient {
    return new TcClient(NetlinkClient.open(NETLINK_ROUTE, { rcvbuf: 32 << 20, sndbuf: 32 << 20, ...opts }));
  }

  close(): void {
    this.nl.close();
  }

  /** Every device of the socket's namespace: ifindex → name (RTM_GETLINK dump). */
  async links(): Promise<Map<number, string>> {
    const parts = await this.nl.dump({
      type: 18 /* RTM_GETLINK */,
      flags: 0,
      typeName: "RTM_GETLINK dump",
      body: (w) => w.zeros(16),
    });
    const out = new Map<number, string>();
    for (const m of parts) {
      const r = new ByteReader(m.payload, 0, m.payload.length, "ifinfomsg");
      const index = r.skip(4).i32le("ifi_index");
      r.skip(8, "ifi_flags, ifi_change");
      const name = ifinfoAttrs.decode(r).IFNAME;
      if (typeof name === "string") out.set(index, name);
    }
    return out;
  }

  /** The ifindex of a device, asked of the kernel (RTM_GETLINK with IFLA_IFNAME). */
  async ifindex(name: string): Promise<number> {
    const answers = await this.nl.request({
      type: 18 /* RTM_GETLINK */,
      flags: 0,
      typeName: `RTM_GETLINK ${name}`,
      body: (w) => {
        w.zeros(16);
        const start = w.reserve(4);
        w.bytes(Buffer.from(`${name}\0`));
        w.setU16le(start, w.length - start).setU16le(start + 2, 3 /* IFLA_IFNAME */);
        w.padTo(4);
      },
    });
    const m = answers[0];
    if (!m) throw new UsageError(`no such device: ${name}`);
    return new ByteReader(m.payload, 0, m.payload.length, "ifinfomsg").skip(4).i32le("ifi_index");
  }

  async addQdisc(ifindex: number, kind: "ingress" | "clsact"): Promise<void> {
    await this.nl.request(qdiscMessage("add", ifindex, kind));
  }

  async delQdisc(ifindex: number, kind: "ingress" | "clsact"): Promise<void> {
    await this.nl.request(qdiscMessage("del", ifindex, kind));
  }

  async dumpQdiscs(ifindex = 0): Promise<QdiscInfo[]> {
    const parts = await this.nl.dump({
      type: RTM_GETQDISC,
      typeName: "RTM_GETQDISC dump",
      flags: 0,
      body: tcBody({ family: 0, ifindex, handle: 0, parent: 0, info: 0 }, {}),
    });
    return parts
      .map(decodeTcMessage)
      .filter((m) => !ifindex || m.tcm.ifindex === ifindex)
      .map((m) => ({
        ifindex: m.tcm.ifindex,
        kind: String(m.attrs.KIND ?? ""),
        handle: m.tcm.handle,
        parent: m.tcm.parent,
      }));
  }

  async addFilter(target: FilterTarget, rule: FlowerRule, opts: { replace?: boolean } = {}): Promise<void> {
    await this.nl.request(filterAddMessage(target, rule, opts));
  }

  async delFilter(target: FilterTarget, sel: FilterSelector): Promise<void> {
    await this.nl.request(filterDelMessage(target, sel));
  }

  /** Every filter under a hook (with stats); chain restricts to one chain. */
  async dumpFilters(target: FilterTarget, sel: { chain?: number } = {}): Promise<InstalledFilter[]> {
    const attrs: AttrValues = sel.chain !== undefined ? { CHAIN: sel.chain } : {};
    const parts = await this.nl.dump({
      type: RTM_GETTFILTER,
      typeName: "RTM_GETTFILTER dump",
      flags: 0,
      body: tcBody(
        { family: 0, ifindex: target.ifindex, handle: 0, parent: parentOf(target), info: 0 },
        attrs,
      ),
    });
    return parts.map((p) => decodeFilter(decodeTcMessage(p)));
  }

  /**
   * Install many rules as fast as the kernel takes them: rules of one shape
   * encoded once and patched (FlowerBatchEncoder), messages packed
   * `batchSize` per sendto(2), an ack requested only of each chunk's last
   * message (failures are always answered), big socket buffers.
   */
  installFlowerRules(
    target: FilterTarget,
    rules: FlowerRule[],
    opts: BatchOptions & { replace?: boolean } = {},
  ): Promise<BatchResult> {
    const enc = new FlowerBatchEncoder((r) => filterAddMessage(target, r, opts));
    return this.nl.batch(
      rules.map((r) => enc.message(r)),
      { batchSize: opts.batchSize ?? 512, ack: opts.ack ?? "last" },
    );
  }
}

/** Convenience form of TcClient.installFlowerRules for callers holding a client. */
export function installFlowerRules(
  tc: TcClient,
  target: FilterTarget,
  rules: FlowerRule[],
  opts: BatchOptions = {},
): Promise<BatchResult> {
  return tc.installFlowerRules(target, rules, opts);
}

export function decodeFilter(m: ReturnType<typeof decodeTcMessage>): InstalledFilter {
  const kind = String(m.attrs.KIND ?? "");
  const { prio, protocol } = unpackInfo(m.tcm.info);
  const f: InstalledFilter = {
    ifindex: m.tcm.ifindex,
    parent: m.tcm.parent,
    kind,
    chain: m.attrs.CHAIN !== undefined ? Number(m.attrs.CHAIN) : 0,
    prio,
    protocol,
    handle: m.tcm.handle,
  };
  if (kind === "flower" && m.attrs.OPTIONS && !Buffer.isBuffer(m.attrs.OPTIONS)) {
    const base: { prio: number; protocol: number; chain?: number; handle?: number } = { prio, protocol };
    if (m.attrs.CHAIN !== undefined) base.chain = Number(m.attrs.CHAIN);
    if (m.tcm.handle) base.handle = m.tcm.handle;
    f.rule = flowerFromOptions(m.attrs.OPTIONS as AttrValues, base);
  }
  return f;
}

/** The message a parsed `tc` command line sends (what `--dry-run --hex` prints). */
export function commandMessage(cmd: TcCommand): OutMessage {
  if (cmd.object === "qdisc") return qdiscMessage(cmd.verb, cmd.ifindex, cmd.kind);
  if (cmd.verb === "add" || cmd.verb === "replace") {
    return filterAddMessage(cmd.target, cmd.rule, { replace: cmd.verb === "replace" });
  }
  if (cmd.verb === "del") return filterDelMessage(cmd.target, cmd.selector);
  throw new UsageError("filter show is a dump, not a single message");
}

/** The bytes of one request as NetlinkClient.request sends it (NLM_F_REQUEST|NLM_F_ACK). */
export function encodeRequest(msg: OutMessage, seq = 0, pid = 0): Buffer {
  return encodeNlmsg({ type: msg.type, flags: msg.flags | NLM_F_REQUEST | NLM_F_ACK, seq, pid }, msg.body);
}
