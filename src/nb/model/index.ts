/**
 * The NB model vocabulary, declared once: every object kind with its store
 * kind name, its CLI noun, the field that is its key, whether it belongs to a
 * tenant, and its schema. The API, the CLI, `nb apply` and the agents' sync
 * derive everything from this table.
 *
 *   store kind  noun       key    tenant  what
 *   chassis     chassis    name   no      a compute node running the agent
 *   tenant      tenant     id     —       a project
 *   lswitch     network    id     yes     logical switch (vxlan/geneve/vlan/flat)
 *   subnet      subnet     id     yes     IPv4/IPv6 subnet of one network
 *   lport       port       id     yes     logical port (VM NIC, router leg, …)
 *   lrouter     router     id     yes     router with its interfaces and static routes
 *   secgroup    secgroup   id     yes     security group with its rules
 *   fip         fip        id     yes     floating IP (DNAT to a port)
 *   snat        snat       id     yes     SNAT gateway of a router on an external network
 *
 * IPAM reservations (unique resources, guarded by create-only puts so two
 * writers can never take the same one):
 *   ipam.seg  "<type>/<physnet or ->/<segmentation id>"   value { owner }
 *   ipam.ip   "<network id>/<address>"                     value { owner }
 *   ipam.mac  "<network id>/<mac>"                         value { owner }
 */
import type { z } from "zod";
import { ValidationError } from "./errors.js";
import {
  chassisSchema,
  floatingIpSchema,
  networkSchema,
  portSchema,
  routerSchema,
  secgroupSchema,
  snatSchema,
  subnetSchema,
  tenantSchema,
} from "./schemas.js";

export * from "./errors.js";
export * from "./schemas.js";

export interface KindInfo {
  kind: string;
  noun: string;
  keyField: "id" | "name";
  tenantOwned: boolean;
  schema: z.ZodType;
}

export const KINDS = {
  chassis: { kind: "chassis", noun: "chassis", keyField: "name", tenantOwned: false, schema: chassisSchema },
  tenant: { kind: "tenant", noun: "tenant", keyField: "id", tenantOwned: false, schema: tenantSchema },
  lswitch: { kind: "lswitch", noun: "network", keyField: "id", tenantOwned: true, schema: networkSchema },
  subnet: { kind: "subnet", noun: "subnet", keyField: "id", tenantOwned: true, schema: subnetSchema },
  lport: { kind: "lport", noun: "port", keyField: "id", tenantOwned: true, schema: portSchema },
  lrouter: { kind: "lrouter", noun: "router", keyField: "id", tenantOwned: true, schema: routerSchema },
  secgroup: { kind: "secgroup", noun: "secgroup", keyField: "id", tenantOwned: true, schema: secgroupSchema },
  fip: { kind: "fip", noun: "fip", keyField: "id", tenantOwned: true, schema: floatingIpSchema },
  snat: { kind: "snat", noun: "snat", keyField: "id", tenantOwned: true, schema: snatSchema },
} as const satisfies Record<string, KindInfo>;

export type ObjectKind = keyof typeof KINDS;
export const OBJECT_KINDS = Object.keys(KINDS) as ObjectKind[];

export const IPAM_KINDS = { seg: "ipam.seg", ip: "ipam.ip", mac: "ipam.mac" } as const;

export function isObjectKind(k: string): k is ObjectKind {
  return Object.hasOwn(KINDS, k);
}

export function kindByNoun(noun: string): ObjectKind | undefined {
  return OBJECT_KINDS.find((k) => KINDS[k].noun === noun || k === noun);
}

export function keyOf(kind: ObjectKind, value: Record<string, unknown>): string {
  const v = value[KINDS[kind].keyField];
  return typeof v === "string" ? v : "";
}

function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out === "" ? String(p) : `.${String(p)}`;
  return out;
}

/** Parse `input` as `kind`; the first problem becomes a ValidationError naming object, field and reason. */
export function parseObject<T>(kind: ObjectKind, input: unknown, key?: string): T {
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new ValidationError(kind, key ?? "", "", "must be an object");
  }
  const r = KINDS[kind].schema.safeParse(input);
  if (r.success) return r.data as T;
  const k = key ?? keyOf(kind, input as Record<string, unknown>);
  const issue = r.error.issues[0]!;
  if (issue.code === "unrecognized_keys") {
    const f = fieldPath([...issue.path, issue.keys[0]!]);
    throw new ValidationError(kind, k, f, "is not a field of this object");
  }
  const reason = /received undefined/.test(issue.message) ? "is required" : issue.message;
  throw new ValidationError(kind, k, fieldPath(issue.path), reason);
}
