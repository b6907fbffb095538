/**
 * The northbound object schemas, one zod schema per kind, with the rules that
 * need only the object itself (ranges, formats, field combinations). Rules
 * that look at other objects (references, overlaps, addresses in use) live in
 * the API layer (src/nb/api), which runs them under the tenant lock.
 *
 * Names follow Neutron's (network_type → networkType, fixed_ips → fixedIps,
 * allocation_pools → allocationPools …) in camelCase, so an OpenStack plugin
 * maps fields one to one. Fields the API allocates when absent (port MAC and
 * fixed IPs, segmentation id, gateway, pools, floating IP, the MACs of
 * floating IPs and SNAT gateways) are optional here and always present in
 * stored objects.
 */
import { z } from "zod";
import {
  canonicalCidr,
  canonicalIp,
  cidrContains,
  hostRange,
  ipToBig,
  ipVersion,
  isCidr,
  isIp,
  parseCidr,
} from "./ip.js";

export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;
export const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

const idField = z
  .string()
  .regex(ID_PATTERN, "must be 1-128 characters of A-Z a-z 0-9 . _ : @ - starting with a letter or digit");
const ip = z
  .string()
  .refine(isIp, "is not an IPv4 or IPv6 address")
  .transform((s) => canonicalIp(s));
const cidr = z
  .string()
  .refine(isCidr, "is not a CIDR (address/prefix)")
  .transform((s) => canonicalCidr(s));
const mac = z
  .string()
  .transform((s) => s.toLowerCase().replaceAll("-", ":"))
  .refine((s) => MAC_PATTERN.test(s), "is not a MAC address (xx:xx:xx:xx:xx:xx)")
  .refine((s) => (parseInt(s.slice(0, 2), 16) & 1) === 0, "is a multicast MAC address");
const nameField = z.string().max(255).default("");
const descriptionField = z.string().max(1024).default("");

const tenantOwned = {
  id: idField,
  tenantId: idField,
  name: nameField,
  description: descriptionField,
};

// ---- chassis ---------------------------------------------------------------

export const ENCAP_TYPES = ["geneve", "vxlan"] as const;

export const chassisSchema = z.strictObject({
  name: idField,
  hostname: z.string().max(255).default(""),
  tunnelIps: z.array(ip).min(1, "needs at least one tunnel IP"),
  encapTypes: z.array(z.enum(ENCAP_TYPES)).min(1).default(["geneve", "vxlan"]),
  /** physical network → OVS bridge, for vlan/flat networks */
  bridgeMappings: z.record(z.string(), z.string()).default({}),
  /** what the agent reported about its NICs (offload capabilities) */
  capabilities: z.record(z.string(), z.unknown()).default({}),
  /** last heartbeat from the agent, ms since the epoch */
  heartbeat: z.number().int().nonnegative().optional(),
});

// ---- tenant ----------------------------------------------------------------

export const tenantSchema = z.strictObject({
  id: idField,
  name: nameField,
  description: descriptionField,
});

// ---- logical switch (network) -------------------------------------------------

export const NETWORK_TYPES = ["vxlan", "geneve", "vlan", "flat"] as const;
export type NetworkType = (typeof NETWORK_TYPES)[number];

/** Segmentation id ranges per network type (flat has none). */
export const SEGMENTATION_RANGES: Record<NetworkType, [number, number] | undefined> = {
  vxlan: [1, 16_777_215],
  geneve: [1, 16_777_215],
  vlan: [1, 4094],
  flat: undefined,
};

/** Default MTU per type: 1500 minus the encapsulation overhead (VXLAN 50, Geneve 58 with options). */
export const DEFAULT_MTU: Record<NetworkType, number> = { vxlan: 1450, geneve: 1442, vlan: 1500, flat: 1500 };

export const networkSchema = z
  .strictObject({
    ...tenantOwned,
    networkType: z.enum(NETWORK_TYPES).default("geneve"),
    segmentationId: z.number().int().optional(),
    physicalNetwork: z.string().min(1).max(64).optional(),
    mtu: z.number().int().min(68, "must be at least 68").max(9216, "must be at most 9216").optional(),
    external: z.boolean().default(false),
    adminStateUp: z.boolean().default(true),
    portSecurityEnabled: z.boolean().default(true),
  })
  .superRefine((n, ctx) => {
    const range = SEGMENTATION_RANGES[n.networkType];
    if (n.segmentationId !== undefined) {
      if (!range)
        ctx.addIssue({
          code: "custom",
          path: ["segmentationId"],
          message: `a ${n.networkType} network has no segmentation id`,
        });
      else if (n.segmentationId < range[0] || n.segmentationId > range[1]) {
        ctx.addIssue({
          code: "custom",
          path: ["segmentationId"],
          message: `${n.segmentationId} is outside ${range[0]}..${range[1]} for ${n.networkType}`,
        });
      }
    }
    const physical = n.networkType === "vlan" || n.networkType === "flat";
    if (physical && !n.physicalNetwork) {
      ctx.addIssue({
        code: "custom",
        path: ["physicalNetwork"],
        message: `is required for a ${n.networkType} network`,
      });
    }
    if (!physical && n.physicalNetwork) {
      ctx.addIssue({
        code: "custom",
        path: ["physicalNetwork"],
        message: `must not be set for a ${n.networkType} network`,
      });
    }
  });

// ---- subnet ------------------------------------------------------------------

export const IPV6_MODES = ["slaac", "dhcpv6-stateful", "dhcpv6-stateless"] as const;

const pool = z.strictObject({ start: ip, end: ip });
const hostRoute = z.strictObject({ destination: cidr, nexthop: ip });

export const subnetSchema = z
  .strictObject({
    ...tenantOwned,
    networkId: idField,
    cidr,
    ipVersion: z.union([z.literal(4), z.literal(6)]).optional(),
    /** null = no gateway; absent = first host address */
    gatewayIp: ip.nullable().optional(),
    allocationPools: z.array(pool).optional(),
    enableDhcp: z.boolean().default(true),
    /** DHCP options by name or number (e.g. "domain-name", "26") */
    dhcpOptions: z.record(z.string(), z.string()).default({}),
    dnsNameservers: z.array(ip).default([]),
    hostRoutes: z.array(hostRoute).default([]),
    ipv6RaMode: z.enum(IPV6_MODES).optional(),
    ipv6AddressMode: z.enum(IPV6_MODES).optional(),
  })
  .superRefine((s, ctx) => {
    if (!isCidr(s.cidr)) return;
    const c = parseCidr(s.cidr);
    if (s.ipVersion !== undefined && s.ipVersion !== c.version) {
      ctx.addIssue({
        code: "custom",
        path: ["ipVersion"],
        message: `is ${s.ipVersion} but cidr ${s.cidr} is IPv${c.version}`,
      });
    }
    if (c.version === 4 && c.prefix > 30)
      ctx.addIssue({
        code: "custom",
        path: ["cidr"],
        message: "an IPv4 subnet needs a prefix of /30 or shorter",
      });
    if (c.version === 6 && c.prefix > 126)
      ctx.addIssue({
        code: "custom",
        path: ["cidr"],
        message: "an IPv6 subnet needs a prefix of /126 or shorter",
      });
    const hosts = hostRange(s.cidr);
    if (s.gatewayIp) {
      const g = ipToBig(s.gatewayIp);
      if (!cidrContains(c, s.gatewayIp) || g < hosts.first || g > hosts.last) {
        ctx.addIssue({
          code: "custom",
          path: ["gatewayIp"],
          message: `${s.gatewayIp} is not a host address of ${s.cidr}`,
        });
      }
    }
    const pools = s.allocationPools ?? [];
    pools.forEach((p, i) => {
      for (const end of ["start", "end"] as const) {
        const a = p[end];
        if (!cidrContains(c, a) || ipToBig(a) < hosts.first || ipToBig(a) > hosts.last) {
          ctx.addIssue({
            code: "custom",
            path: ["allocationPools", i, end],
            message: `${a} is not a host address of ${s.cidr}`,
          });
        }
      }
      if (ipVersion(p.start) === ipVersion(p.end) && ipToBig(p.start) > ipToBig(p.end)) {
        ctx.addIssue({
          code: "custom",
          path: ["allocationPools", i],
          message: `start ${p.start} is after end ${p.end}`,
        });
      }
      if (s.gatewayIp && cidrContains(c, s.gatewayIp) && ipVersion(p.start) === c.version) {
        const g = ipToBig(s.gatewayIp);
        if (g >= ipToBig(p.start) && g <= ipToBig(p.end)) {
          ctx.addIssue({
            code: "custom",
            path: ["allocationPools", i],
            message: `contains the gateway ${s.gatewayIp}`,
          });
        }
      }
      for (let j = 0; j < i; j++) {
        const q = pools[j]!;
        if (ipToBig(p.start) <= ipToBig(q.end) && ipToBig(q.start) <= ipToBig(p.end)) {
          ctx.addIssue({
            code: "custom",
            path: ["allocationPools", i],
            message: `overlaps allocationPools[${j}]`,
          });
        }
      }
    });
    s.dnsNameservers.forEach((d, i) => {
      if (ipVersion(d) !== c.version && c.version === 4) {
        ctx.addIssue({
          code: "custom",
          path: ["dnsNameservers", i],
          message: `${d} is not IPv4 like the subnet`,
        });
      }
    });
    s.hostRoutes.forEach((r, i) => {
      if (ipVersion(r.nexthop) !== c.version || parseCidr(r.destination).version !== c.version) {
        ctx.addIssue({
          code: "custom",
          path: ["hostRoutes", i],
          message: `is not IPv${c.version} like the subnet`,
        });
      }
    });
    if (c.version === 4 && (s.ipv6RaMode || s.ipv6AddressMode)) {
      ctx.addIssue({
        code: "custom",
        path: [s.ipv6RaMode ? "ipv6RaMode" : "ipv6AddressMode"],
        message: "is only valid on an IPv6 subnet",
      });
    }
    if (s.ipv6RaMode && s.ipv6AddressMode && s.ipv6RaMode !== s.ipv6AddressMode) {
      ctx.addIssue({
        code: "custom",
        path: ["ipv6AddressMode"],
        message: `must equal ipv6RaMode (${s.ipv6RaMode}) when both are set`,
      });
    }
    // Neutron's combinations: RAs from our router need the address mode that says how hosts use them,
    // either mode needs DHCP enabled (the RA's M/O flags promise a DHCPv6 server), and SLAAC or
    // stateless addresses are EUI-64, so only in a /64.
    if (c.version === 6 && s.ipv6RaMode && !s.ipv6AddressMode) {
      ctx.addIssue({
        code: "custom",
        path: ["ipv6AddressMode"],
        message: `is required when ipv6RaMode is set (use ${s.ipv6RaMode})`,
      });
    }
    if (c.version === 6 && (s.ipv6RaMode || s.ipv6AddressMode) && !s.enableDhcp) {
      ctx.addIssue({
        code: "custom",
        path: ["enableDhcp"],
        message: "must be true when ipv6RaMode or ipv6AddressMode is set",
      });
    }
    const eui64 = s.ipv6AddressMode ?? s.ipv6RaMode;
    if (c.version === 6 && (eui64 === "slaac" || eui64 === "dhcpv6-stateless") && c.prefix !== 64) {
      ctx.addIssue({
        code: "custom",
        path: ["cidr"],
        message: `must be a /64 for ${eui64} (addresses are EUI-64), not /${c.prefix}`,
      });
    }
  });

// ---- logical port ----------------------------------------------------------------

export const fixedIpSchema = z.strictObject({ subnetId: idField, ipAddress: ip.optional() });
const addressPair = z.strictObject({
  ipAddress: z
    .string()
    .refine((s) => isIp(s) || isCidr(s), "is not an IP address or CIDR")
    .transform((s) => (isIp(s) ? canonicalIp(s) : canonicalCidr(s))),
  macAddress: mac.optional(),
});
const extraDhcpOpt = z.strictObject({
  name: z.string().min(1).max(64),
  value: z.string().max(1024),
  ipVersion: z.union([z.literal(4), z.literal(6)]).default(4),
});

export const DEVICE_OWNER_ROUTER_INTERFACE = "network:router_interface";

export const portSchema = z
  .strictObject({
    ...tenantOwned,
    networkId: idField,
    macAddress: mac.optional(),
    /** absent = one address from the first IPv4 and the first IPv6 subnet of the network */
    fixedIps: z.array(fixedIpSchema).optional(),
    deviceOwner: z.string().max(255).default(""),
    deviceId: z.string().max(255).default(""),
    /** chassis the port is bound to (the agent on that chassis wires it) */
    chassis: z.string().max(128).optional(),
    adminStateUp: z.boolean().default(true),
    portSecurityEnabled: z.boolean().default(true),
    allowedAddressPairs: z.array(addressPair).default([]),
    securityGroups: z.array(idField).default([]),
    extraDhcpOptions: z.array(extraDhcpOpt).default([]),
  })
  .superRefine((p, ctx) => {
    if (!p.portSecurityEnabled && p.securityGroups.length > 0) {
      ctx.addIssue({
        code: "custom",
        path: ["securityGroups"],
        message: "must be empty when portSecurityEnabled is false",
      });
    }
    if (!p.portSecurityEnabled && p.allowedAddressPairs.length > 0) {
      ctx.addIssue({
        code: "custom",
        path: ["allowedAddressPairs"],
        message: "must be empty when portSecurityEnabled is false",
      });
    }
    const seen = new Set<string>();
    (p.fixedIps ?? []).forEach((f, i) => {
      if (f.ipAddress && seen.has(f.ipAddress)) {
        ctx.addIssue({
          code: "custom",
          path: ["fixedIps", i, "ipAddress"],
          message: `${f.ipAddress} is listed twice`,
        });
      }
      if (f.ipAddress) seen.add(f.ipAddress);
    });
  });

// ---- logical router, router interface, static route --------------------------------

export const staticRouteSchema = z.strictObject({ destination: cidr, nexthop: ip });

/** A router interface: the router's leg on one subnet, through a port it owns. */
export const routerInterfaceSchema = z.strictObject({
  subnetId: idField,
  portId: idField,
  networkId: idField,
  /** the interface address (the subnet's gateway by default) and the subnet's prefix */
  ipAddress: ip,
  cidr,
  macAddress: mac,
});

export const routerSchema = z.strictObject({
  ...tenantOwned,
  adminStateUp: z.boolean().default(true),
  /** distributed (every chassis routes locally), as in Dragonflow */
  distributed: z.boolean().default(true),
  routes: z.array(staticRouteSchema).default([]),
  interfaces: z.array(routerInterfaceSchema).default([]),
});

// ---- security groups ------------------------------------------------------------------

export const DIRECTIONS = ["ingress", "egress"] as const;
export const ETHERTYPES = ["IPv4", "IPv6"] as const;
/** Protocol names accepted in rules, with their IANA numbers. */
export const PROTOCOLS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 };
const PORT_PROTOCOLS = new Set([6, 17, 132]);
const ICMP_PROTOCOLS = new Set([1, 58]);

export const secgroupRuleSchema = z
  .strictObject({
    id: idField,
    direction: z.enum(DIRECTIONS),
    ethertype: z.enum(ETHERTYPES).default("IPv4"),
    /** name (tcp, udp, icmp, icmpv6, sctp) or IANA number; absent = any */
    protocol: z
      .union([z.enum(Object.keys(PROTOCOLS) as [string, ...string[]]), z.number().int().min(0).max(255)])
      .optional(),
    /** port range for tcp/udp/sctp; ICMP type (min) and code (max) for icmp */
    portRangeMin: z.number().int().min(0).max(65535).optional(),
    portRangeMax: z.number().int().min(0).max(65535).optional(),
    remoteIpPrefix: cidr.optional(),
    remoteGroupId: idField.optional(),
  })
  .superRefine((r, ctx) => {
    const proto = typeof r.protocol === "string" ? PROTOCOLS[r.protocol] : r.protocol;
    const hasPorts = r.portRangeMin !== undefined || r.portRangeMax !== undefined;
    if (hasPorts && (proto === undefined || (!PORT_PROTOCOLS.has(proto) && !ICMP_PROTOCOLS.has(proto)))) {
      ctx.addIssue({
        code: "custom",
        path: ["portRangeMin"],
        message: "a port range needs protocol tcp, udp, sctp (or icmp type/code)",
      });
    }
    if (
      proto !== undefined &&
      PORT_PROTOCOLS.has(proto) &&
      r.portRangeMin !== undefined &&
      r.portRangeMax !== undefined &&
      r.portRangeMin > r.portRangeMax
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["portRangeMax"],
        message: `${r.portRangeMax} is below portRangeMin ${r.portRangeMin}`,
      });
    }
    if (proto !== undefined && ICMP_PROTOCOLS.has(proto)) {
      // a code alone would be matched as no ICMP field at all: every message allowed (Neutron refuses it too)
      if (r.portRangeMax !== undefined && r.portRangeMin === undefined)
        ctx.addIssue({
          code: "custom",
          path: ["portRangeMax"],
          message: "ICMP code given without an ICMP type",
        });
      if ((r.portRangeMin ?? 0) > 255)
        ctx.addIssue({ code: "custom", path: ["portRangeMin"], message: "ICMP type must be 0..255" });
      if ((r.portRangeMax ?? 0) > 255)
        ctx.addIssue({ code: "custom", path: ["portRangeMax"], message: "ICMP code must be 0..255" });
    }
    if (r.protocol === "icmp" && r.ethertype === "IPv6")
      ctx.addIssue({ code: "custom", path: ["protocol"], message: "use icmpv6 with ethertype IPv6" });
    if (r.protocol === "icmpv6" && r.ethertype === "IPv4")
      ctx.addIssue({ code: "custom", path: ["protocol"], message: "icmpv6 needs ethertype IPv6" });
    if (r.remoteIpPrefix && r.remoteGroupId) {
      ctx.addIssue({
        code: "custom",
        path: ["remoteGroupId"],
        message: "set remoteIpPrefix or remoteGroupId, not both",
      });
    }
    if (
      r.remoteIpPrefix &&
      isCidr(r.remoteIpPrefix) &&
      `IPv${parseCidr(r.remoteIpPrefix).version}` !== r.ethertype
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["remoteIpPrefix"],
        message: `${r.remoteIpPrefix} does not match ethertype ${r.ethertype}`,
      });
    }
  });

export const secgroupSchema = z
  .strictObject({
    ...tenantOwned,
    rules: z.array(secgroupRuleSchema).default([]),
  })
  .superRefine((g, ctx) => {
    const ids = new Set<string>();
    g.rules.forEach((r, i) => {
      if (ids.has(r.id))
        ctx.addIssue({ code: "custom", path: ["rules", i, "id"], message: `rule id ${r.id} is used twice` });
      ids.add(r.id);
    });
  });

// ---- floating IP and SNAT gateway ----------------------------------------------------------

export const floatingIpSchema = z.strictObject({
  ...tenantOwned,
  /** the external network the address comes from */
  floatingNetworkId: idField,
  floatingIpAddress: ip.optional(),
  /**
   * the address's own MAC on the external network (allocated when absent): the
   * chassis hosting the port answers ARP with it and sends from it, so no two
   * chassis ever send from one MAC (OVN's external_mac)
   */
  macAddress: mac.optional(),
  portId: idField.optional(),
  fixedIpAddress: ip.optional(),
  routerId: idField.optional(),
});

/** Gateway chassis candidates a router's SNAT may run on (OVN keeps a handful per router). */
export const MAX_GATEWAY_CHASSIS = 16;
/** Chassis with an SNAT address of their own, per router. */
export const MAX_CHASSIS_ADDRESSES = 4096;

/**
 * A router's gateway on an external network (Neutron's external_gateway_info):
 * its address and MAC there, whether VMs without a floating IP are SNATed to
 * that address, and the chassis that may do it.
 */
export const snatSchema = z
  .strictObject({
    ...tenantOwned,
    routerId: idField,
    externalNetworkId: idField,
    externalIpAddress: ip.optional(),
    /** the gateway's MAC on the external network (allocated when absent) */
    macAddress: mac.optional(),
    enabled: z.boolean().default(true),
    /**
     * where SNAT runs, highest priority first: the first of them whose agent is
     * alive; empty = nowhere (floating IPs still work)
     */
    gatewayChassis: z
      .array(z.string().regex(ID_PATTERN, "is not a chassis name"))
      .max(MAX_GATEWAY_CHASSIS, `at most ${MAX_GATEWAY_CHASSIS} gateway chassis`)
      .default([]),
    /**
     * distributed SNAT: each chassis listed SNATs the router's traffic from its
     * own VMs to an address of its own on the external network (with a MAC of
     * its own, allocated when absent), instead of sending it to the gateway
     * chassis; VMs on other chassis still go through the gateway
     */
    chassisAddresses: z
      .array(
        z.strictObject({
          chassis: z.string().regex(ID_PATTERN, "is not a chassis name"),
          ipAddress: ip,
          macAddress: mac.optional(),
        }),
      )
      .max(MAX_CHASSIS_ADDRESSES, `at most ${MAX_CHASSIS_ADDRESSES} chassis addresses`)
      .default([]),
  })
  .superRefine((g, ctx) => {
    g.gatewayChassis.forEach((c, i) => {
      if (g.gatewayChassis.indexOf(c) !== i)
        ctx.addIssue({ code: "custom", path: ["gatewayChassis", i], message: `${c} is listed twice` });
    });
    const chassis = g.chassisAddresses.map((a) => a.chassis);
    const ips = g.chassisAddresses.map((a) => a.ipAddress);
    g.chassisAddresses.forEach((a, i) => {
      if (chassis.indexOf(a.chassis) !== i)
        ctx.addIssue({
          code: "custom",
          path: ["chassisAddresses", i, "chassis"],
          message: `${a.chassis} is listed twice`,
        });
      if (ips.indexOf(a.ipAddress) !== i || a.ipAddress === g.externalIpAddress)
        ctx.addIssue({
          code: "custom",
          path: ["chassisAddresses", i, "ipAddress"],
          message: `${a.ipAddress} is used twice by this gateway`,
        });
      if (ipVersion(a.ipAddress) !== 4)
        ctx.addIssue({ code: "custom", path: ["chassisAddresses", i, "ipAddress"], message: "must be IPv4" });
    });
  });

// ---- types ------------------------------------------------------------------------------------

type Filled<T, K extends keyof T> = Omit<T, K> & { [P in K]-?: Exclude<T[P], undefined> };

export type Chassis = z.output<typeof chassisSchema>;
export type Tenant = z.output<typeof tenantSchema>;
export type Network = Filled<z.output<typeof networkSchema>, "mtu">;
export type Subnet = Filled<z.output<typeof subnetSchema>, "ipVersion" | "allocationPools"> & {
  gatewayIp: string | null;
};
export type FixedIp = { subnetId: string; ipAddress: string };
export type Port = Filled<Omit<z.output<typeof portSchema>, "fixedIps">, "macAddress"> & {
  fixedIps: FixedIp[];
};
export type StaticRoute = z.output<typeof staticRouteSchema>;
export type RouterInterface = z.output<typeof routerInterfaceSchema>;
export type Router = z.output<typeof routerSchema>;
export type SecgroupRule = z.output<typeof secgroupRuleSchema>;
export type Secgroup = z.output<typeof secgroupSchema>;
export type FloatingIp = Filled<z.output<typeof floatingIpSchema>, "floatingIpAddress" | "macAddress">;
export type ChassisAddress = Filled<z.output<typeof snatSchema>["chassisAddresses"][number], "macAddress">;
export type SnatGateway = Omit<
  Filled<z.output<typeof snatSchema>, "externalIpAddress" | "macAddress">,
  "chassisAddresses"
> & { chassisAddresses: ChassisAddress[] };
