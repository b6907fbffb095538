/**
 * The distributed DHCPv6 server's decision (RFC 8415): one client frame (as a
 * packet_in hands it over) and the NB facts about the port it came from in,
 * one reply frame or a reason to stay silent out. Pure like the DHCPv4
 * responder (responder.ts): no I/O, no state, no clock.
 *
 * Which subnets are served: IPv6 ones with enableDhcp whose address mode —
 * `ipv6AddressMode`, else `ipv6RaMode`, else dhcpv6-stateful as Neutron's
 * DHCP agent does — is dhcpv6-stateful or dhcpv6-stateless. A slaac subnet
 * gets no DHCPv6 at all (its hosts learn everything from the RA).
 *
 * There is no binding database: the port's fixed IPv6 address on the subnet
 * is the one address the client gets (stateful mode), in its first IA_NA (a
 * further IA_NA gets NoAddrsAvail: an address lives in one IA), with
 * valid and preferred lifetime `leaseTime` (default 86400 s), T1 = ½ and
 * T2 = 0.8 of it (RFC 8415 §21.4; both 0xffffffff for an infinite lease).
 * Message handling, stateful:
 *   SOLICIT      → ADVERTISE with the IAs (preference 255 unless told
 *                  otherwise, so the client requests at once), or REPLY when
 *                  it asked for rapid commit and `rapidCommit` is on (default)
 *   REQUEST      → REPLY with the IAs
 *   RENEW/REBIND → REPLY with the IAs; every other address the client listed
 *                  comes back with lifetimes 0, so it stops using it (§18.3.4)
 *   CONFIRM      → REPLY Success if every address listed is the port's,
 *                  else NotOnLink (a client holding another address must
 *                  start over: it is not its own, and port security drops it)
 *   RELEASE/DECLINE → REPLY Success (nothing to free; a DECLINE is logged)
 *   INFORMATION-REQUEST → REPLY with the options, no IA
 * and stateless: SOLICIT → ADVERTISE with only a NoAddrsAvail status
 * (§18.3.9); REQUEST → each IA_NA with NoAddrsAvail; RENEW → each IA_NA with
 * NoBinding; REBIND → the listed addresses with lifetimes 0; CONFIRM →
 * Success if every address is inside the subnet's prefix, else NotOnLink;
 * RELEASE/DECLINE and INFORMATION-REQUEST as above. An IA_TA is answered
 * with NoAddrsAvail and an IA_PD with NoPrefixAvail (no temporary addresses,
 * no delegation). A CONFIRM listing no address gets no reply (§18.3.3).
 *
 * Identity: the server DUID is the DUID-LL of `serverMac` (the router port's
 * MAC on the subnet, or a fixed per-agent MAC; OVN likewise derives its
 * server id from a MAC), replies come from that MAC and its
 * fe80:: EUI-64 link-local address to the client's link-local address and
 * MAC, UDP 547 → 546, VLAN tags kept.
 *
 * Silence (RFC 8415 §16): messages without a Client Identifier (except
 * INFORMATION-REQUEST), a SOLICIT, CONFIRM or REBIND carrying a Server
 * Identifier, a REQUEST, RENEW, RELEASE or DECLINE without ours, an
 * INFORMATION-REQUEST naming another server; SOLICIT, CONFIRM, REBIND and
 * INFORMATION-REQUEST sent unicast. Since this server never sends the
 * Server Unicast option, a REQUEST, RENEW, RELEASE or DECLINE sent unicast
 * to it gets a REPLY with UseMulticast (§18.3.2). Relayed messages, frames
 * from another MAC than the port's and messages to another server's address
 * are not ours. The UDP checksum is not checked: frames punted from a local
 * VM may carry the partial checksum of transmit offload.
 *
 * Options of a reply, in order: Server Identifier, Client Identifier
 * (echoed), the IAs, Status Code, Preference (ADVERTISE), Rapid Commit, DNS
 * servers (the subnet's IPv6 dnsNameservers, none if it has none), domain
 * search list (`domain`, default "openstacklocal"). A reply that only
 * carries a status (CONFIRM, RELEASE, DECLINE, UseMulticast, an ADVERTISE
 * with NoAddrsAvail) has just the two identifiers and the status. A port's
 * extra DHCP options with ipVersion 6 named dns-server (23) or
 * domain-search (24), comma-separated, replace those two lists; a value
 * that does not parse, or another option name, is logged once and ignored.
 */
import {
  ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
  buildDhcp6Packet,
  canonicalIpv6,
  DHCP6_MESSAGE_TYPE,
  DHCP6_MESSAGE_TYPE_NAMES,
  DHCP6_STATUS,
  DHCP6_STATUS_NAMES,
  type Dhcp6Message,
  type Dhcp6Option,
  dhcp6Option,
  decodeDhcp6,
  duidLl,
  encodeDnsName,
  type Frame,
  isDhcp6Relay,
  isIpv6,
  ipv6ToBytes,
  linkLocalFromMac,
  parseEthernet,
  UDP_PORT,
} from "../../packet/index.js";
import type { Network, Port, Subnet } from "../../nb/model/index.js";
import { DecodeError, errorMessage } from "../../util/errors.js";
import { logger } from "../../util/log.js";

const log = logger("dhcp6");

export type Dhcp6Mode = "stateful" | "stateless";

export interface Dhcp6Context {
  /** NB logical port the frame came in from. */
  port: Port;
  /** The port's IPv6 subnet this server serves. */
  subnet: Subnet;
  network: Network;
  /** The router port's MAC on the subnet (or a fixed per-agent MAC): server DUID, source MAC and address. */
  serverMac: string;
  /** Seconds; the address's valid and preferred lifetime (default 86400). */
  leaseTime?: number;
  /** Domain search list entry; default "openstacklocal". */
  domain?: string;
  /** Answer a SOLICIT with Rapid Commit by a REPLY (default true). */
  rapidCommit?: boolean;
  /** Preference option of an ADVERTISE (default 255). */
  preference?: number;
}

export type Dhcp6Decision =
  | {
      kind: "reply";
      frame: Buffer;
      messageType: "ADVERTISE" | "REPLY";
      /** The address the reply assigns, if any. */
      address?: string;
      /** The top-level or IA status code's name when it is not Success. */
      status?: string;
    }
  | { kind: "ignore"; reason: string };

export const DEFAULT_LEASE_TIME6 = 86400;
export const DEFAULT_DOMAIN6 = "openstacklocal";
const INFINITE = 0xffffffff;

const ignore = (reason: string): Dhcp6Decision => ({ kind: "ignore", reason });

/** How a subnet is served by DHCPv6, or undefined when it is not. */
export function dhcp6Mode(subnet: Subnet): Dhcp6Mode | undefined {
  if (subnet.ipVersion !== 6 || !subnet.enableDhcp) return undefined;
  const mode = subnet.ipv6AddressMode ?? subnet.ipv6RaMode ?? "dhcpv6-stateful";
  return mode === "dhcpv6-stateful" ? "stateful" : mode === "dhcpv6-stateless" ? "stateless" : undefined;
}

/**
 * The first of the port's fixed IPv6 addresses whose subnet is served by
 * DHCPv6, with that subnet and its mode: the agent punts the port's DHCPv6
 * only when there is one, so a tenant's own DHCPv6 server on other subnets
 * keeps working.
 */
export function dhcp6SubnetFor(
  port: Port,
  subnetById: (id: string) => Subnet | undefined,
): { subnet: Subnet; mode: Dhcp6Mode; ipAddress: string } | undefined {
  for (const f of port.fixedIps) {
    if (!isIpv6(f.ipAddress)) continue;
    const subnet = subnetById(f.subnetId);
    const mode = subnet && dhcp6Mode(subnet);
    if (subnet && mode) return { subnet, mode, ipAddress: f.ipAddress };
  }
  return undefined;
}

/** The server DUID a server with this MAC uses (DUID-LL). */
export function dhcp6ServerDuid(serverMac: string): Buffer {
  return duidLl(serverMac);
}

/** Decide what to answer to one frame from `ctx.port`. Never throws. */
export function handleDhcp6Frame(frame: Buffer, ctx: Dhcp6Context): Dhcp6Decision {
  let f: Frame;
  try {
    f = parseEthernet(frame);
  } catch (e) {
    if (e instanceof DecodeError) return ignore(`malformed frame: ${e.message}`);
    log.error({ err: e }, "unexpected error decoding a DHCPv6 frame");
    return ignore(`malformed frame: ${errorMessage(e)}`);
  }
  if (!f.ipv6 || !f.udp) return ignore("not a UDP/IPv6 frame");
  if (f.udp.dstPort !== UDP_PORT.DHCPV6_SERVER) return ignore("not addressed to the DHCPv6 server port 547");
  let msg;
  try {
    msg = decodeDhcp6(f.payload);
  } catch (e) {
    if (e instanceof DecodeError) return ignore(`malformed DHCPv6 message: ${e.message}`);
    log.error({ err: e }, "unexpected error decoding a DHCPv6 message");
    return ignore(`malformed DHCPv6 message: ${errorMessage(e)}`);
  }
  if (isDhcp6Relay(msg)) return ignore("relayed message; relays are not served");
  try {
    return decide(f, msg, ctx);
  } catch (e) {
    log.error({ err: e, port: ctx.port.id }, "DHCPv6 reply could not be built");
    return ignore(`cannot build the reply: ${errorMessage(e)}`);
  }
}

interface Plan {
  mode: Dhcp6Mode;
  serverDuid: Buffer;
  serverIp: string;
  /** The port's address on the subnet (stateful). */
  address: string | undefined;
  prefix: Buffer;
  prefixLength: number;
  lease: number;
  config: Dhcp6Option[];
}

function decide(f: Frame, m: Dhcp6Message, ctx: Dhcp6Context): Dhcp6Decision {
  const { port, subnet } = ctx;
  const T = DHCP6_MESSAGE_TYPE;
  const typeName = DHCP6_MESSAGE_TYPE_NAMES.get(m.msgType) ?? `type ${m.msgType}`;
  if (subnet.ipVersion !== 6) return ignore(`subnet ${subnet.id} is not IPv6`);
  if (!subnet.enableDhcp) return ignore(`subnet ${subnet.id} has DHCP disabled`);
  const mode = dhcp6Mode(subnet);
  if (!mode)
    return ignore(
      `subnet ${subnet.id} is in ${subnet.ipv6AddressMode ?? subnet.ipv6RaMode ?? "slaac"} mode: no DHCPv6`,
    );
  if (!port.adminStateUp) return ignore(`port ${port.id} is administratively down`);
  if (f.eth.src !== port.macAddress.toLowerCase())
    return ignore(`source MAC ${f.eth.src} is not port ${port.id}'s MAC ${port.macAddress}`);
  if (f.ipv6!.src === "::") return ignore("sent from the unspecified address");
  const cidr = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(subnet.cidr);
  if (!cidr || !isIpv6(cidr[1]!)) return ignore(`subnet ${subnet.id} cidr ${subnet.cidr} is not IPv6`);

  const serverIp = linkLocalFromMac(ctx.serverMac);
  const dst = f.ipv6!.dst;
  const unicast = dst !== ALL_DHCP_RELAY_AGENTS_AND_SERVERS;
  if (unicast && dst !== serverIp) return ignore(`${typeName} to ${dst}, another server`);

  const serverDuid = dhcp6ServerDuid(ctx.serverMac);
  const clientId = dhcp6Option(m.options, "client-id");
  const serverId = dhcp6Option(m.options, "server-id");
  const ours = serverId !== undefined && serverId.duid.equals(serverDuid);
  const lease = ctx.leaseTime ?? DEFAULT_LEASE_TIME6;
  const plan: Plan = {
    mode,
    serverDuid,
    serverIp,
    address: port.fixedIps.find((x) => x.subnetId === subnet.id && isIpv6(x.ipAddress))?.ipAddress,
    prefix: ipv6ToBytes(cidr[1]!),
    prefixLength: Number(cidr[2]),
    lease,
    config: configOptions(ctx),
  };
  if (plan.address) plan.address = canonicalIpv6(plan.address);
  const send = (
    messageType: "ADVERTISE" | "REPLY",
    options: Dhcp6Option[],
    address?: string,
  ): Dhcp6Decision => reply(f, m, ctx, plan, messageType, options, address);

  if (m.msgType !== T.INFORMATION_REQUEST && !clientId)
    return ignore(`${typeName} without a Client Identifier`);
  switch (m.msgType) {
    case T.SOLICIT:
    case T.CONFIRM:
    case T.REBIND:
    case T.INFORMATION_REQUEST:
      if (unicast) return ignore(`${typeName} sent unicast to ${dst}`);
      break;
    case T.REQUEST:
    case T.RENEW:
    case T.RELEASE:
    case T.DECLINE:
      if (!serverId) return ignore(`${typeName} without a Server Identifier`);
      if (!ours) return ignore(`${typeName} for server ${serverId.duid.toString("hex")}, not ours`);
      if (unicast) return send("REPLY", [status(DHCP6_STATUS.UseMulticast, "send to ff02::1:2")]);
      break;
    default:
      return ignore(`${typeName} is not a client message this server handles`);
  }

  switch (m.msgType) {
    case T.SOLICIT: {
      if (serverId) return ignore("SOLICIT with a Server Identifier");
      const pref: Dhcp6Option = { kind: "preference", value: ctx.preference ?? 255 };
      if (mode === "stateless" || !plan.address || !m.options.some((o) => o.kind === "ia-na")) {
        return send("ADVERTISE", [status(DHCP6_STATUS.NoAddrsAvail, noAddrsWhy(plan, subnet))]);
      }
      const ias = answerIas(m.options, plan, "assign");
      const rapid = (ctx.rapidCommit ?? true) && m.options.some((o) => o.kind === "rapid-commit");
      return rapid
        ? send("REPLY", [...ias, { kind: "rapid-commit" }, ...plan.config], plan.address)
        : send("ADVERTISE", [...ias, pref, ...plan.config], plan.address);
    }
    case T.REQUEST:
      if (mode === "stateless" || !plan.address)
        return send("REPLY", [...answerIas(m.options, plan, "none-avail"), ...plan.config]);
      return send("REPLY", [...answerIas(m.options, plan, "assign"), ...plan.config], plan.address);
    case T.RENEW:
    case T.REBIND: {
      if (serverId && m.msgType === T.REBIND) return ignore("REBIND with a Server Identifier");
      if (mode === "stateless" || !plan.address) {
        const how = m.msgType === T.RENEW ? "no-binding" : "expire";
        return send("REPLY", [...answerIas(m.options, plan, how), ...plan.config]);
      }
      return send(
        "REPLY",
        [...answerIas(m.options, plan, "assign-expire-others"), ...plan.config],
        plan.address,
      );
    }
    case T.CONFIRM: {
      if (serverId) return ignore("CONFIRM with a Server Identifier");
      const listed = listedAddresses(m.options);
      if (listed.length === 0) return ignore("CONFIRM lists no address");
      const fine =
        mode === "stateful"
          ? listed.every((a) => a === plan.address)
          : listed.every((a) => inPrefix(plan, a));
      return fine
        ? send("REPLY", [status(DHCP6_STATUS.Success, "addresses confirmed")])
        : send("REPLY", [status(DHCP6_STATUS.NotOnLink, `not this client's address on ${subnet.cidr}`)]);
    }
    case T.RELEASE:
      return send("REPLY", [status(DHCP6_STATUS.Success, "released")]);
    case T.DECLINE:
      log.warn(
        { port: port.id, addresses: listedAddresses(m.options), mac: f.eth.src },
        "DHCPv6 DECLINE: the client found its address in use",
      );
      return send("REPLY", [status(DHCP6_STATUS.Success, "decline noted")]);
    case T.INFORMATION_REQUEST:
      if (serverId && !ours) return ignore("INFORMATION-REQUEST for another server");
      return send("REPLY", plan.config);
  }
  return ignore(`${typeName} is not a client message this server handles`);
}

function noAddrsWhy(plan: Plan, subnet: Subnet): string {
  if (plan.mode === "stateless") return `subnet ${subnet.cidr} is stateless: addresses by SLAAC`;
  if (!plan.address) return `this port has no address on ${subnet.cidr}`;
  return "no IA_NA requested";
}

function status(code: number, message: string): Dhcp6Option {
  return { kind: "status-code", status: code, message };
}

function inPrefix(plan: Plan, address: string): boolean {
  const a = ipv6ToBytes(address);
  const full = Math.floor(plan.prefixLength / 8);
  if (!a.subarray(0, full).equals(plan.prefix.subarray(0, full))) return false;
  const bits = plan.prefixLength % 8;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (a[full]! & mask) === (plan.prefix[full]! & mask);
}

/** Every address inside the client's IA_NA and IA_TA options. */
function listedAddresses(options: readonly Dhcp6Option[]): string[] {
  const out: string[] = [];
  for (const o of options)
    if (o.kind === "ia-na" || o.kind === "ia-ta")
      for (const x of o.options) if (x.kind === "iaaddr") out.push(x.address);
  return out;
}

type IaHow = "assign" | "assign-expire-others" | "none-avail" | "no-binding" | "expire";

/** The server's IA options answering the client's, one per IA_NA / IA_TA / IA_PD, in order. */
function answerIas(options: readonly Dhcp6Option[], plan: Plan, how: IaHow): Dhcp6Option[] {
  const out: Dhcp6Option[] = [];
  const lease = plan.lease;
  const t1 = lease === INFINITE ? INFINITE : Math.floor(lease / 2);
  const t2 = lease === INFINITE ? INFINITE : Math.floor(lease * 0.8);
  let given = false;
  for (const o of options) {
    if (o.kind === "ia-ta") {
      out.push({
        kind: "ia-ta",
        iaid: o.iaid,
        options: [status(DHCP6_STATUS.NoAddrsAvail, "no temporary addresses")],
      });
    } else if (o.kind === "ia-pd") {
      out.push({
        kind: "ia-pd",
        iaid: o.iaid,
        t1: 0,
        t2: 0,
        options: [status(DHCP6_STATUS.NoPrefixAvail, "no prefix delegation")],
      });
    } else if (o.kind === "ia-na") {
      const others = o.options
        .filter((x) => x.kind === "iaaddr")
        .map((x) => x.address)
        .filter((a) => a !== plan.address);
      const expired = [...new Set(others)].map((address): Dhcp6Option => ({
        kind: "iaaddr",
        address,
        preferredLifetime: 0,
        validLifetime: 0,
        options: [],
      }));
      const assign = (how === "assign" || how === "assign-expire-others") && !given;
      if (how === "assign" || how === "assign-expire-others") {
        if (!assign) {
          out.push({
            kind: "ia-na",
            iaid: o.iaid,
            t1: 0,
            t2: 0,
            options: [
              status(DHCP6_STATUS.NoAddrsAvail, "one address per client, in its first IA_NA"),
              ...(how === "assign-expire-others" ? expired : []),
            ],
          });
          continue;
        }
        given = true;
      }
      switch (how) {
        case "assign":
        case "assign-expire-others":
          out.push({
            kind: "ia-na",
            iaid: o.iaid,
            t1,
            t2,
            options: [
              {
                kind: "iaaddr",
                address: plan.address!,
                preferredLifetime: lease,
                validLifetime: lease,
                options: [],
              },
              ...(how === "assign-expire-others" ? expired : []),
            ],
          });
          break;
        case "none-avail":
          out.push({
            kind: "ia-na",
            iaid: o.iaid,
            t1: 0,
            t2: 0,
            options: [status(DHCP6_STATUS.NoAddrsAvail, "addresses by SLAAC")],
          });
          break;
        case "no-binding":
          out.push({
            kind: "ia-na",
            iaid: o.iaid,
            t1: 0,
            t2: 0,
            options: [status(DHCP6_STATUS.NoBinding, "no binding")],
          });
          break;
        case "expire":
          out.push({ kind: "ia-na", iaid: o.iaid, t1: 0, t2: 0, options: expired });
          break;
      }
    }
  }
  return out;
}

/**
 * Parsed v6 extra options per port option list (replaced, not mutated, on
 * change), so each bad value is logged once.
 */
const extraCache = new WeakMap<object, { dns?: string[]; domains?: string[] }>();

function portOverrides(port: Port): { dns?: string[]; domains?: string[] } {
  let got = extraCache.get(port.extraDhcpOptions);
  if (got) return got;
  got = {};
  for (const o of port.extraDhcpOptions) {
    if (o.ipVersion !== 6) continue;
    const items = o.value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    const name = o.name.toLowerCase().replace(/_/g, "-");
    if (name === "dns-server" || name === "23") {
      const bad = items.filter((s) => !isIpv6(s));
      if (bad.length > 0)
        log.warn({ port: port.id, option: o.name, bad }, "DHCPv6 dns-server: not IPv6 addresses");
      else got.dns = items.map(canonicalIpv6);
    } else if (name === "domain-search" || name === "24") {
      const bad = items.filter((s) => {
        try {
          encodeDnsName(s);
          return false;
        } catch {
          return true;
        }
      });
      if (bad.length > 0)
        log.warn({ port: port.id, option: o.name, bad }, "DHCPv6 domain-search: not domain names");
      else got.domains = items;
    } else {
      log.warn({ port: port.id, option: o.name }, "DHCPv6 extra option not supported: left out");
    }
  }
  extraCache.set(port.extraDhcpOptions, got);
  return got;
}

function configOptions(ctx: Dhcp6Context): Dhcp6Option[] {
  const over = portOverrides(ctx.port);
  const dns = over.dns ?? ctx.subnet.dnsNameservers.filter(isIpv6).map(canonicalIpv6);
  const domains = over.domains ?? [ctx.domain ?? DEFAULT_DOMAIN6];
  const out: Dhcp6Option[] = [];
  if (dns.length > 0) out.push({ kind: "dns-servers", servers: dns });
  if (domains.length > 0) out.push({ kind: "domain-list", domains });
  return out;
}

function reply(
  f: Frame,
  m: Dhcp6Message,
  ctx: Dhcp6Context,
  plan: Plan,
  messageType: "ADVERTISE" | "REPLY",
  body: Dhcp6Option[],
  address: string | undefined,
): Dhcp6Decision {
  const clientId = dhcp6Option(m.options, "client-id");
  const options: Dhcp6Option[] = [
    { kind: "server-id", duid: plan.serverDuid },
    ...(clientId ? [clientId] : []),
    ...body,
  ];
  const frame = buildDhcp6Packet({
    ethSrc: ctx.serverMac,
    ethDst: f.eth.src,
    ipSrc: plan.serverIp,
    ipDst: f.ipv6!.src,
    vlans: f.vlans.map((t) => ({ vid: t.vid, pcp: t.pcp, dei: t.dei, tpid: t.tpid })),
    message: { msgType: DHCP6_MESSAGE_TYPE[messageType], transactionId: m.transactionId, options },
  });
  const st = firstNonSuccess(body);
  return {
    kind: "reply",
    frame,
    messageType,
    ...(address !== undefined ? { address } : {}),
    ...(st !== undefined ? { status: DHCP6_STATUS_NAMES.get(st) ?? String(st) } : {}),
  };
}

function firstNonSuccess(options: readonly Dhcp6Option[]): number | undefined {
  for (const o of options) {
    if (o.kind === "status-code" && o.status !== DHCP6_STATUS.Success) return o.status;
    if (o.kind === "ia-na" || o.kind === "ia-ta" || o.kind === "ia-pd") {
      const s = firstNonSuccess(o.options);
      if (s !== undefined) return s;
    }
  }
  return undefined;
}
