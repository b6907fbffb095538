/**
 * iproute2's `tc` command-line syntax, for the subset flowdrake supports
 * (tc-flower(8), tc-mirred(8), tc-tunnel_key(8), tc-vlan(8), tc-pedit(8),
 * tc-csum(8), tc-ct(8), tc-actions(8)), parsed into FlowerRule and friends;
 * and the reverse, a tc-like text form of installed rules for `show`.
 *
 * The parser follows tc's own defaults so that the resulting bytes equal
 * tc's: a MAC or IP key without a mask gets a full mask, a port without one
 * gets none, tcp_flags default to mask 0xfff, and keys are kept in the order
 * they were written. Unsupported words raise a UsageError naming the word.
 */
import { UsageError } from "../../../util/errors.js";
import { formatIpv6, parseIpv4, parseIpv6 } from "../attrs.js";
import type { FilterSelector, FilterTarget } from "./client.js";
import {
  ETH_P_8021AD,
  ETH_P_8021Q,
  ETH_P_ALL,
  ETH_P_ARP,
  ETH_P_IP,
  ETH_P_IPV6,
  type FlowerAction,
  type FlowerMatch,
  type FlowerRule,
  type GeneveOpt,
  type Masked,
  type PeditMunge,
  TC_COOKIE_MAX_SIZE,
} from "./rule.js";
import { TC_ACT, TCA_CSUM_UPDATE_FLAG, TCA_FLOWER_KEY_CT_FLAGS } from "./schema.js";

export type ResolveDev = (name: string) => number;

export type TcCommand =
  | { object: "qdisc"; verb: "add" | "del"; dev: string; ifindex: number; kind: "ingress" | "clsact" }
  | { object: "filter"; verb: "add" | "replace"; dev: string; target: FilterTarget; rule: FlowerRule }
  | { object: "filter"; verb: "del" | "show"; dev: string; target: FilterTarget; selector: FilterSelector };

const protocols: Record<string, number> = {
  all: ETH_P_ALL,
  ip: ETH_P_IP,
  ipv4: ETH_P_IP,
  ipv6: ETH_P_IPV6,
  "802.1q": ETH_P_8021Q,
  "802.1ad": ETH_P_8021AD,
  arp: ETH_P_ARP,
};

export function parseProtocol(s: string): number {
  const v = protocols[s.toLowerCase()];
  if (v !== undefined) return v;
  const n = parseNum(s, "protocol", 0xffff);
  return n;
}

export function protocolName(p: number): string {
  for (const [k, v] of Object.entries(protocols))
    if (v === p && k !== "ipv4") return k === "802.1q" ? "802.1Q" : k;
  return `0x${p.toString(16).padStart(4, "0")}`;
}

/** strtoul with base 0 (0x hex, leading 0 octal, else decimal), bounded. */
export function parseNum(s: string, what: string, max: number, base?: 10 | 16): number {
  let v: number;
  if (base === 16) v = /^(0x)?[0-9a-f]+$/i.test(s) ? parseInt(s.replace(/^0x/i, ""), 16) : NaN;
  else if (base === 10) v = /^\d+$/.test(s) ? parseInt(s, 10) : NaN;
  else if (/^0x[0-9a-f]+$/i.test(s)) v = parseInt(s.slice(2), 16);
  else if (/^0[0-7]+$/.test(s)) v = parseInt(s.slice(1), 8);
  else v = /^\d+$/.test(s) ? parseInt(s, 10) : NaN;
  if (!Number.isFinite(v) || v > max) throw new UsageError(`invalid ${what}: "${s}"`, { value: s, max });
  return v;
}

class Args {
  i = 0;
  constructor(readonly argv: string[]) {}
  get done(): boolean {
    return this.i >= this.argv.length;
  }
  peek(): string | undefined {
    return this.argv[this.i];
  }
  next(what: string): string {
    const v = this.argv[this.i++];
    if (v === undefined) throw new UsageError(`missing ${what}`);
    return v;
  }
}

function macMask(what: string, s: string): string {
  if (/^\d+$/.test(s)) {
    const bits = parseNum(s, `${what} prefix`, 48, 10);
    const b = Buffer.alloc(6);
    for (let i = 0; i < bits; i++) b[i >> 3]! |= 0x80 >> (i & 7);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
  }
  return normMac(what, s);
}

/** Already "xx:xx:xx:xx:xx:xx" in lower case (the common case in batch files)? */
function canonicalMac(s: string): boolean {
  if (s.length !== 17) return false;
  for (let i = 0; i < 17; i++) {
    const c = s.charCodeAt(i);
    if (i % 3 === 2 ? c !== 58 : !((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/** Already a dotted quad without leading zeros? */
function canonicalIpv4(s: string): boolean {
  if (s.length < 7 || s.length > 15) return false;
  let dots = 0;
  let octet = 0;
  let digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || (digits > 1 && s.charCodeAt(i - digits) === 48) || octet > 255) return false;
      dots++;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
    } else return false;
  }
  return dots === 4;
}

function normMac(what: string, s: string): string {
  if (canonicalMac(s)) return s;
  if (!/^[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}$/i.test(s)) throw new UsageError(`invalid ${what}: "${s}"`);
  return s
    .split(":")
    .map((x) => x.toLowerCase().padStart(2, "0"))
    .join(":");
}

const prefixMasks = new Map<number, string>();

function prefixMask(v6: boolean, bits: number): string {
  const key = v6 ? 1000 + bits : bits;
  let m = prefixMasks.get(key);
  if (m === undefined) {
    m = buildPrefixMask(v6, bits);
    prefixMasks.set(key, m);
  }
  return m;
}

function buildPrefixMask(v6: boolean, bits: number): string {
  const b = Buffer.alloc(v6 ? 16 : 4);
  for (let i = 0; i < bits; i++) b[i >> 3]! |= 0x80 >> (i & 7);
  return v6 ? formatIpv6(b) : Array.from(b).join(".");
}

function ipPrefix(what: string, s: string, family?: 4 | 6): Masked<string> {
  if (family !== 6 && canonicalIpv4(s)) return { value: s, mask: prefixMask(false, 32) };
  const [addr, len] = s.split("/");
  const v6 = addr!.includes(":");
  if ((family === 4 && v6) || (family === 6 && !v6)) {
    throw new UsageError(`${what} ${s}: address family does not match the protocol`);
  }
  try {
    const norm = v6 ? formatIpv6(parseIpv6(what, addr)) : Array.from(parseIpv4(what, addr)).join(".");
    const bits =
      len === undefined ? (v6 ? 128 : 32) : parseNum(len, `${what} prefix length`, v6 ? 128 : 32, 10);
    return { value: norm, mask: prefixMask(v6, bits) };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`invalid ${what}: "${s}"`);
  }
}

function maskedNum(
  what: string,
  s: string,
  max: number,
  opts: { fullMask?: number; base?: 10 | 16; maskBase?: 16; fallback16?: boolean },
): Masked<number> {
  const [v, m] = s.split("/");
  let value: number;
  try {
    value = parseNum(v!, what, max, opts.base);
  } catch (err) {
    if (!opts.fallback16) throw err;
    value = parseNum(v!, what, max, 16);
  }
  const out: Masked<number> = { value };
  if (m !== undefined) out.mask = parseNum(m, `${what} mask`, max, opts.maskBase);
  else if (opts.fullMask !== undefined) out.mask = opts.fullMask;
  return out;
}

const ipProtos: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, icmp: 1, icmpv6: 58 };

function parseCtState(s: string): Masked<number> {
  let value = 0;
  let mask = 0;
  const re = /([+-])([a-z]+)/g;
  let consumed = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const flag = TCA_FLOWER_KEY_CT_FLAGS[m[2] as keyof typeof TCA_FLOWER_KEY_CT_FLAGS];
    if (flag === undefined) throw new UsageError(`invalid ct_state flag "${m[2]}"`);
    if (m[1] === "+") value |= flag;
    mask |= flag;
    consumed += m[0].length;
  }
  if (consumed !== s.length || !s) throw new UsageError(`invalid ct_state "${s}" (use e.g. +trk+est)`);
  return { value, mask };
}

function parseGeneve(s: string): { value: GeneveOpt[]; mask: GeneveOpt[] } {
  const value: GeneveOpt[] = [];
  const mask: GeneveOpt[] = [];
  for (const tok of s.split(",")) {
    const [key, m] = tok.split("/");
    const parse = (t: string): GeneveOpt => {
      const parts = t.split(":");
      if (parts.length !== 3 || !/^([0-9a-f]{2})*$/i.test(parts[2]!)) {
        throw new UsageError(`invalid geneve option "${t}" (CLASS:TYPE:DATA in hex)`);
      }
      return {
        class: parseNum(parts[0]!, "geneve class", 0xffff, 16),
        type: parseNum(parts[1]!, "geneve type", 0xff, 16),
        data: parts[2]!.toLowerCase(),
      };
    };
    const k = parse(key!);
    value.push(k);
    mask.push(m ? parse(m) : { class: 0xffff, type: 0xff, data: "ff".repeat(k.data.length / 2) });
  }
  return { value, mask };
}

const controls: Record<string, number> = {
  pass: TC_ACT.OK,
  ok: TC_ACT.OK,
  reclassify: TC_ACT.RECLASSIFY,
  drop: TC_ACT.SHOT,
  shot: TC_ACT.SHOT,
  continue: TC_ACT.UNSPEC,
  pipe: TC_ACT.PIPE,
  trap: TC_ACT.TRAP,
};

/** An optional trailing control word (pipe, drop, goto chain N …). */
function parseControl(a: Args): number | undefined {
  const w = a.peek();
  if (w === undefined) return undefined;
  if (w in controls) {
    a.i++;
    return controls[w];
  }
  if (w === "goto") {
    a.i++;
    if (a.next("'chain'") !== "chain") throw new UsageError("expected 'goto chain N'");
    return (TC_ACT.GOTO_CHAIN | parseNum(a.next("chain index"), "chain", TC_ACT_EXT_MAX)) >>> 0;
  }
  return undefined;
}
const TC_ACT_EXT_MAX = 0x0fffffff;

/** `cookie HEX` after an action (tc-actions(8)): at most TC_COOKIE_MAX_SIZE bytes of hex. */
function parseCookie(w: string): string {
  if (!/^([0-9a-f]{2})+$/i.test(w) || w.length > TC_COOKIE_MAX_SIZE * 2) {
    throw new UsageError(
      `invalid cookie "${w}": an even number of hex digits, at most ${TC_COOKIE_MAX_SIZE} bytes`,
      { cookie: w },
    );
  }
  return w.toLowerCase();
}

function withControl<T extends FlowerAction>(a: T, control: number | undefined): T {
  return control === undefined ? a : { ...a, control };
}

function parseAction(a: Args, resolve: ResolveDev): FlowerAction {
  const kind = a.next("action kind");
  if (kind in controls || kind === "goto") {
    a.i--;
    return { kind: "gact", control: parseControl(a)! };
  }
  switch (kind) {
    case "gact": {
      const c = parseControl(a);
      if (c === undefined) throw new UsageError("gact needs a verdict (drop, pass, goto chain N …)");
      return { kind: "gact", control: c };
    }
    case "mirred": {
      const direction = a.next("egress|ingress");
      const mode = a.next("redirect|mirror");
      if ((direction !== "egress" && direction !== "ingress") || (mode !== "redirect" && mode !== "mirror")) {
        throw new UsageError(
          `mirred: expected "egress|ingress redirect|mirror dev DEV", got "${direction} ${mode}"`,
        );
      }
      if (a.next("dev") !== "dev") throw new UsageError("mirred: expected 'dev DEV'");
      const dev = a.next("device");
      return withControl({ kind: "mirred", direction, mode, ifindex: resolve(dev), dev }, parseControl(a));
    }
    case "tunnel_key": {
      const op = a.next("set|unset");
      if (op === "unset") return withControl({ kind: "tunnel_key", op: "unset" }, parseControl(a));
      if (op !== "set") throw new UsageError(`tunnel_key: expected set or unset, got "${op}"`);
      const t: FlowerAction & { kind: "tunnel_key" } = { kind: "tunnel_key", op: "set" };
      for (;;) {
        const w = a.peek();
        if (w === "src_ip" || w === "dst_ip") {
          a.i++;
          const ip = ipPrefix(w, a.next(w));
          t[w === "src_ip" ? "src" : "dst"] = ip.value;
        } else if (w === "id") {
          a.i++;
          t.id = parseNum(a.next("id"), "tunnel id", 0xffffffff, 10);
        } else if (w === "dst_port") {
          a.i++;
          t.dstPort = parseNum(a.next("dst_port"), "dst_port", 0xffff, 10);
        } else if (w === "geneve_opts") {
          a.i++;
          t.geneveOpts = parseGeneve(a.next("geneve_opts")).value;
        } else if (w === "tos" || w === "ttl") {
          a.i++;
          t[w] = parseNum(a.next(w), w, 0xff);
        } else if (w === "csum" || w === "nocsum") {
          a.i++;
          t.csum = w === "csum";
        } else break;
      }
      return withControl(t, parseControl(a));
    }
    case "vlan": {
      const op = a.next("pop|push|modify");
      if (op !== "pop" && op !== "push" && op !== "modify")
        throw new UsageError(`vlan: unknown operation "${op}"`);
      const v: FlowerAction & { kind: "vlan" } = { kind: "vlan", op };
      for (;;) {
        const w = a.peek();
        if (w === "id") {
          a.i++;
          v.id = parseNum(a.next("vlan id"), "vlan id", 4095);
        } else if (w === "priority") {
          a.i++;
          v.priority = parseNum(a.next("vlan priority"), "vlan priority", 7);
        } else if (w === "protocol") {
          a.i++;
          v.protocol = parseProtocol(a.next("vlan protocol"));
        } else break;
      }
      if (op !== "pop" && v.id === undefined) throw new UsageError(`vlan ${op} needs 'id N'`);
      return withControl(v, parseControl(a));
    }
    case "pedit": {
      if (a.next("ex") !== "ex")
        throw new UsageError("pedit: flowdrake supports the extended form 'pedit ex munge …'");
      const munge: PeditMunge[] = [];
      while (a.peek() === "munge") {
        a.i++;
        const hdr = a.next("header");
        const field = a.next("field");
        if (hdr === "eth" && (field === "dst" || field === "src")) {
          if (a.next("set") !== "set") throw new UsageError(`pedit eth ${field}: only 'set' is supported`);
          munge.push({ header: "eth", field, op: "set", value: normMac(`eth ${field}`, a.next("MAC")) });
        } else if (hdr === "ip" && field === "ttl") {
          const op = a.next("set|add|dec");
          if (op === "dec") munge.push({ header: "ip", field: "ttl", op: "add", value: 0xff });
          else if (op === "set" || op === "add") {
            munge.push({ header: "ip", field: "ttl", op, value: parseNum(a.next("ttl"), "ttl", 0xff) });
          } else throw new UsageError(`pedit ip ttl: unknown operation "${op}"`);
        } else
          throw new UsageError(`pedit: unsupported field "${hdr} ${field}" (supported: eth dst|src, ip ttl)`);
      }
      if (!munge.length) throw new UsageError("pedit ex: expected 'munge …'");
      return withControl({ kind: "pedit", munge }, parseControl(a));
    }
    case "csum": {
      let flags = 0;
      for (;;) {
        const w = a.peek();
        if (w === "ip4h" || w === "iph") flags |= TCA_CSUM_UPDATE_FLAG.IPV4HDR;
        else if (w === "tcp") flags |= TCA_CSUM_UPDATE_FLAG.TCP;
        else if (w === "udp") flags |= TCA_CSUM_UPDATE_FLAG.UDP;
        else if (w === "icmp") flags |= TCA_CSUM_UPDATE_FLAG.ICMP;
        else if (w !== "and") break;
        a.i++;
      }
      if (!flags) throw new UsageError("csum: name what to update (ip4h, tcp, udp …)");
      return withControl({ kind: "csum", flags }, parseControl(a));
    }
    case "ct": {
      const c: FlowerAction & { kind: "ct" } = { kind: "ct" };
      for (;;) {
        const w = a.peek();
        if (w === "commit" || w === "force" || w === "clear") {
          a.i++;
          c[w] = true;
        } else if (w === "zone") {
          a.i++;
          c.zone = parseNum(a.next("zone"), "ct zone", 0xffff);
        } else if (w === "mark") {
          a.i++;
          c.mark = maskedNum("ct mark", a.next("mark"), 0xffffffff, { fullMask: 0xffffffff });
        } else if (w === "nat") {
          a.i++;
          const nat: NonNullable<typeof c.nat> = {};
          if (a.peek() === "src" || a.peek() === "dst") nat.type = a.next("src|dst") as "src" | "dst";
          if (a.peek() === "addr") {
            a.i++;
            const [lo, hi] = a.next("address range").split("-");
            nat.addrMin = ipPrefix("nat addr", lo!).value;
            nat.addrMax = ipPrefix("nat addr", hi ?? lo!).value;
          }
          if (a.peek() === "port") {
            a.i++;
            const [lo, hi] = a.next("port range").split("-");
            nat.portMin = parseNum(lo!, "nat port", 0xffff, 10);
            nat.portMax = parseNum(hi ?? lo!, "nat port", 0xffff, 10);
          }
          c.nat = nat;
        } else break;
      }
      return withControl(c, parseControl(a));
    }
    default:
      throw new UsageError(
        `unsupported action "${kind}" (supported: gact, mirred, tunnel_key, vlan, pedit, csum, ct)`,
      );
  }
}

function parseFlower(a: Args, rule: FlowerRule, resolve: ResolveDev): void {
  const m: FlowerMatch = rule.match;
  let ethType = rule.protocol;
  const family = (): 4 | 6 | undefined => (ethType === ETH_P_IP ? 4 : ethType === ETH_P_IPV6 ? 6 : undefined);
  while (!a.done) {
    const w = a.next("flower key");
    switch (w) {
      case "skip_sw":
        rule.flags = { ...rule.flags, skipSw: true };
        break;
      case "skip_hw":
        rule.flags = { ...rule.flags, skipHw: true };
        break;
      case "verbose":
        rule.flags = { ...rule.flags, verbose: true };
        break;
      case "indev":
        m.indev = a.next("indev");
        break;
      case "dst_mac":
      case "src_mac": {
        const [addr, mask] = a.next(w).split("/");
        m[w === "dst_mac" ? "dstMac" : "srcMac"] = {
          value: normMac(w, addr!),
          mask: mask === undefined ? "ff:ff:ff:ff:ff:ff" : macMask(w, mask),
        };
        break;
      }
      case "vlan_id":
        m.vlanId = parseNum(a.next(w), w, 4095);
        break;
      case "vlan_prio":
        m.vlanPrio = parseNum(a.next(w), w, 7);
        break;
      case "vlan_ethtype":
        m.vlanEthType = parseProtocol(a.next(w));
        ethType = m.vlanEthType;
        break;
      case "ip_proto": {
        const p = a.next(w);
        m.ipProto = ipProtos[p] ?? parseNum(p, w, 0xff);
        break;
      }
      case "ip_tos":
      case "ip_ttl":
      case "enc_tos":
      case "enc_ttl": {
        const key = ({ ip_tos: "ipTos", ip_ttl: "ipTtl", enc_tos: "encTos", enc_ttl: "encTtl" } as const)[w];
        m[key] = maskedNum(w, a.next(w), 0xff, { base: 10, fallback16: true, maskBase: 16, fullMask: 0xff });
        break;
      }
      case "dst_ip":
      case "src_ip":
        m[w === "dst_ip" ? "dstIp" : "srcIp"] = ipPrefix(w, a.next(w), family());
        break;
      case "enc_dst_ip":
      case "enc_src_ip":
        m[w === "enc_dst_ip" ? "encDstIp" : "encSrcIp"] = ipPrefix(w, a.next(w));
        break;
      case "dst_port":
      case "src_port": {
        if (![6, 17, 132].includes(m.ipProto ?? -1))
          throw new UsageError(`${w} needs ip_proto tcp, udp or sctp first`);
        const s = a.next(w);
        if (s.includes("-")) throw new UsageError(`${w}: port ranges are not supported by flowdrake yet`);
        m[w === "dst_port" ? "dstPort" : "srcPort"] = s.includes("/")
          ? maskedNum(w, s, 0xffff, {})
          : { value: parseNum(s, w, 0xffff, 10) };
        break;
      }
      case "type":
      case "code": {
        if (![1, 58].includes(m.ipProto ?? -1))
          throw new UsageError(`${w} needs ip_proto icmp or icmpv6 first`);
        m[w === "type" ? "icmpType" : "icmpCode"] = { value: parseNum(a.next(w), w, 0xff, 10), mask: 0xff };
        break;
      }
      case "tcp_flags":
        m.tcpFlags = maskedNum(w, a.next(w), 0xfff, { base: 16, maskBase: 16, fullMask: 0xfff });
        break;
      case "ct_state":
        m.ctState = parseCtState(a.next(w));
        break;
      case "ct_zone":
        m.ctZone = maskedNum(w, a.next(w), 0xffff, { fullMask: 0xffff });
        break;
      case "ct_mark":
        m.ctMark = maskedNum(w, a.next(w), 0xffffffff, { fullMask: 0xffffffff });
        break;
      case "enc_key_id":
        m.encKeyId = parseNum(a.next(w), w, 0xffffffff, 10);
        break;
      case "enc_dst_port":
        m.encDstPort = { value: parseNum(a.next(w), w, 0xffff, 10) };
        break;
      case "geneve_opts":
        m.geneveOpts = parseGeneve(a.next(w));
        break;
      case "action":
        a.i--;
        while (a.peek() === "action") {
          a.i++;
          const act = parseAction(a, resolve);
          if (a.peek() === "cookie") {
            a.i++;
            act.cookie = parseCookie(a.next("cookie"));
          }
          rule.actions.push(act);
        }
        if (!a.done) throw new UsageError(`unexpected "${a.peek()}" after the actions`);
        break;
      default:
        throw new UsageError(
          `unsupported flower key "${w}" (see 'man tc-flower'; flowdrake supports a subset)`,
        );
    }
  }
}

/** Parse a `tc` command line (without the leading "tc"). */
export function parseTcCommand(argv: string[], resolve: ResolveDev): TcCommand {
  const a = new Args(argv);
  const object = a.next("qdisc|filter");
  const verb = a.next("verb");
  if (object === "qdisc") {
    if (verb !== "add" && verb !== "del")
      throw new UsageError(`qdisc ${verb}: only add and del are supported`);
    if (a.next("dev") !== "dev") throw new UsageError("expected 'dev DEV'");
    const dev = a.next("device");
    const kind = a.next("ingress|clsact");
    if (kind !== "ingress" && kind !== "clsact")
      throw new UsageError(`qdisc kind "${kind}": use ingress or clsact`);
    if (!a.done) throw new UsageError(`unexpected "${a.peek()}"`);
    return { object, verb, dev, ifindex: resolve(dev), kind };
  }
  if (object !== "filter") throw new UsageError(`unknown object "${object}" (qdisc or filter)`);
  if (!["add", "replace", "del", "delete", "show", "list"].includes(verb)) {
    throw new UsageError(`filter ${verb}: use add, replace, del or show`);
  }
  let dev: string | undefined;
  const target: Omit<FilterTarget, "ifindex"> = {};
  const sel: FilterSelector = {};
  let flower = false;
  while (!a.done && !flower) {
    const w = a.next("filter option");
    if (w === "dev") dev = a.next("device");
    else if (w === "ingress" || w === "egress") target.hook = w;
    else if (w === "parent") target.parent = parseHandle(a.next("parent"));
    else if (w === "chain") sel.chain = parseNum(a.next("chain"), "chain", 0xffffffff);
    else if (w === "prio" || w === "pref" || w === "priority")
      sel.prio = parseNum(a.next("prio"), "prio", 0xffff);
    else if (w === "protocol") sel.protocol = parseProtocol(a.next("protocol"));
    else if (w === "handle") sel.handle = parseNum(a.next("handle"), "handle", 0xffffffff);
    else if (w === "flower") flower = true;
    else throw new UsageError(`unsupported filter option "${w}"`);
  }
  if (!dev) throw new UsageError("filter: 'dev DEV' is required");
  const fullTarget: FilterTarget = { ...target, ifindex: resolve(dev) };
  if (verb === "del" || verb === "delete" || verb === "show" || verb === "list") {
    if (!a.done) throw new UsageError(`filter ${verb}: unexpected "${a.peek()}"`);
    return {
      object: "filter",
      verb: verb === "del" || verb === "delete" ? "del" : "show",
      dev,
      target: fullTarget,
      selector: flower ? { ...sel, kind: "flower" } : sel,
    };
  }
  if (!flower) throw new UsageError("filter add: flowdrake only installs 'flower' filters");
  const rule: FlowerRule = {
    prio: sel.prio ?? 0,
    protocol: sel.protocol ?? ETH_P_ALL,
    match: {},
    actions: [],
  };
  if (sel.chain !== undefined) rule.chain = sel.chain;
  if (sel.handle !== undefined) rule.handle = sel.handle;
  parseFlower(a, rule, resolve);
  return { object: "filter", verb: verb === "replace" ? "replace" : "add", dev, target: fullTarget, rule };
}

function parseHandle(s: string): number {
  if (s === "root") return 0xffffffff;
  if (s === "ingress") return 0xfffffff1;
  const m = /^([0-9a-f]*):([0-9a-f]*)$/i.exec(s);
  if (!m) throw new UsageError(`invalid parent handle "${s}" (MAJ:MIN in hex)`);
  return ((parseInt(m[1] || "0", 16) << 16) | parseInt(m[2] || "0", 16)) >>> 0;
}

/** Device names a command line mentions (to resolve them before parsing). */
export function mentionedDevices(argv: string[]): string[] {
  const out: string[] = [];
  argv.forEach((w, i) => {
    if (w === "dev" && argv[i + 1]) out.push(argv[i + 1]!);
  });
  return out;
}

// ---------------------------------------------------------------- show

function controlName(c: number | undefined): string {
  if (c === undefined) return "";
  if ((c & 0xf0000000) >>> 0 === TC_ACT.GOTO_CHAIN) return `goto chain ${c & TC_ACT_EXT_MAX}`;
  for (const [k, v] of Object.entries(controls)) if (v === c && k !== "ok" && k !== "shot") return k;
  return `control ${c}`;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
const masked = (m: Masked<number | string>, fmt: (v: number | string) => string = String): string =>
  m.mask === undefined ? fmt(m.value) : `${fmt(m.value)}/${fmt(m.mask)}`;

function matchText(m: FlowerMatch): string[] {
  const out: string[] = [];
  const ctNames = Object.entries(TCA_FLOWER_KEY_CT_FLAGS);
  for (const [k, v] of Object.entries(m)) {
    if (v === undefined) continue;
    switch (k) {
      case "ctState": {
        const s = v as Masked<number>;
        out.push(
          `ct_state ${ctNames
            .filter(([, f]) => (s.mask ?? 0) & f)
            .map(([n, f]) => `${s.value & f ? "+" : "-"}${n}`)
            .join("")}`,
        );
        break;
      }
      case "geneveOpts": {
        const g = v as { value: GeneveOpt[] };
        out.push(
          `geneve_opts ${g.value.map((o) => `${o.class.toString(16).padStart(4, "0")}:${o.type.toString(16).padStart(2, "0")}:${o.data}`).join(",")}`,
        );
        break;
      }
      case "tcpFlags":
      case "ctMark":
        out.push(`${snake(k)} ${masked(v as Masked<number>, (x) => hex(Number(x)))}`);
        break;
      case "vlanEthType":
        out.push(`vlan_ethtype ${protocolName(v as number)}`);
        break;
      case "icmpType":
      case "icmpCode": {
        const mv = v as Masked<number>;
        out.push(`${k === "icmpType" ? "type" : "code"} ${mv.mask === 0xff ? mv.value : masked(mv)}`);
        break;
      }
      case "ipProto": {
        const name = Object.entries(ipProtos).find(([, n]) => n === v)?.[0];
        out.push(`ip_proto ${name ?? String(v)}`);
        break;
      }
      default:
        out.push(`${snake(k)} ${typeof v === "object" ? masked(v as Masked<number | string>) : String(v)}`);
    }
  }
  return out;
}

function snake(k: string): string {
  const special: Record<string, string> = {
    dstMac: "dst_mac",
    srcMac: "src_mac",
    encKeyId: "enc_key_id",
    encSrcIp: "enc_src_ip",
    encDstIp: "enc_dst_ip",
    encDstPort: "enc_dst_port",
    encTos: "enc_tos",
    encTtl: "enc_ttl",
  };
  return special[k] ?? k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export function actionText(a: FlowerAction, devName: (ifindex: number) => string = String): string {
  const ctl = controlName(a.control);
  switch (a.kind) {
    case "gact":
      return `gact action ${ctl}`;
    case "mirred":
      return `mirred (${a.direction === "egress" ? "Egress" : "Ingress"} ${a.mode === "redirect" ? "Redirect" : "Mirror"} to device ${a.dev ?? devName(a.ifindex)}) ${ctl}`;
    case "tunnel_key": {
      if (a.op === "unset") return `tunnel_key unset ${ctl}`;
      const parts = ["tunnel_key set"];
      if (a.src) parts.push(`src_ip ${a.src}`);
      if (a.dst) parts.push(`dst_ip ${a.dst}`);
      if (a.id !== undefined) parts.push(`key_id ${a.id}`);
      if (a.dstPort !== undefined) parts.push(`dst_port ${a.dstPort}`);
      if (a.geneveOpts?.length) {
        parts.push(
          `geneve_opts ${a.geneveOpts.map((o) => `${o.class.toString(16).padStart(4, "0")}:${o.type.toString(16).padStart(2, "0")}:${o.data}`).join(",")}`,
        );
      }
      if (a.tos !== undefined) parts.push(`tos ${hex(a.tos)}`);
      if (a.ttl !== undefined) parts.push(`ttl ${a.ttl}`);
      parts.push(a.csum === false ? "nocsum" : "csum", ctl);
      return parts.join(" ");
    }
    case "vlan":
      return [
        `vlan ${a.op}`,
        a.id !== undefined ? `id ${a.id}` : "",
        a.protocol !== undefined ? `protocol ${protocolName(a.protocol)}` : "",
        a.priority !== undefined ? `priority ${a.priority}` : "",
        ctl,
      ]
        .filter(Boolean)
        .join(" ");
    case "pedit":
      return a.munge
        ? `pedit ex ${a.munge.map((m) => (m.header === "eth" ? `munge eth ${m.field} set ${m.value}` : m.op === "add" && m.value === 255 ? "munge ip ttl dec" : `munge ip ttl ${m.op} ${m.value}`)).join(" ")} ${ctl}`
        : `pedit ex ${(a.keys ?? []).map((k) => `key htype ${k.htype} off ${k.off} ${k.cmd ? "add" : "set"} ${hex(k.val)} mask ${hex(k.mask)}`).join(" ")} ${ctl}`;
    case "csum": {
      const names = Object.entries({ ip4h: 1, icmp: 2, igmp: 4, tcp: 8, udp: 16, udplite: 32, sctp: 64 })
        .filter(([, f]) => a.flags & f)
        .map(([n]) => n);
      return `csum (${names.join(", ")}) ${ctl}`;
    }
    case "ct": {
      const parts = ["ct"];
      if (a.clear) parts.push("clear");
      if (a.commit) parts.push("commit");
      if (a.force) parts.push("force");
      if (a.zone !== undefined) parts.push(`zone ${a.zone}`);
      if (a.mark) parts.push(`mark ${masked(a.mark, (x) => hex(Number(x)))}`);
      if (a.nat) {
        parts.push("nat", a.nat.type ?? "");
        if (a.nat.addrMin)
          parts.push(
            `addr ${a.nat.addrMin}${a.nat.addrMax && a.nat.addrMax !== a.nat.addrMin ? `-${a.nat.addrMax}` : ""}`,
          );
        if (a.nat.portMin !== undefined)
          parts.push(`port ${a.nat.portMin}-${a.nat.portMax ?? a.nat.portMin}`);
      }
      parts.push(ctl);
      return parts.filter(Boolean).join(" ");
    }
    case "other":
      return `${a.name} (not decoded by flowdrake)`;
  }
}

/** A tc-like text block for one installed rule, with counters. */
export function formatRule(rule: FlowerRule, devName: (ifindex: number) => string = String): string {
  const head = [
    `filter protocol ${protocolName(rule.protocol)} pref ${rule.prio} flower`,
    `chain ${rule.chain ?? 0}`,
    rule.handle !== undefined ? `handle ${hex(rule.handle)}` : "",
  ].filter(Boolean);
  const lines = [head.join(" ")];
  if (rule.ethType !== undefined) lines.push(`  eth_type ${protocolName(rule.ethType)}`);
  for (const t of matchText(rule.match)) lines.push(`  ${t}`);
  const f = rule.flags ?? {};
  const flagWords = [
    f.skipHw ? "skip_hw" : "",
    f.skipSw ? "skip_sw" : "",
    f.inHw ? "in_hw" : "",
    f.notInHw ? "not_in_hw" : "",
  ];
  if (rule.inHwCount !== undefined && f.inHw) flagWords.push(`in_hw_count ${rule.inHwCount}`);
  if (flagWords.some(Boolean)) lines.push(`  ${flagWords.filter(Boolean).join(" ")}`);
  rule.actions.forEach((a, i) => {
    lines.push(`\taction order ${i + 1}: ${actionText(a, devName).trim()}`);
    const s = a.stats;
    if (a.index !== undefined || s) {
      const tm =
        s?.installedSecs !== undefined
          ? ` installed ${Math.round(s.installedSecs)} sec used ${Math.round(s.lastUseSecs ?? 0)} sec`
          : "";
      lines.push(`\t index ${a.index ?? 0}${tm}`);
    }
    if (a.cookie !== undefined) lines.push(`\tcookie ${a.cookie}`);
    if (s) {
      const hw = s.hwBytes !== undefined ? ` (hw ${s.hwBytes} bytes ${s.hwPackets} pkt)` : "";
      lines.push(`\tAction statistics:\n\tSent ${s.bytes} bytes ${s.packets} pkt${hw}`);
    }
  });
  return lines.join("\n");
}
