/**
 * DHCP options as the NB model states them: `subnet.dhcpOptions` (a record of
 * name → value) and `port.extraDhcpOptions` (a list of {name, value,
 * ipVersion}), both strings, turned into typed option values for the packet
 * library's DHCP codec.
 *
 * A name is one of:
 *   - a number, "26", or "option:26" (dnsmasq's spelling);
 *   - an alias from DHCP_OPTION_ALIASES, the names Neutron passes through to
 *     dnsmasq (`mtu`, `dns-server`, `classless-static-route`, …) and OVN's
 *     spellings of the same (`dns_server`, `lease_time`, …): case, `_` and `-`
 *     do not matter;
 *   - the packet library's own option name (`interfaceMtu`, `domainNameServer`).
 *
 * A value is parsed by the option's type in the packet library's table:
 * addresses and lists separated by commas or spaces, integers in decimal or
 * 0x hex ("infinite" for a u32 such as the lease time), classless routes as
 * `dest/len,router` pairs (optionally in OVN's `{…}`), domain-search as
 * domain names (encoded per RFC 3397) or hex. Codes the table does not know are
 * sent raw: hex bytes `01:02:0a` or `0x01020a`, IPv4 addresses, or text. An empty value
 * suppresses the option (e.g. `router: ""` sends no router).
 *
 * Options a server must not set (the client's and relay's: 50, 52, 53, 55,
 * 57, 61, 82) and framing (0, 255) are rejected with a DhcpOptionError, as is
 * any value that does not parse; callers report the error and skip the one
 * setting, never the whole reply.
 */
import {
  type ClasslessRoute,
  DHCP_OPTION_BY_CODE,
  DHCP_OPTIONS,
  type DhcpValueType,
  ipv4ToBytes,
  ipv4ToU32,
  isIpv4,
  u32ToIpv4,
} from "../../packet/index.js";
import { FlowdrakeError } from "../../util/errors.js";

export class DhcpOptionError extends FlowdrakeError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super("DHCP_OPTION", message, context);
  }
}

/**
 * Option names as Neutron's extra_dhcp_opts / dnsmasq `--dhcp-option` and OVN's
 * `options:` columns spell them (normalized: lower case, `_` → `-`). `bootp`
 * names a BOOTP header field instead of an option.
 */
export const DHCP_OPTION_ALIASES = [
  { name: "netmask", code: 1 },
  { name: "subnet-mask", code: 1 },
  { name: "time-offset", code: 2 },
  { name: "router", code: 3 },
  { name: "time-server", code: 4 },
  { name: "dns-server", code: 6 },
  { name: "hostname", code: 12 },
  { name: "host-name", code: 12 },
  { name: "domain-name", code: 15 },
  { name: "ip-ttl", code: 23 },
  { name: "default-ttl", code: 23 },
  { name: "mtu", code: 26 },
  { name: "broadcast", code: 28 },
  { name: "static-route", code: 33 },
  { name: "ntp-server", code: 42 },
  { name: "vendor-encap", code: 43 },
  { name: "lease-time", code: 51 },
  { name: "server-id", code: 54 },
  { name: "server-identifier", code: 54 },
  { name: "t1", code: 58 },
  { name: "renewal-time", code: 58 },
  { name: "t2", code: 59 },
  { name: "rebinding-time", code: 59 },
  { name: "tftp-server", code: 66 },
  { name: "bootfile-name", code: 67 },
  { name: "domain-search", code: 119 },
  { name: "domain-search-list", code: 119 },
  { name: "classless-static-route", code: 121 },
  { name: "server-ip-address", bootp: "siaddr" },
  { name: "next-server", bootp: "siaddr" },
] as const satisfies readonly ({ name: string; code: number } | { name: string; bootp: "siaddr" })[];

/** Client-side, relay and framing codes a server-side setting may not carry. */
export const DHCP_SERVER_FORBIDDEN_CODES: ReadonlySet<number> = new Set([0, 50, 52, 53, 55, 57, 61, 82, 255]);

/** One parsed setting: a typed value for a known code, raw bytes for an unknown one, or suppression. */
export type OptionSetting =
  | { code: number; kind: "value"; value: unknown }
  | { code: number; kind: "raw"; data: Buffer }
  | { code: number; kind: "suppress" }
  | { kind: "siaddr"; value: string | undefined };

type Target = { code: number } | { bootp: "siaddr" };

function normalize(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/^option6?:/, "")
    .replaceAll("_", "-");
}

const BY_NAME: ReadonlyMap<string, Target> = new Map<string, Target>([
  ...DHCP_OPTIONS.map((d): [string, Target] => [d.name.toLowerCase(), { code: d.code }]),
  ...DHCP_OPTION_ALIASES.map((a): [string, Target] => [a.name, a]),
]);

/** Resolve an option name or number; undefined when it is neither. */
export function resolveOptionName(name: string): Target | undefined {
  const n = normalize(name);
  if (/^\d{1,3}$/.test(n)) {
    const code = Number(n);
    return code <= 255 ? { code } : undefined;
  }
  return BY_NAME.get(n);
}

function err(name: string, value: string, why: string): DhcpOptionError {
  return new DhcpOptionError(`dhcp option "${name}" = "${value}": ${why}`, { option: name, value });
}

const list = (v: string): string[] =>
  v
    .replace(/^\{|\}$/g, "")
    .split(/[\s,]+/)
    .filter((s) => s !== "");

function parseIp(name: string, value: string, s: string): string {
  if (!isIpv4(s)) throw err(name, value, `"${s}" is not an IPv4 address`);
  return s;
}

function parseInteger(name: string, value: string, s: string, min: number, max: number): number {
  if (max === 0xffffffff && /^infinite$/i.test(s)) return max;
  const n = /^-?\d+$/.test(s) ? Number(s) : /^0x[0-9a-f]+$/i.test(s) ? Number.parseInt(s, 16) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw err(name, value, `"${s}" is not an integer in ${min}..${max}`);
  return n;
}

/** Hex bytes: `0x0a0b…` or colon-separated pairs `0a:0b:…` (dnsmasq's form). */
const HEX_RE = /^(0x([0-9a-f]{2})+|[0-9a-f]{2}(:[0-9a-f]{2})+)$/i;

function parseHex(s: string): Buffer {
  return Buffer.from(s.replace(/^0x/i, "").replaceAll(":", ""), "hex");
}

/** RFC 1035 §3.1 names, uncompressed, for option 119 (RFC 3397). */
function encodeDomainList(name: string, value: string, domains: string[]): Buffer {
  const parts: Buffer[] = [];
  for (const d of domains) {
    for (const label of d.replace(/\.$/, "").split(".")) {
      if (label.length === 0 || label.length > 63 || !/^[\x21-\x7e]+$/.test(label))
        throw err(name, value, `"${d}" is not a domain name`);
      parts.push(Buffer.from([label.length]), Buffer.from(label, "latin1"));
    }
    parts.push(Buffer.from([0]));
  }
  return Buffer.concat(parts);
}

function parseRoutes(name: string, value: string): ClasslessRoute[] {
  const items = list(value);
  if (items.length % 2 !== 0) throw err(name, value, "wants destination/len,router pairs");
  const out: ClasslessRoute[] = [];
  for (let i = 0; i < items.length; i += 2) {
    const m = /^([\d.]+)\/(\d{1,2})$/.exec(items[i]!);
    const width = m ? Number(m[2]) : -1;
    if (!m || !isIpv4(m[1]!) || width > 32) throw err(name, value, `"${items[i]}" is not a.b.c.d/len`);
    const mask = width === 0 ? 0 : (0xffffffff << (32 - width)) >>> 0;
    out.push({
      destination: `${u32ToIpv4((ipv4ToU32(m[1]!) & mask) >>> 0)}/${width}`,
      router: parseIp(name, value, items[i + 1]!),
    });
  }
  return out;
}

function parseTyped(code: number, type: DhcpValueType, name: string, value: string): unknown {
  const v = value.trim();
  switch (type) {
    case "ip":
      return parseIp(name, value, v);
    case "ip-list": {
      const items = list(v);
      return items.map((s) => parseIp(name, value, s));
    }
    case "u8":
      return parseInteger(name, value, v, 0, 0xff);
    case "u16":
      return parseInteger(name, value, v, 0, 0xffff);
    case "u32":
      return parseInteger(name, value, v, 0, 0xffffffff);
    case "i32":
      return parseInteger(name, value, v, -0x80000000, 0x7fffffff);
    case "string":
      return value;
    case "bytes":
      if (code === 119 && !HEX_RE.test(v)) return encodeDomainList(name, value, list(v));
      return HEX_RE.test(v) ? parseHex(v) : Buffer.from(value, "latin1");
    case "flag":
      if (!/^(1|true|yes|on)$/i.test(v)) throw err(name, value, "a flag option takes true/1/yes/on");
      return true;
    case "u8-list":
      return list(v).map((s) => parseInteger(name, value, s, 0, 0xff));
    case "routes":
      return parseRoutes(name, value);
    case "client-id":
    case "message-type":
      throw err(name, value, "is not a server option");
  }
}

function parseRaw(value: string): Buffer {
  const v = value.trim();
  if (HEX_RE.test(v)) return parseHex(v);
  const items = list(v);
  if (items.length > 0 && items.every(isIpv4)) return Buffer.concat(items.map(ipv4ToBytes));
  return Buffer.from(value, "latin1");
}

/** Parse one name/value setting; throws DhcpOptionError. */
export function parseOptionSetting(name: string, value: string): OptionSetting {
  const t = resolveOptionName(name);
  if (!t) throw err(name, value, "unknown option name (use a number, e.g. option:150)");
  if ("bootp" in t) {
    if (value.trim() === "") return { kind: "siaddr", value: undefined };
    return { kind: "siaddr", value: parseIp(name, value, value.trim()) };
  }
  if (DHCP_SERVER_FORBIDDEN_CODES.has(t.code))
    throw err(name, value, `option ${t.code} is the client's or framing, not a server setting`);
  if (value.trim() === "") return { code: t.code, kind: "suppress" };
  const def = DHCP_OPTION_BY_CODE.get(t.code);
  if (!def) {
    const data = parseRaw(value);
    if (data.length > 255 * 4) throw err(name, value, "longer than 1020 bytes");
    return { code: t.code, kind: "raw", data };
  }
  const parsed = parseTyped(t.code, def.type, name, value);
  if (Array.isArray(parsed) && parsed.length === 0 && def.type !== "u8-list")
    throw err(name, value, "needs at least one value");
  return { code: t.code, kind: "value", value: parsed };
}

/**
 * The settings of a subnet then a port (the port's win), IPv4 ones only, in
 * order; the ones that do not parse come back in `errors`.
 */
export function collectOptionSettings(
  subnetOptions: Readonly<Record<string, string>>,
  portOptions: readonly { name: string; value: string; ipVersion?: number }[],
): { settings: OptionSetting[]; errors: DhcpOptionError[] } {
  const settings: OptionSetting[] = [];
  const errors: DhcpOptionError[] = [];
  const add = (name: string, value: string, source: string): void => {
    try {
      settings.push(parseOptionSetting(name, value));
    } catch (e) {
      if (!(e instanceof DhcpOptionError)) throw e;
      e.context.source = source;
      errors.push(e);
    }
  };
  for (const [name, value] of Object.entries(subnetOptions)) add(name, value, "subnet");
  for (const o of portOptions) if ((o.ipVersion ?? 4) === 4) add(o.name, o.value, "port");
  return { settings, errors };
}
