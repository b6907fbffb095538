/**
 * DHCPv4 options, declared ONCE in DHCP_OPTIONS: wire code (RFC 2132 unless
 * noted), the camelCase name apps use, and the value type. The typed
 * `DhcpOptions` record, the decoder and the encoder are all derived from the
 * table; adding an option is one line.
 *
 * Value types:
 *   ip            one IPv4 address (4 bytes)              "10.0.0.1"
 *   ip-list       one or more IPv4 addresses              ["10.0.0.1", …]
 *   u8/u16/u32    unsigned integers;  i32  signed (time offset)
 *   string        NVT ASCII text, decoded byte-for-byte (latin1) so it round-trips
 *   bytes         opaque Buffer
 *   flag          zero-length presence option             true
 *   u8-list       list of octets (parameter request list)
 *   routes        RFC 3442 classless static routes        [{destination: "10.1.0.0/16", router}]
 *   client-id     RFC 2132 §9.14 type + identifier        {type: 1, id: <6-byte MAC>}
 *   message-type  DHCP_MESSAGE_TYPE value (u8)
 *
 * Pad (0) and End (255) are framing, not options (DHCP_OPT_PAD/DHCP_OPT_END).
 * Codes not in the table are preserved raw by the message codec.
 */
import { ByteReader, ByteWriter } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";
import { bytesToIpv4, ipv4ToBytes, isIpv4 } from "./addr.js";

export const DHCP_OPT_PAD = 0;
export const DHCP_OPT_END = 255;

/** DHCP message types (RFC 2132 §9.6; 9 RFC 3203; 10–13 RFC 4388). */
export const DHCP_MESSAGE_TYPE = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
  FORCERENEW: 9,
  LEASEQUERY: 10,
  LEASEUNASSIGNED: 11,
  LEASEUNKNOWN: 12,
  LEASEACTIVE: 13,
} as const;
export const DHCP_MESSAGE_TYPE_NAMES = new Map<number, string>(
  Object.entries(DHCP_MESSAGE_TYPE).map(([k, v]) => [v, `DHCP${k}`]),
);

export interface ClasslessRoute {
  /** "a.b.c.d/len", host bits zero. */
  destination: string;
  router: string;
}

export interface ClientId {
  /** Hardware type (1 = Ethernet) or 0 / 255 for other identifier forms (RFC 4361). */
  type: number;
  id: Buffer;
}

interface ValueTypes {
  ip: string;
  "ip-list": string[];
  u8: number;
  u16: number;
  u32: number;
  i32: number;
  string: string;
  bytes: Buffer;
  flag: true;
  "u8-list": number[];
  routes: ClasslessRoute[];
  "client-id": ClientId;
  "message-type": number;
}
export type DhcpValueType = keyof ValueTypes;

export const DHCP_OPTIONS = [
  { code: 1, name: "subnetMask", type: "ip" },
  { code: 2, name: "timeOffset", type: "i32" },
  { code: 3, name: "router", type: "ip-list" },
  { code: 4, name: "timeServer", type: "ip-list" },
  { code: 6, name: "domainNameServer", type: "ip-list" },
  { code: 12, name: "hostName", type: "string" },
  { code: 15, name: "domainName", type: "string" },
  { code: 23, name: "defaultIpTtl", type: "u8" },
  { code: 26, name: "interfaceMtu", type: "u16" },
  { code: 28, name: "broadcastAddress", type: "ip" },
  { code: 33, name: "staticRoute", type: "ip-list" },
  { code: 42, name: "ntpServers", type: "ip-list" },
  { code: 43, name: "vendorSpecific", type: "bytes" },
  { code: 50, name: "requestedIpAddress", type: "ip" },
  { code: 51, name: "ipAddressLeaseTime", type: "u32" },
  { code: 52, name: "optionOverload", type: "u8" },
  { code: 53, name: "messageType", type: "message-type" },
  { code: 54, name: "serverIdentifier", type: "ip" },
  { code: 55, name: "parameterRequestList", type: "u8-list" },
  { code: 56, name: "message", type: "string" },
  { code: 57, name: "maxMessageSize", type: "u16" },
  { code: 58, name: "renewalTime", type: "u32" },
  { code: 59, name: "rebindingTime", type: "u32" },
  { code: 60, name: "vendorClassIdentifier", type: "string" },
  { code: 61, name: "clientIdentifier", type: "client-id" },
  { code: 66, name: "tftpServerName", type: "string" },
  { code: 67, name: "bootfileName", type: "string" },
  { code: 80, name: "rapidCommit", type: "flag" }, // RFC 4039
  { code: 81, name: "clientFqdn", type: "bytes" }, // RFC 4702
  { code: 82, name: "relayAgentInformation", type: "bytes" }, // RFC 3046
  { code: 119, name: "domainSearch", type: "bytes" }, // RFC 3397 (DNS wire names)
  { code: 121, name: "classlessStaticRoutes", type: "routes" }, // RFC 3442
] as const satisfies readonly { code: number; name: string; type: DhcpValueType }[];

type OptionDef = (typeof DHCP_OPTIONS)[number];
export type DhcpOptionName = OptionDef["name"];

/** Every known option, typed by its table entry; all optional. */
export type DhcpOptions = { -readonly [D in OptionDef as D["name"]]?: ValueTypes[D["type"]] };

export const DHCP_OPTION_BY_CODE: ReadonlyMap<number, OptionDef> = new Map(
  DHCP_OPTIONS.map((d) => [d.code, d]),
);
export const DHCP_OPTION_BY_NAME: ReadonlyMap<string, OptionDef> = new Map(
  DHCP_OPTIONS.map((d) => [d.name, d]),
);

function bad(def: OptionDef, why: string): DecodeError {
  return new DecodeError(`dhcp: option ${def.code} (${def.name}): ${why}`, {
    layer: "dhcp",
    field: def.name,
    code: def.code,
  });
}

function exact(def: OptionDef, data: Buffer, n: number): void {
  if (data.length !== n) throw bad(def, `length ${data.length}, expected ${n}`);
}

function decodeRoutes(def: OptionDef, data: Buffer): ClasslessRoute[] {
  const r = new ByteReader(data, 0, data.length, "dhcp option 121");
  const out: ClasslessRoute[] = [];
  while (!r.atEnd()) {
    const width = r.u8("prefix width");
    if (width > 32) throw bad(def, `prefix width ${width} above 32`);
    const sig = Math.ceil(width / 8);
    const dst = Buffer.alloc(4);
    r.bytes(sig, "destination").copy(dst);
    out.push({ destination: `${bytesToIpv4(dst)}/${width}`, router: bytesToIpv4(r.bytes(4, "router")) });
  }
  return out;
}

/** Decode one option's (concatenated, RFC 3396) data by its table type. */
export function decodeOptionValue(def: OptionDef, data: Buffer): DhcpOptions[DhcpOptionName] {
  switch (def.type) {
    case "ip":
      exact(def, data, 4);
      return bytesToIpv4(data);
    case "ip-list": {
      if (data.length === 0 || data.length % 4 !== 0)
        throw bad(def, `length ${data.length} not a multiple of 4`);
      const out: string[] = [];
      for (let i = 0; i < data.length; i += 4) out.push(bytesToIpv4(data, i));
      return out;
    }
    case "u8":
    case "message-type":
      exact(def, data, 1);
      return data[0]!;
    case "u16":
      exact(def, data, 2);
      return data.readUInt16BE(0);
    case "u32":
      exact(def, data, 4);
      return data.readUInt32BE(0);
    case "i32":
      exact(def, data, 4);
      return data.readInt32BE(0);
    case "string":
      return data.toString("latin1");
    case "bytes":
      return Buffer.from(data);
    case "flag":
      exact(def, data, 0);
      return true;
    case "u8-list":
      return [...data];
    case "routes":
      return decodeRoutes(def, data);
    case "client-id":
      if (data.length < 2) throw bad(def, `length ${data.length}, at least 2`);
      return { type: data[0]!, id: Buffer.from(data.subarray(1)) };
  }
}

function encErr(def: OptionDef, why: string): EncodeError {
  return new EncodeError(`dhcp: option ${def.code} (${def.name}): ${why}`, {
    layer: "dhcp",
    field: def.name,
  });
}

function ip(def: OptionDef, v: unknown): Buffer {
  if (typeof v !== "string" || !isIpv4(v)) throw encErr(def, `not an IPv4 address: ${String(v)}`);
  return ipv4ToBytes(v);
}

function encodeRoutes(def: OptionDef, routes: readonly ClasslessRoute[]): Buffer {
  const w = new ByteWriter(64);
  for (const rt of routes) {
    const m = /^([\d.]+)\/(\d{1,2})$/.exec(rt.destination);
    const width = m ? Number(m[2]) : -1;
    if (!m || width > 32) throw encErr(def, `bad destination "${rt.destination}" (want a.b.c.d/len)`);
    const dst = ip(def, m[1]);
    w.u8(width)
      .bytes(dst.subarray(0, Math.ceil(width / 8)))
      .bytes(ip(def, rt.router));
  }
  return w.finish();
}

/** The option data for a value (no code/length framing). */
export function encodeOptionValue(def: OptionDef, v: unknown): Buffer {
  const w = new ByteWriter(16);
  const num = (n: unknown, max: number): number => {
    if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > max)
      throw encErr(def, `bad value ${String(n)}`);
    return n;
  };
  switch (def.type) {
    case "ip":
      return ip(def, v);
    case "ip-list":
      if (!Array.isArray(v) || v.length === 0) throw encErr(def, "needs at least one address");
      return Buffer.concat(v.map((a) => ip(def, a)));
    case "u8":
    case "message-type":
      return w.u8(num(v, 0xff)).finish();
    case "u16":
      return w.u16(num(v, 0xffff)).finish();
    case "u32":
      return w.u32(num(v, 0xffffffff)).finish();
    case "i32":
      if (typeof v !== "number" || !Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
        throw encErr(def, `bad value ${String(v)}`);
      }
      return w.u32(v >>> 0).finish();
    case "string":
      if (typeof v !== "string") throw encErr(def, "not a string");
      return Buffer.from(v, "latin1");
    case "bytes":
      if (!Buffer.isBuffer(v)) throw encErr(def, "not a Buffer");
      return v;
    case "flag":
      return Buffer.alloc(0);
    case "u8-list":
      if (!Array.isArray(v)) throw encErr(def, "not a list");
      return Buffer.from(v.map((x) => num(x, 0xff)));
    case "routes":
      if (!Array.isArray(v)) throw encErr(def, "not a list of routes");
      return encodeRoutes(def, v as ClasslessRoute[]);
    case "client-id": {
      const c = v as ClientId;
      if (!c || !Buffer.isBuffer(c.id) || c.id.length === 0) throw encErr(def, "needs {type, id: Buffer}");
      return w.u8(num(c.type, 0xff)).bytes(c.id).finish();
    }
  }
}
