/**
 * The distributed DHCPv4 server's decision: one client frame (as a packet_in
 * hands it over) and the NB facts about the port it came from in, one reply
 * frame or a reason to stay silent out. Pure: no I/O, no state, no clock, so
 * every agent answers its own ports the same way and a test can check every
 * branch without a switch.
 *
 * There is no lease database: the NB model already fixed the port's address
 * (its fixedIps on the subnet), so "allocation" is a lookup and a lease is a
 * promise the model keeps. Message handling follows RFC 2131 §4.3:
 *   DISCOVER              → OFFER of the port's address
 *   REQUEST  SELECTING    (server id present) ours → ACK / NAK; another server's → silence
 *            INIT-REBOOT  (requested address, no server id) → ACK if it is the port's, else NAK
 *            RENEWING / REBINDING (ciaddr only) → ACK if ciaddr is the port's, else NAK
 *   DECLINE, RELEASE      → silence (nothing to free; a DECLINE is logged: someone holds the address)
 *   INFORM                → ACK with the options, no yiaddr and no lease times (§4.3.5)
 * A subnet with enable_dhcp off is never answered, so a tenant's own DHCP
 * server keeps working there. Frames from another MAC than the port's, relayed
 * ones (giaddr set) and unicasts to another server are not ours either.
 *
 * Options of an OFFER/ACK, in this order: server identifier (54), lease time
 * (51) with T1 (58, ½) and T2 (59, ⅞), subnet mask (1), broadcast (28), router
 * (3, the gateway; none without one), DNS (6), domain name (15), MTU (26,
 * network.mtu), classless static routes (121, host routes plus the default
 * route via the router as RFC 3442 §2 asks, since the client then ignores
 * option 3), the client identifier echoed (RFC 6842); then subnet.dhcpOptions
 * and port.extraDhcpOptions (see options.ts) override or add, port last. All
 * configured options are sent whether or not the parameter request list names
 * them (as OVN does): clients keep what they know.
 *
 * Addressing follows RFC 2131 §4.1: NAK broadcast; ciaddr set → unicast to
 * ciaddr; broadcast flag → 255.255.255.255 to ff:ff:ff:ff:ff:ff; otherwise
 * unicast to yiaddr at chaddr. VLAN tags of the request are kept.
 */
import {
  BOOTREPLY,
  BOOTREQUEST,
  buildDhcpPacket,
  type ClasslessRoute,
  DHCP_MESSAGE_TYPE,
  DHCP_MESSAGE_TYPE_NAMES,
  DHCP_OPTION_BY_CODE,
  type Dhcp,
  type DhcpOptions,
  type DhcpRawOption,
  type Frame,
  ipv4ToU32,
  isIpv4,
  MAC_BROADCAST,
  parseEthernet,
  u32ToIpv4,
  UDP_PORT,
} from "../../packet/index.js";
import type { Network, Port, Subnet } from "../../nb/model/index.js";
import { DecodeError, errorMessage } from "../../util/errors.js";
import { logger } from "../../util/log.js";
import { collectOptionSettings, type DhcpOptionError, type OptionSetting } from "./options.js";

const log = logger("dhcp");

export interface DhcpContext {
  /** NB logical port the frame came in from. */
  port: Port;
  /** The port's IPv4 subnet. */
  subnet: Subnet;
  network: Network;
  /** MAC the server answers from (the router port MAC or a fixed per-agent MAC). */
  serverMac: string;
  /** The DHCP server identifier and the replies' IP source. */
  serverIp: string;
  /** Seconds; default 86400; option 51 in the subnet or port options overrides. */
  leaseTime?: number;
  /** Option 15; default "openstacklocal". */
  domain?: string;
}

export type DhcpDecision =
  | { kind: "reply"; frame: Buffer; messageType: "OFFER" | "ACK" | "NAK"; yiaddr: string }
  | { kind: "ignore"; reason: string };

export const DEFAULT_LEASE_TIME = 86400;
export const DEFAULT_DOMAIN = "openstacklocal";
const INFINITE = 0xffffffff;
const ZERO = "0.0.0.0";
const LIMITED_BROADCAST = "255.255.255.255";

/** RFC 2131 §2 / RFC 2132 §9.10: the smallest maximum DHCP message size. */
const MIN_MAX_MESSAGE = 576;
/** Options never left out to fit a client's size limit. */
const ESSENTIAL_CODES: ReadonlySet<number> = new Set([1, 3, 6, 15, 26, 28, 51, 53, 54, 58, 59, 61, 121]);

const ignore = (reason: string): DhcpDecision => ({ kind: "ignore", reason });

/**
 * The server identifier to use when the deployment names none: the subnet's
 * gateway (the router leg the agent already answers ARP for), else its first
 * host address.
 */
export function defaultServerIp(subnet: Pick<Subnet, "cidr" | "gatewayIp">): string | undefined {
  if (subnet.gatewayIp && isIpv4(subnet.gatewayIp)) return subnet.gatewayIp;
  const p = parsePrefix(subnet.cidr);
  if (!p || p.len > 30) return undefined;
  return u32ToIpv4(p.network + 1);
}

/** Decide what to answer to one frame from `ctx.port`. Never throws. */
export function handleDhcpFrame(frame: Buffer, ctx: DhcpContext): DhcpDecision {
  let f: Frame;
  try {
    f = parseEthernet(frame);
  } catch (e) {
    if (e instanceof DecodeError) return ignore(`malformed frame: ${e.message}`);
    log.error({ err: e }, "unexpected error decoding a DHCP frame");
    return ignore(`malformed frame: ${errorMessage(e)}`);
  }
  try {
    return decide(f, ctx);
  } catch (e) {
    log.error({ err: e, port: ctx.port.id }, "DHCP reply could not be built");
    return ignore(`cannot build the reply: ${errorMessage(e)}`);
  }
}

interface Prefix {
  network: number;
  mask: number;
  len: number;
}

function parsePrefix(cidr: string): Prefix | undefined {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(cidr);
  if (!m || !isIpv4(m[1]!) || Number(m[2]) > 32) return undefined;
  const len = Number(m[2]);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { network: (ipv4ToU32(m[1]!) & mask) >>> 0, mask, len };
}

function inPrefix(p: Prefix, ip: string): boolean {
  return isIpv4(ip) && (ipv4ToU32(ip) & p.mask) >>> 0 === p.network;
}

function decide(f: Frame, ctx: DhcpContext): DhcpDecision {
  const d = f.dhcp;
  if (!f.ipv4 || !f.udp || !d) return ignore("not a DHCPv4 frame");
  if (f.udp.dstPort !== UDP_PORT.DHCP_SERVER) return ignore("not addressed to the DHCP server port 67");
  if (d.op !== BOOTREQUEST) return ignore("not a BOOTREQUEST");
  if (d.htype !== 1 || d.hlen !== 6) return ignore(`hardware type ${d.htype}/${d.hlen} is not Ethernet`);
  const type = d.options.messageType;
  const typeName = type === undefined ? "BOOTP" : (DHCP_MESSAGE_TYPE_NAMES.get(type) ?? `type ${type}`);
  const { port, subnet } = ctx;
  if (!subnet.enableDhcp) return ignore(`subnet ${subnet.id} has DHCP disabled`);
  if (subnet.ipVersion !== 4) return ignore(`subnet ${subnet.id} is not IPv4`);
  if (!port.adminStateUp) return ignore(`port ${port.id} is administratively down`);
  if (d.chaddr !== port.macAddress.toLowerCase())
    return ignore(`chaddr ${d.chaddr} is not port ${port.id}'s MAC ${port.macAddress}`);
  if (d.giaddr !== ZERO) return ignore(`relayed by ${d.giaddr}; relays are not served`);
  const prefix = parsePrefix(subnet.cidr);
  if (!prefix) return ignore(`subnet ${subnet.id} cidr ${subnet.cidr} is not IPv4`);
  const portIp = port.fixedIps.find((x) => x.subnetId === subnet.id && isIpv4(x.ipAddress))?.ipAddress;
  if (!portIp) return ignore(`port ${port.id} has no IPv4 address on subnet ${subnet.id}`);

  const plan = planOptions(ctx, prefix, d);
  const sid = plan.serverId;
  const dst = f.ipv4.dst;
  const broadcastIp = u32ToIpv4((prefix.network | ~prefix.mask) >>> 0);
  if (dst !== LIMITED_BROADCAST && dst !== sid && dst !== broadcastIp)
    return ignore(`${typeName} to ${dst}, another server`);

  const reply = (messageType: "OFFER" | "ACK", yiaddr: string, withLease: boolean): DhcpDecision =>
    buildReply(f, d, ctx, plan, messageType, yiaddr, withLease);
  const nak = (why: string): DhcpDecision => buildNak(f, d, ctx, plan, why);

  switch (type) {
    case DHCP_MESSAGE_TYPE.DISCOVER:
      return reply("OFFER", portIp, true);
    case DHCP_MESSAGE_TYPE.REQUEST: {
      const asked = d.options.serverIdentifier;
      const requested = d.options.requestedIpAddress;
      let target: string;
      if (asked !== undefined) {
        if (asked !== sid) return ignore(`REQUEST for server ${asked}, not ours (${sid})`);
        target = requested ?? d.ciaddr;
        if (target === ZERO) return nak("no requested address");
      } else if (requested !== undefined) {
        target = requested;
      } else if (d.ciaddr !== ZERO) {
        target = d.ciaddr;
      } else {
        return ignore("REQUEST without server identifier, requested address or ciaddr");
      }
      if (target !== portIp) {
        return nak(
          inPrefix(prefix, target)
            ? `address ${target} is not this client's`
            : `address ${target} is not on ${subnet.cidr}`,
        );
      }
      return reply("ACK", portIp, true);
    }
    case DHCP_MESSAGE_TYPE.INFORM:
      return reply("ACK", ZERO, false);
    case DHCP_MESSAGE_TYPE.DECLINE:
      log.warn(
        { port: port.id, address: d.options.requestedIpAddress ?? portIp, mac: d.chaddr },
        "DHCPDECLINE: the client found its address in use",
      );
      return ignore(`DECLINE of ${d.options.requestedIpAddress ?? portIp}: the address is in use elsewhere`);
    case DHCP_MESSAGE_TYPE.RELEASE:
      return ignore(`RELEASE of ${d.ciaddr}: addresses are fixed by the NB model, nothing to free`);
    case undefined:
      return ignore("BOOTP request without a DHCP message type");
    default:
      return ignore(`${typeName} is not a client-to-server message this server handles`);
  }
}

/** The option plan for one subnet/port: values by code, in reply order. */
interface OptionPlan {
  serverId: string;
  siaddr: string;
  /** code → typed value (known codes) or Buffer (raw, unknown codes) */
  options: Map<number, unknown>;
}

/**
 * Parsed settings per NB option object (the model's objects are replaced, not
 * mutated, on change), so each is parsed and its errors logged once.
 */
const settingsCache = new WeakMap<object, OptionSetting[]>();

function settingsOf(
  key: object,
  compute: () => { settings: OptionSetting[]; errors: DhcpOptionError[] },
  where: Record<string, string>,
): OptionSetting[] {
  let cached = settingsCache.get(key);
  if (!cached) {
    const { settings, errors } = compute();
    for (const e of errors) log.warn({ ...where, ...e.context }, e.message);
    settingsCache.set(key, settings);
    cached = settings;
  }
  return cached;
}

function planOptions(ctx: DhcpContext, prefix: Prefix, req: Dhcp): OptionPlan {
  const { subnet, port, network } = ctx;
  const settings = [
    ...settingsOf(subnet.dhcpOptions, () => collectOptionSettings(subnet.dhcpOptions, []), {
      subnet: subnet.id,
    }),
    ...settingsOf(port.extraDhcpOptions, () => collectOptionSettings({}, port.extraDhcpOptions), {
      port: port.id,
    }),
  ];
  const set = new Map<number, unknown>();
  const suppressed = new Set<number>();
  let siaddr = ZERO;
  for (const s of settings) {
    if (s.kind === "siaddr") siaddr = s.value ?? ZERO;
    else if (s.kind === "suppress") {
      set.delete(s.code);
      suppressed.add(s.code);
    } else {
      set.set(s.code, s.kind === "value" ? s.value : s.data);
      suppressed.delete(s.code);
    }
  }
  const lease = (set.get(51) as number | undefined) ?? ctx.leaseTime ?? DEFAULT_LEASE_TIME;
  const router = subnet.gatewayIp && isIpv4(subnet.gatewayIp) ? subnet.gatewayIp : undefined;
  const dns = subnet.dnsNameservers.filter(isIpv4);
  const routes: ClasslessRoute[] = subnet.hostRoutes
    .filter((r) => isIpv4(r.nexthop) && parsePrefix(r.destination))
    .map((r) => ({ destination: r.destination, router: r.nexthop }));

  const o = new Map<number, unknown>();
  o.set(54, ctx.serverIp);
  o.set(51, lease);
  if (lease !== INFINITE) {
    o.set(58, Math.floor(lease / 2));
    o.set(59, Math.floor((lease * 7) / 8));
  }
  o.set(1, u32ToIpv4(prefix.mask));
  o.set(28, u32ToIpv4((prefix.network | ~prefix.mask) >>> 0));
  if (router) o.set(3, [router]);
  if (dns.length > 0) o.set(6, dns);
  o.set(15, ctx.domain ?? DEFAULT_DOMAIN);
  o.set(26, network.mtu);
  if (routes.length > 0) o.set(121, routes);
  for (const [code, v] of set) o.set(code, v);
  for (const code of suppressed) o.delete(code);

  const finalRouter = (o.get(3) as string[] | undefined)?.[0];
  const r121 = o.get(121) as ClasslessRoute[] | undefined;
  if (!set.has(121) && r121 && finalRouter && !r121.some((r) => r.destination.endsWith("/0"))) {
    o.set(121, [...r121, { destination: "0.0.0.0/0", router: finalRouter }]);
  }
  if (req.options.clientIdentifier) o.set(61, req.options.clientIdentifier);
  const sid = o.get(54);
  return { serverId: typeof sid === "string" ? sid : ctx.serverIp, siaddr, options: o };
}

function toSpecOptions(m: Map<number, unknown>): {
  options: Record<string, unknown>;
  unknownOptions: DhcpRawOption[];
} {
  const options: Record<string, unknown> = {};
  const unknownOptions: DhcpRawOption[] = [];
  for (const [code, v] of m) {
    const def = DHCP_OPTION_BY_CODE.get(code);
    if (def) options[def.name] = v;
    else unknownOptions.push({ code, data: v as Buffer });
  }
  return { options, unknownOptions };
}

function vlansOf(f: Frame) {
  return f.vlans.map((t) => ({ vid: t.vid, pcp: t.pcp, dei: t.dei, tpid: t.tpid }));
}

function buildReply(
  f: Frame,
  d: Dhcp,
  ctx: DhcpContext,
  plan: OptionPlan,
  messageType: "OFFER" | "ACK",
  yiaddr: string,
  withLease: boolean,
): DhcpDecision {
  const opts = new Map(plan.options);
  if (!withLease) for (const c of [51, 58, 59]) opts.delete(c);
  const ciaddr = messageType === "ACK" ? d.ciaddr : ZERO;
  let ipDst: string;
  let ethDst: string;
  if (d.ciaddr !== ZERO) {
    ipDst = d.ciaddr;
    ethDst = d.chaddr;
  } else if (d.broadcast || yiaddr === ZERO) {
    ipDst = LIMITED_BROADCAST;
    ethDst = MAC_BROADCAST;
  } else {
    ipDst = yiaddr;
    ethDst = d.chaddr;
  }
  const bootfile = opts.get(67);
  const build = (): Buffer => {
    const { options, unknownOptions } = toSpecOptions(opts);
    return buildDhcpPacket({
      ethSrc: ctx.serverMac,
      ethDst,
      ipSrc: plan.serverId,
      ipDst,
      vlans: vlansOf(f),
      dhcp: {
        op: BOOTREPLY,
        xid: d.xid,
        chaddr: d.chaddr,
        flags: d.flags,
        ciaddr,
        yiaddr,
        siaddr: plan.siaddr,
        giaddr: d.giaddr,
        file: typeof bootfile === "string" && bootfile.length < 128 ? bootfile : undefined,
        options: { ...options, messageType: DHCP_MESSAGE_TYPE[messageType] } as DhcpOptions,
        unknownOptions,
      },
    });
  };
  // RFC 2131 §2: a client takes at least 576-byte IP datagrams, more only if it says so (option 57).
  const limit = Math.max(MIN_MAX_MESSAGE, d.options.maxMessageSize ?? 0);
  const l2 = 14 + 4 * f.vlans.length;
  let frame = build();
  const dropped: number[] = [];
  while (frame.length - l2 > limit) {
    const victim = [...opts.keys()].reverse().find((c) => !ESSENTIAL_CODES.has(c));
    if (victim === undefined) break;
    opts.delete(victim);
    dropped.push(victim);
    frame = build();
  }
  if (dropped.length > 0)
    log.warn(
      { port: ctx.port.id, dropped, limit },
      "DHCP reply over the client's size limit: options left out",
    );
  return { kind: "reply", frame, messageType, yiaddr };
}

function buildNak(f: Frame, d: Dhcp, ctx: DhcpContext, plan: OptionPlan, why: string): DhcpDecision {
  const options: Record<string, unknown> = {
    messageType: DHCP_MESSAGE_TYPE.NAK,
    serverIdentifier: plan.serverId,
    message: why,
  };
  if (d.options.clientIdentifier) options.clientIdentifier = d.options.clientIdentifier;
  const frame = buildDhcpPacket({
    ethSrc: ctx.serverMac,
    ethDst: MAC_BROADCAST,
    ipSrc: plan.serverId,
    ipDst: LIMITED_BROADCAST,
    vlans: vlansOf(f),
    dhcp: {
      op: BOOTREPLY,
      xid: d.xid,
      chaddr: d.chaddr,
      flags: d.flags,
      giaddr: d.giaddr,
      options: options as DhcpOptions,
    },
  });
  return { kind: "reply", frame, messageType: "NAK", yiaddr: ZERO };
}
