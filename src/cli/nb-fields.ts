/**
 * The per-field flags of `flowdrake nb <noun> create|update`, declared once
 * as a table per object kind: flag, model field, help text and how the text
 * becomes the field's value. The table drives both the commander options
 * (and so `--help`) and the object handed to the NB API, so a flag can never
 * be documented and not applied or the other way round.
 *
 * Conversions here only split words (`10.0.0.0/24,10.0.0.254` → a host route,
 * `sub1=10.0.0.5` → a fixed IP); whether an address, range or reference is
 * valid is the model's call, so every bad value gets the same ValidationError
 * (object, field, reason → exit 1) as it would through the API. References
 * (`--network`, `--ip SUBNET=…`, `--security-group` …) take an id or a name
 * unique within the tenant. On update, a repeatable flag replaces the whole
 * stored list; `--set '<json>'` sets any field the flags do not cover.
 */
import type { Command } from "commander";
import type { NbApi } from "../nb/api.js";
import { KINDS, NotFoundError, type ObjectKind, ValidationError } from "../nb/model/index.js";

type Obj = Record<string, unknown>;

export interface FieldCtx {
  kind: ObjectKind;
  key: string;
  api: NbApi;
  tenantId: string | undefined;
}

type Convert = (raw: string, field: string, ctx: FieldCtx) => unknown;

export interface FlagSpec {
  /** commander flag, e.g. "--mtu <n>" */
  flags: string;
  /** model field it sets */
  field: string;
  help: string;
  /** text → value (default: the text) */
  convert?: Convert;
  /** the flag may be given several times; the values form the field's list */
  repeat?: boolean;
  /** "--dhcp" plus "--no-dhcp": true / false; the help of the --no- form */
  bool?: boolean;
  off?: string;
  /** the value names another object: resolve an id or a name */
  ref?: ObjectKind;
}

const fail = (ctx: FieldCtx, field: string, reason: string): never => {
  throw new ValidationError(ctx.kind, ctx.key, field, reason);
};

const int: Convert = (raw, field, ctx) => {
  if (!/^-?\d+$/.test(raw.trim())) fail(ctx, field, `"${raw}" is not an integer`);
  return Number(raw.trim());
};

const adminState: Convert = (raw, field, ctx) => {
  if (raw !== "up" && raw !== "down") fail(ctx, field, `"${raw}" is not up or down`);
  return raw === "up";
};

const pair = (raw: string, sep: string, field: string, ctx: FieldCtx, shape: string): [string, string] => {
  const i = raw.indexOf(sep);
  if (i <= 0 || i === raw.length - 1) fail(ctx, field, `"${raw}" is not ${shape}`);
  return [raw.slice(0, i).trim(), raw.slice(i + 1).trim()];
};

const route: Convert = (raw, field, ctx) => {
  const [destination, nexthop] = pair(raw, ",", field, ctx, "DESTINATION_CIDR,NEXTHOP");
  return { destination, nexthop };
};

const pool: Convert = (raw, field, ctx) => {
  const [start, end] = pair(raw, raw.includes(",") ? "," : "-", field, ctx, "START-END");
  return { start, end };
};

const keyValue: Convert = (raw, field, ctx) => pair(raw, "=", field, ctx, "NAME=VALUE");

const addressPair: Convert = (raw) => {
  const [ipAddress, macAddress] = raw.split(",").map((s) => s.trim());
  return macAddress ? { ipAddress, macAddress } : { ipAddress };
};

const extraDhcp: Convert = (raw, field, ctx) => {
  const [name, value] = pair(raw, "=", field, ctx, "NAME=VALUE");
  return { name, value };
};

const chassisAddress: Convert = (raw, field, ctx) => {
  const [chassis, rest] = pair(raw, "=", field, ctx, "CHASSIS=IP[,MAC]");
  const [ipAddress, macAddress] = rest.split(",").map((s) => s.trim());
  return macAddress ? { chassis, ipAddress, macAddress } : { chassis, ipAddress };
};

const gateway: Convert = (raw) => (raw === "none" ? null : raw);

const commaList: Convert = (raw) =>
  raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");

const NAME: FlagSpec = { flags: "--name <name>", field: "name", help: "display name" };
const DESCRIPTION: FlagSpec = { flags: "--description <text>", field: "description", help: "free text" };
const TENANT: FlagSpec = {
  flags: "--tenant <id>",
  field: "tenantId",
  help: "owning tenant (subnet, port, fip, snat: defaults to the parent's)",
};
const ADMIN: FlagSpec = {
  flags: "--admin-state <up|down>",
  field: "adminStateUp",
  help: "administrative state",
  convert: adminState,
};
const PORT_SECURITY: FlagSpec = {
  flags: "--port-security",
  field: "portSecurityEnabled",
  help: "port security on (the default)",
  bool: true,
  off: "port security off (no security groups, no address pairs)",
};

/** The flag table, per object kind. */
export const FIELD_FLAGS: Record<ObjectKind, FlagSpec[]> = {
  tenant: [NAME, DESCRIPTION],
  chassis: [
    { flags: "--hostname <name>", field: "hostname", help: "host name" },
    {
      flags: "--tunnel-ip <ip>",
      field: "tunnelIps",
      help: "tunnel endpoint address (repeat or comma-separate)",
      repeat: true,
      convert: commaList,
    },
    {
      flags: "--encap <type>",
      field: "encapTypes",
      help: "geneve|vxlan (repeat or comma-separate)",
      repeat: true,
      convert: commaList,
    },
    {
      flags: "--bridge-mapping <physnet=bridge>",
      field: "bridgeMappings",
      help: "physical network to OVS bridge (repeat)",
      repeat: true,
      convert: keyValue,
    },
  ],
  lswitch: [
    NAME,
    DESCRIPTION,
    TENANT,
    { flags: "--type <type>", field: "networkType", help: "geneve|vxlan|vlan|flat (default geneve)" },
    {
      flags: "--segmentation-id <n>",
      field: "segmentationId",
      help: "VNI or VLAN id (allocated when absent)",
      convert: int,
    },
    {
      flags: "--physical-network <name>",
      field: "physicalNetwork",
      help: "physical network of a vlan/flat network",
    },
    { flags: "--mtu <n>", field: "mtu", help: "MTU (default per type)", convert: int },
    {
      flags: "--external",
      field: "external",
      help: "external network (floating IPs, SNAT)",
      bool: true,
      off: "not external (the default)",
    },
    ADMIN,
    PORT_SECURITY,
  ],
  subnet: [
    NAME,
    DESCRIPTION,
    TENANT,
    { flags: "--network <network>", field: "networkId", help: "network (id or name)", ref: "lswitch" },
    { flags: "--cidr <cidr>", field: "cidr", help: "IPv4 or IPv6 prefix" },
    { flags: "--ip-version <4|6>", field: "ipVersion", help: "checked against --cidr", convert: int },
    {
      flags: "--gateway <ip|none>",
      field: "gatewayIp",
      help: "gateway address (default: first host; none: no gateway)",
      convert: gateway,
    },
    {
      flags: "--pool <start-end>",
      field: "allocationPools",
      help: "allocation pool (repeat)",
      repeat: true,
      convert: pool,
    },
    {
      flags: "--dhcp",
      field: "enableDhcp",
      help: "serve DHCP (the default)",
      bool: true,
      off: "do not serve DHCP",
    },
    {
      flags: "--dns <ip>",
      field: "dnsNameservers",
      help: "DNS server (repeat or comma-separate)",
      repeat: true,
      convert: commaList,
    },
    {
      flags: "--host-route <cidr,nexthop>",
      field: "hostRoutes",
      help: "host route pushed by DHCP (repeat)",
      repeat: true,
      convert: route,
    },
    {
      flags: "--dhcp-option <name=value>",
      field: "dhcpOptions",
      help: "DHCP option by name or number, e.g. mtu=1400 (repeat)",
      repeat: true,
      convert: keyValue,
    },
    { flags: "--ipv6-ra-mode <mode>", field: "ipv6RaMode", help: "slaac|dhcpv6-stateful|dhcpv6-stateless" },
    {
      flags: "--ipv6-address-mode <mode>",
      field: "ipv6AddressMode",
      help: "slaac|dhcpv6-stateful|dhcpv6-stateless",
    },
  ],
  lport: [
    NAME,
    DESCRIPTION,
    TENANT,
    { flags: "--network <network>", field: "networkId", help: "network (id or name)", ref: "lswitch" },
    { flags: "--mac <mac>", field: "macAddress", help: "MAC address (allocated when absent)" },
    {
      flags: "--ip <subnet[=ip]>",
      field: "fixedIps",
      help: "fixed IP on a subnet (address allocated when absent; repeat)",
      repeat: true,
    },
    { flags: "--chassis <name>", field: "chassis", help: "chassis the port is bound to" },
    {
      flags: "--security-group <sg>",
      field: "securityGroups",
      help: "security group, id or name (repeat or comma-separate)",
      repeat: true,
      convert: commaList,
      ref: "secgroup",
    },
    PORT_SECURITY,
    {
      flags: "--allowed-address-pair <ip|cidr[,mac]>",
      field: "allowedAddressPairs",
      help: "extra source address allowed by port security (repeat)",
      repeat: true,
      convert: addressPair,
    },
    {
      flags: "--dhcp-option <name=value>",
      field: "extraDhcpOptions",
      help: "extra DHCP option for this port (repeat)",
      repeat: true,
      convert: extraDhcp,
    },
    { flags: "--device-owner <owner>", field: "deviceOwner", help: "e.g. compute:nova" },
    { flags: "--device-id <id>", field: "deviceId", help: "e.g. the VM's id" },
    ADMIN,
  ],
  lrouter: [
    NAME,
    DESCRIPTION,
    TENANT,
    {
      flags: "--distributed",
      field: "distributed",
      help: "route on every chassis (the default)",
      bool: true,
      off: "route centrally",
    },
    {
      flags: "--route <cidr,nexthop>",
      field: "routes",
      help: "static route; nexthop on an attached subnet (repeat)",
      repeat: true,
      convert: route,
    },
    ADMIN,
  ],
  secgroup: [NAME, DESCRIPTION, TENANT],
  fip: [
    NAME,
    DESCRIPTION,
    TENANT,
    {
      flags: "--network <network>",
      field: "floatingNetworkId",
      help: "external network (id or name)",
      ref: "lswitch",
    },
    { flags: "--floating-ip <ip>", field: "floatingIpAddress", help: "address (allocated when absent)" },
    {
      flags: "--mac <mac>",
      field: "macAddress",
      help: "its MAC on the external network (allocated when absent)",
    },
    { flags: "--port <port>", field: "portId", help: "port to DNAT to (id or name)", ref: "lport" },
    { flags: "--fixed-ip <ip>", field: "fixedIpAddress", help: "which address of the port" },
    { flags: "--router <router>", field: "routerId", help: "router (id or name)", ref: "lrouter" },
  ],
  snat: [
    NAME,
    DESCRIPTION,
    TENANT,
    { flags: "--router <router>", field: "routerId", help: "router (id or name)", ref: "lrouter" },
    {
      flags: "--network <network>",
      field: "externalNetworkId",
      help: "external network (id or name)",
      ref: "lswitch",
    },
    { flags: "--external-ip <ip>", field: "externalIpAddress", help: "address (allocated when absent)" },
    {
      flags: "--mac <mac>",
      field: "macAddress",
      help: "its MAC on the external network (allocated when absent)",
    },
    { flags: "--enabled", field: "enabled", help: "SNAT on (the default)", bool: true, off: "SNAT off" },
    {
      flags: "--gateway-chassis <chassis>",
      field: "gatewayChassis",
      help: "chassis SNAT may run on, highest priority first (repeat or comma-separate)",
      repeat: true,
      convert: commaList,
    },
    {
      flags: "--chassis-address <chassis=ip[,mac]>",
      field: "chassisAddresses",
      help: "distributed SNAT: this chassis SNATs its own VMs to this address (repeat; MAC allocated when absent)",
      repeat: true,
      convert: chassisAddress,
    },
  ],
};

/** commander's attribute name for a flag: "--segmentation-id <n>" → "segmentationId". */
export function attrName(flags: string): string {
  const long = flags.split(/[ ,]+/).find((w) => w.startsWith("--"))!;
  return long.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), v];

/** Add the kind's flags to a create/update command. */
export function addFieldFlags(cmd: Command, kind: ObjectKind): Command {
  for (const f of FIELD_FLAGS[kind]) {
    if (f.bool) {
      cmd.option(f.flags, f.help);
      cmd.option(f.flags.replace(/^--/, "--no-"), f.off ?? "");
    } else if (f.repeat) cmd.option(f.flags, f.help, collect);
    else cmd.option(f.flags, f.help);
  }
  return cmd;
}

/** Which parent's tenant a new object inherits when `--tenant` is absent. */
const PARENT: Partial<Record<ObjectKind, { field: string; kind: ObjectKind }[]>> = {
  subnet: [{ field: "networkId", kind: "lswitch" }],
  lport: [{ field: "networkId", kind: "lswitch" }],
  fip: [
    { field: "portId", kind: "lport" },
    { field: "routerId", kind: "lrouter" },
  ],
  snat: [{ field: "routerId", kind: "lrouter" }],
};

async function resolveRef(ctx: FieldCtx, kind: ObjectKind, v: string): Promise<string> {
  try {
    return await ctx.api.resolve(kind, v, ctx.tenantId);
  } catch (err) {
    // An unknown reference is left as given: the API names the field and reason.
    if (err instanceof NotFoundError) return v;
    throw err;
  }
}

/**
 * The fields the flags set, as a patch for NbApi.create/update. `opts` is
 * commander's parsed options; `isCreate` lets a new object inherit its
 * parent's tenant.
 */
export async function fieldsFromFlags(
  kind: ObjectKind,
  key: string,
  opts: Obj,
  api: NbApi,
  isCreate: boolean,
): Promise<Obj> {
  const out: Obj = {};
  const tenantRaw = opts.tenant;
  const ctx: FieldCtx = { kind, key, api, tenantId: typeof tenantRaw === "string" ? tenantRaw : undefined };
  for (const f of FIELD_FLAGS[kind]) {
    const raw = opts[attrName(f.flags)];
    if (raw === undefined) continue;
    if (f.bool) {
      out[f.field] = raw === true;
      continue;
    }
    const convert = f.convert ?? ((s: string) => s);
    if (f.repeat) {
      const values = (raw as string[]).flatMap((r) => {
        const v = convert(r, f.field, ctx);
        return f.convert === commaList ? (v as string[]) : [v];
      });
      if (f.convert === keyValue) out[f.field] = Object.fromEntries(values as [string, string][]);
      else if (f.field === "fixedIps") out[f.field] = await fixedIps(values as string[], ctx);
      else if (f.ref)
        out[f.field] = await Promise.all((values as string[]).map((v) => resolveRef(ctx, f.ref!, v)));
      else out[f.field] = values;
    } else {
      const v = convert(raw as string, f.field, ctx);
      out[f.field] = f.ref && typeof v === "string" ? await resolveRef(ctx, f.ref, v) : v;
    }
  }
  if (isCreate && out.tenantId === undefined) {
    for (const p of PARENT[kind] ?? []) {
      const parentKey = out[p.field];
      if (typeof parentKey !== "string") continue;
      const parent = await api.find(p.kind, parentKey);
      if (!parent) fail(ctx, p.field, `${KINDS[p.kind].noun} ${parentKey} does not exist`);
      const t = (parent!.value as Obj).tenantId;
      if (typeof t === "string") {
        out.tenantId = t;
        break;
      }
    }
  }
  return out;
}

async function fixedIps(values: string[], ctx: FieldCtx): Promise<Obj[]> {
  const out: Obj[] = [];
  for (const v of values) {
    const eq = v.indexOf("=");
    const subnet = eq < 0 ? v : v.slice(0, eq);
    const ip = eq < 0 ? undefined : v.slice(eq + 1);
    if (subnet === "") fail(ctx, "fixedIps", `"${v}" is not SUBNET[=IP]`);
    const subnetId = await resolveRef(ctx, "subnet", subnet);
    out.push(ip === undefined || ip === "" ? { subnetId } : { subnetId, ipAddress: ip });
  }
  return out;
}
