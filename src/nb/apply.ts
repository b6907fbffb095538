/**
 * `nb apply`: make the NB model match a topology file (tenants, chassis,
 * networks, subnets, routers with their interfaces and routes, security
 * groups with rules, ports, floating IPs, SNAT gateways).
 *
 * Two halves, so the interesting part is testable without a store:
 *   - `planApply(topology, state, opts)` is pure: from the parsed file and the
 *     objects currently stored it computes the changes (`+ network net-a`,
 *     `~ port vm1 (macAddress)`, `- port p9`) and the ordered API calls that
 *     make them. Every object is validated by its schema, every reference is
 *     checked against what will exist afterwards, and immutable fields are
 *     compared — so a bad file is refused before anything is written.
 *   - `executePlan(api, plan)` performs the calls through NbApi, with
 *     compare-and-swap on the versions the plan was computed from: a writer
 *     that raced the apply makes it stop with a ConflictError instead of
 *     overwriting.
 *
 * Execution is one NbApi batch (see api.ts): every lock the plan needs
 * (`plan.locks`: `tenant/<id>` per tenant it writes, `tenant`/`chassis` for
 * those kinds) is taken once, in sorted order, for the whole apply; each call
 * reads the store through the batch's view (each kind read once) and is
 * validated exactly as a call on its own is — schema, references, immutable
 * fields, IPAM — and its writes carry the same guards: the version the plan
 * saw (or the previous call produced) on every object, create-only on every
 * reservation. The calls are committed in plan order as transactions of whole
 * calls (at most BATCH_MAX_OPS ops each). When transaction k of m fails, 1..k-1
 * are committed and nothing of k or later is: a lost guard (a racing writer)
 * throws ConflictError, a store failure StoreError. When a call fails
 * validation, every call before it is committed first, then the error is
 * thrown (or, should that commit fail, the commit's error). Either way `onChange` has been called for exactly the changes whose
 * every call is committed, and the CLI prints "stopped after N of M changes".
 * `{ perCall: true }` runs the calls one at a time instead (a lock, reads and
 * a transaction each), the way apply worked before batching; the benchmark
 * compares the two.
 *
 * A stored object that is malformed (api.ts) cannot be compared: `readState`
 * reports such objects, the plan refuses a file that lists one or refers to
 * one, and otherwise leaves them alone (never updated or pruned).
 *
 * Values the file gives (segmentation ids, addresses, MACs) are the plan's
 * `claims`: the batch allocates none of them to an object listed before the
 * one that gives it, so listing order never turns a valid file into an
 * "already used" error (one call at a time, too).
 *
 * Comparison is declarative: a field the file leaves out means the model's
 * default — except the fields the API allocates (segmentation id, MTU,
 * gateway, pools, MACs, addresses) or an agent reports (chassis heartbeat and
 * capabilities), which are compared only when the file gives them. Security
 * group rules match by content (ids optional), router interfaces by subnet.
 * Ports owned by router interfaces are the routers' business and never
 * listed, compared or pruned. With `prune`, objects of the tenants the file
 * names that the file does not list are deleted; chassis are never pruned.
 *
 * Call order: leaf deletes first (floating IPs, SNAT, ports: frees addresses
 * that new objects may reuse), then creates and updates in dependency order,
 * then the remaining deletes in reverse dependency order.
 */
import { z } from "zod";
import {
  IMMUTABLE,
  type MalformedObject,
  type NbApi,
  type NbBatch,
  type Versioned,
  lockName,
  reservationId,
  reservationIds,
} from "./api.js";
import {
  DEVICE_OWNER_ROUTER_INTERFACE,
  ID_PATTERN,
  IPAM_KINDS,
  KINDS,
  type ObjectKind,
  ValidationError,
  parseObject,
} from "./model/index.js";
import { canonicalIp, isIp } from "./model/ip.js";

type Obj = Record<string, unknown>;

/** Sections of a topology file, in dependency (create) order. */
export const SECTIONS = [
  ["tenants", "tenant"],
  ["chassis", "chassis"],
  ["secgroups", "secgroup"],
  ["networks", "lswitch"],
  ["subnets", "subnet"],
  ["routers", "lrouter"],
  ["ports", "lport"],
  ["fips", "fip"],
  ["snats", "snat"],
] as const satisfies readonly (readonly [string, ObjectKind])[];

/** Fields the API fills in when absent, or an agent reports: compared only when the file gives them. */
const ALLOCATED: Partial<Record<ObjectKind, string[]>> = {
  chassis: ["heartbeat", "capabilities"],
  lswitch: ["segmentationId", "mtu"],
  subnet: ["gatewayIp", "allocationPools", "ipVersion"],
  lport: ["macAddress", "fixedIps"],
  fip: ["floatingIpAddress", "fixedIpAddress", "macAddress"],
  snat: ["externalIpAddress", "macAddress"],
};

/** References checked at plan time: field (or list of ids) → kind it names. */
const REFS: Partial<Record<ObjectKind, { field: string; kind: ObjectKind; list?: boolean }[]>> = {
  subnet: [{ field: "networkId", kind: "lswitch" }],
  lport: [
    { field: "networkId", kind: "lswitch" },
    { field: "securityGroups", kind: "secgroup", list: true },
  ],
  fip: [
    { field: "floatingNetworkId", kind: "lswitch" },
    { field: "portId", kind: "lport" },
    { field: "routerId", kind: "lrouter" },
  ],
  snat: [
    { field: "routerId", kind: "lrouter" },
    { field: "externalNetworkId", kind: "lswitch" },
  ],
};

// ---- the file ------------------------------------------------------------------

const entries = z.array(z.union([z.string(), z.record(z.string(), z.unknown())])).default([]);

export const topologySchema = z.strictObject({
  /** default tenantId of every tenant-owned object; also a tenant in prune scope */
  tenant: z.string().regex(ID_PATTERN).optional(),
  tenants: entries,
  chassis: entries,
  secgroups: entries,
  networks: entries,
  subnets: entries,
  routers: entries,
  ports: entries,
  fips: entries,
  snats: entries,
});

export type TopologyInput = z.input<typeof topologySchema>;

export interface DesiredInterface {
  subnetId: string;
  ipAddress?: string;
}

export interface DesiredObject {
  kind: ObjectKind;
  key: string;
  /** schema-parsed, defaults filled */
  value: Obj;
  /** the fields the file gave */
  given: Set<string>;
  /** routers only */
  interfaces?: DesiredInterface[];
}

export interface Topology {
  /** tenants the file names: the prune scope */
  tenants: string[];
  objects: DesiredObject[];
}

/** Validate a parsed YAML/JSON document as a topology; errors name object, field and reason. */
export function parseTopology(doc: unknown, source = "topology"): Topology {
  const r = topologySchema.safeParse(doc ?? {});
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const field =
      issue.code === "unrecognized_keys" ? String(issue.keys[0]) : issue.path.map((p) => String(p)).join(".");
    const reason =
      issue.code === "unrecognized_keys"
        ? `is not a section (${["tenant", ...SECTIONS.map((s) => s[0])].join(", ")})`
        : issue.message;
    throw new ValidationError("topology", source, field, reason);
  }
  const t = r.data;
  const objects: DesiredObject[] = [];
  const tenants = new Set<string>(t.tenant ? [t.tenant] : []);
  for (const [section, kind] of SECTIONS) {
    const seen = new Set<string>();
    for (const [i, raw] of t[section].entries()) {
      const input: Obj = typeof raw === "string" ? { [KINDS[kind].keyField]: raw } : { ...raw };
      if (KINDS[kind].tenantOwned && input.tenantId === undefined && t.tenant) input.tenantId = t.tenant;
      const keyVal = input[KINDS[kind].keyField];
      if (typeof keyVal !== "string" || keyVal === "") {
        throw new ValidationError(
          kind,
          `${section}[${i}]`,
          KINDS[kind].keyField,
          "is required in a topology file",
        );
      }
      if (seen.has(keyVal))
        throw new ValidationError(kind, keyVal, KINDS[kind].keyField, "is listed twice in the file");
      seen.add(keyVal);
      objects.push(desiredObject(kind, keyVal, input));
      if (kind === "tenant") tenants.add(keyVal);
    }
  }
  return { tenants: [...tenants], objects };
}

function desiredObject(kind: ObjectKind, key: string, input: Obj): DesiredObject {
  const given = new Set(Object.keys(input));
  if (kind === "lrouter") {
    const interfaces = routerInterfaces(key, input.interfaces);
    const value = parseObject<Obj>(kind, { ...input, interfaces: [] }, key);
    delete value.interfaces;
    return { kind, key, value, given, interfaces };
  }
  if (kind === "secgroup") return { kind, key, value: parseSecgroup(key, input), given };
  return { kind, key, value: parseObject<Obj>(kind, input, key), given };
}

function routerInterfaces(key: string, raw: unknown): DesiredInterface[] {
  if (raw === undefined) return [];
  const bad = (field: string, reason: string): never => {
    throw new ValidationError("lrouter", key, field, reason);
  };
  if (!Array.isArray(raw)) bad("interfaces", "must be a list of subnet ids or {subnetId, ipAddress}");
  const out: DesiredInterface[] = [];
  for (const [i, x] of (raw as unknown[]).entries()) {
    if (typeof x === "string") out.push({ subnetId: x });
    else if (typeof x === "object" && x !== null && typeof (x as Obj).subnetId === "string") {
      const { subnetId, ipAddress, ...rest } = x as Obj;
      const extra = Object.keys(rest)[0];
      if (extra)
        bad(`interfaces[${i}].${extra}`, "is not a field of a router interface (subnetId, ipAddress)");
      if (ipAddress === undefined) out.push({ subnetId: subnetId as string });
      else if (typeof ipAddress !== "string" || !isIp(ipAddress))
        bad(`interfaces[${i}].ipAddress`, "is not an IP address");
      else out.push({ subnetId: subnetId as string, ipAddress: canonicalIp(ipAddress) });
    } else bad(`interfaces[${i}]`, "must be a subnet id or {subnetId, ipAddress}");
    if (out.slice(0, -1).some((o) => o.subnetId === out.at(-1)!.subnetId))
      bad(`interfaces[${i}]`, `subnet ${out.at(-1)!.subnetId} is listed twice`);
  }
  return out;
}

/** A secgroup whose rules may lack ids: parse with placeholder ids, then drop them. */
function parseSecgroup(key: string, input: Obj): Obj {
  const rules = Array.isArray(input.rules) ? (input.rules as unknown[]) : input.rules;
  const placeholders = new Set<number>();
  const withIds = Array.isArray(rules)
    ? rules.map((r, i) => {
        if (typeof r === "object" && r !== null && !Array.isArray(r) && (r as Obj).id === undefined) {
          placeholders.add(i);
          return { ...(r as Obj), id: `apply-placeholder-${i}` };
        }
        return r;
      })
    : rules;
  const value = parseObject<Obj>(
    "secgroup",
    { ...input, ...(rules === undefined ? {} : { rules: withIds }) },
    key,
  );
  value.rules = (value.rules as Obj[]).map((r, i) => {
    if (!placeholders.has(i)) return r;
    const { id: _id, ...rest } = r;
    void _id;
    return rest;
  });
  return value;
}

// ---- the plan ---------------------------------------------------------------------

export type Step =
  | { op: "create"; kind: ObjectKind; key: string; value: Obj }
  | { op: "update"; kind: ObjectKind; key: string; patch: Obj }
  | { op: "delete"; kind: ObjectKind; key: string }
  | { op: "addInterface"; router: string; subnetId: string; ipAddress?: string }
  | { op: "removeInterface"; router: string; subnetId: string };

export interface Change {
  sign: "+" | "~" | "-";
  kind: ObjectKind;
  key: string;
  /** changed fields (updates) */
  fields?: string[];
  /** router interface changes: the subnet */
  interface?: string;
}

export interface Plan {
  changes: Change[];
  /** API calls in order; `change` indexes `changes` */
  steps: (Step & { change: number })[];
  /** versions the plan was computed from, "kind/key" → version (for CAS) */
  versions: Record<string, number>;
  /** every lock the calls take (api.ts lockName), sorted */
  locks: string[];
  /**
   * Reservations the calls make with values the file gives (api.ts
   * reservationIds): the batch allocates none of them to an object listed
   * earlier, so a file may give an address, MAC or segment id that the
   * allocator would otherwise hand to a port or network before it.
   */
  claims: string[];
}

/** What the store holds now, per kind. */
export type State = Partial<Record<ObjectKind, Versioned<unknown>[]>>;

export function formatChange(c: Change): string {
  const noun = KINDS[c.kind].noun;
  if (c.interface !== undefined) return `${c.sign} ${noun} ${c.key} interface ${c.interface}`;
  return `${c.sign} ${noun} ${c.key}${c.fields && c.fields.length > 0 ? ` (${c.fields.join(", ")})` : ""}`;
}

/** Stable JSON (sorted keys, undefined dropped) for comparing values. */
function canon(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  if (typeof v === "object" && v !== null) {
    const keys = Object.keys(v)
      .filter((k) => (v as Obj)[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canon((v as Obj)[k])}`).join(",")}}`;
  }
  return v === undefined ? "null" : JSON.stringify(v);
}

const same = (a: unknown, b: unknown): boolean => canon(a) === canon(b);
const vkey = (kind: ObjectKind, key: string): string => `${kind}/${key}`;
const isRouterPort = (o: Versioned<unknown>): boolean =>
  o.kind === "lport" && (o.value as Obj).deviceOwner === DEVICE_OWNER_ROUTER_INTERFACE;

/** Rules equal but for their ids. */
function ruleBody(r: Obj): string {
  const { id: _id, ...rest } = r;
  void _id;
  return canon(rest);
}

/** The rules to store, or undefined when the stored set already matches. */
function planRules(desired: Obj[], stored: Obj[]): Obj[] | undefined {
  const used = new Set<number>();
  const out: Obj[] = [];
  let changed = false;
  for (const d of desired) {
    let j = -1;
    if (typeof d.id === "string")
      j = stored.findIndex((s, i) => !used.has(i) && s.id === d.id && ruleBody(s) === ruleBody(d));
    else j = stored.findIndex((s, i) => !used.has(i) && ruleBody(s) === ruleBody(d));
    if (j >= 0) {
      used.add(j);
      out.push(stored[j]!);
    } else {
      changed = true;
      out.push(d);
    }
  }
  if (used.size !== stored.length) changed = true;
  return changed ? out : undefined;
}

/** Fixed IPs to store, or undefined when the stored ones satisfy the file. */
function planFixedIps(desired: Obj[], stored: Obj[]): Obj[] | undefined {
  const ok =
    desired.length === stored.length &&
    desired.every(
      (d, i) =>
        d.subnetId === stored[i]!.subnetId &&
        (d.ipAddress === undefined || d.ipAddress === stored[i]!.ipAddress),
    );
  if (ok) return undefined;
  // Keep an address the port already has on a subnet the file lists without one.
  const kept = new Set<number>();
  return desired.map((d) => {
    if (d.ipAddress !== undefined) return d;
    const j = stored.findIndex(
      (s, i) =>
        !kept.has(i) && s.subnetId === d.subnetId && !desired.some((x) => x.ipAddress === s.ipAddress),
    );
    if (j < 0) return d;
    kept.add(j);
    return { subnetId: d.subnetId, ipAddress: stored[j]!.ipAddress };
  });
}

/**
 * Fields that differ between the file's object and the stored one (special
 * fields excluded); a difference in a field update cannot change is refused.
 */
function diffFields(d: DesiredObject, stored: Obj): string[] {
  const skip = new Set<string>([KINDS[d.kind].keyField]);
  for (const f of ALLOCATED[d.kind] ?? []) if (!d.given.has(f)) skip.add(f);
  if (d.kind === "lrouter") skip.add("interfaces").add("routes");
  if (d.kind === "secgroup") skip.add("rules");
  if (d.kind === "lport") skip.add("fixedIps");
  const fields = new Set([...Object.keys(d.value), ...Object.keys(stored)]);
  const diff = [...fields].filter((f) => !skip.has(f) && !same(d.value[f], stored[f]));
  for (const f of diff) {
    if (f === "tenantId" || (IMMUTABLE[d.kind] ?? []).includes(f)) {
      throw new ValidationError(
        d.kind,
        d.key,
        f,
        `cannot be changed after create (stored ${canon(stored[f])}, file ${canon(d.value[f])}); delete the object first`,
      );
    }
  }
  return diff;
}

/**
 * A gateway's chassis address given without a MAC keeps the MAC the API
 * allocated for it (the stored entry of the same chassis and address), so
 * applying the same file again changes nothing.
 */
function keepChassisMacs(want: Obj, stored: Obj): void {
  if (!Array.isArray(want.chassisAddresses) || !Array.isArray(stored.chassisAddresses)) return;
  const had = stored.chassisAddresses as Obj[];
  want.chassisAddresses = (want.chassisAddresses as Obj[]).map((a) => {
    if (a.macAddress !== undefined) return a;
    const o = had.find((x) => x.chassis === a.chassis && x.ipAddress === a.ipAddress);
    return o ? { ...a, macAddress: o.macAddress } : a;
  });
}

/**
 * Compute the changes and calls that make `state` match `topology`.
 * Throws a ValidationError (nothing to execute) when the file cannot be applied.
 */
export function planApply(
  topology: Topology,
  state: State,
  opts: { prune?: boolean; malformed?: MalformedObject[] } = {},
): Plan {
  const current = new Map<string, Versioned<unknown>>();
  for (const kind of Object.keys(state) as ObjectKind[])
    for (const o of state[kind] ?? []) if (!isRouterPort(o)) current.set(vkey(kind, o.key), o);
  const desired = new Map(topology.objects.map((d) => [vkey(d.kind, d.key), d]));
  const scope = new Set(topology.tenants);
  const malformed = new Map((opts.malformed ?? []).map((m) => [vkey(m.kind, m.key), m]));
  for (const d of topology.objects) {
    const m = malformed.get(vkey(d.kind, d.key));
    if (m) {
      throw new ValidationError(
        d.kind,
        d.key,
        "",
        `the stored object is malformed (${m.malformed}); delete it first (flowdrake nb ${KINDS[d.kind].noun} delete ${d.key})`,
      );
    }
  }

  const pruned = new Set<string>();
  if (opts.prune) {
    for (const [k, o] of current) {
      if (desired.has(k) || !KINDS[o.kind].tenantOwned) continue;
      if (scope.has((o.value as Obj).tenantId as string)) pruned.add(k);
    }
  }
  const existsAfter = (kind: ObjectKind, key: string): boolean =>
    desired.has(vkey(kind, key)) || (current.has(vkey(kind, key)) && !pruned.has(vkey(kind, key)));

  checkReferences(topology, existsAfter, malformed);

  const changes: Change[] = [];
  const steps: Plan["steps"] = [];
  const versions: Record<string, number> = {};
  for (const [k, o] of current) versions[k] = o.version;
  const change = (c: Change): number => changes.push(c) - 1;
  const step = (s: Step, c: number): void => void steps.push({ ...s, change: c });

  // 1. leaf deletes
  const deleteOrder: ObjectKind[] = ["fip", "snat", "lport", "lrouter", "subnet", "lswitch", "secgroup"];
  const prunedOf = (kind: ObjectKind): Versioned<unknown>[] =>
    [...pruned]
      .map((k) => current.get(k)!)
      .filter((o) => o.kind === kind)
      .sort((a, b) => a.key.localeCompare(b.key));
  for (const kind of deleteOrder.slice(0, 3))
    for (const o of prunedOf(kind))
      step({ op: "delete", kind, key: o.key }, change({ sign: "-", kind, key: o.key }));

  // 2. creates and updates in dependency order
  const deferredRules: { key: string; rules: Obj[]; change: number }[] = [];
  for (const [, kind] of SECTIONS) {
    for (const d of topology.objects.filter((x) => x.kind === kind)) {
      const cur = current.get(vkey(kind, d.key));
      if (kind === "lrouter") {
        planRouter(d, cur, change, step);
        continue;
      }
      let value = d.value;
      let ready: Obj[] | undefined;
      if (kind === "secgroup") {
        // A rule naming a group that this apply creates waits until every group exists.
        const rules = d.value.rules as Obj[];
        const now = rules.filter(
          (r) =>
            r.remoteGroupId === undefined ||
            r.remoteGroupId === d.key ||
            current.has(vkey("secgroup", r.remoteGroupId as string)),
        );
        if (now.length !== rules.length) {
          ready = now;
          value = { ...value, rules: now };
        }
      }
      if (!cur) {
        const c = change({ sign: "+", kind, key: d.key });
        step({ op: "create", kind, key: d.key, value: { ...value, [KINDS[kind].keyField]: d.key } }, c);
        if (ready) deferredRules.push({ key: d.key, rules: d.value.rules as Obj[], change: c });
        continue;
      }
      const stored = cur.value as Obj;
      if (kind === "snat") keepChassisMacs(d.value, stored);
      const fields = diffFields(d, stored);
      const patch: Obj = {};
      for (const f of fields) patch[f] = d.value[f];
      if (kind === "lport" && Array.isArray(d.value.fixedIps)) {
        const ips = planFixedIps(d.value.fixedIps as Obj[], stored.fixedIps as Obj[]);
        if (ips) {
          patch.fixedIps = ips;
          fields.push("fixedIps");
        }
      }
      let later: Obj[] | undefined;
      if (kind === "secgroup") {
        const full = planRules(d.value.rules as Obj[], stored.rules as Obj[]);
        if (full) {
          fields.push("rules");
          if (ready) {
            const first = planRules(ready, stored.rules as Obj[]);
            if (first) patch.rules = first;
            later = full;
          } else patch.rules = full;
        }
      }
      if (fields.length === 0) continue;
      const c = change({ sign: "~", kind, key: d.key, fields });
      if (Object.keys(patch).length > 0) step({ op: "update", kind, key: d.key, patch }, c);
      if (later) deferredRules.push({ key: d.key, rules: later, change: c });
    }
    if (kind === "secgroup") {
      for (const r of deferredRules)
        step({ op: "update", kind: "secgroup", key: r.key, patch: { rules: r.rules } }, r.change);
    }
  }

  // 3. the remaining deletes, reverse dependency order
  for (const kind of deleteOrder.slice(3)) {
    const objs = prunedOf(kind);
    if (kind === "secgroup") {
      // Groups that name each other as remote groups drop those rules first.
      const gone = new Set(objs.map((o) => o.key));
      for (const o of objs) {
        const rules = (o.value as Obj).rules as Obj[];
        if (
          rules.some(
            (r) =>
              typeof r.remoteGroupId === "string" && r.remoteGroupId !== o.key && gone.has(r.remoteGroupId),
          )
        ) {
          const c = change({ sign: "-", kind, key: o.key });
          step(
            {
              op: "update",
              kind,
              key: o.key,
              patch: {
                rules: rules.filter((r) => r.remoteGroupId === undefined || r.remoteGroupId === o.key),
              },
            },
            c,
          );
          step({ op: "delete", kind, key: o.key }, c);
          gone.delete(o.key);
        }
      }
      for (const o of objs.filter((x) => gone.has(x.key)))
        step({ op: "delete", kind, key: o.key }, change({ sign: "-", kind, key: o.key }));
      continue;
    }
    for (const o of objs) {
      const c = change({ sign: "-", kind, key: o.key });
      if (kind === "lrouter") {
        const r = o.value as Obj;
        if ((r.routes as unknown[]).length > 0)
          step({ op: "update", kind, key: o.key, patch: { routes: [] } }, c);
        for (const itf of r.interfaces as Obj[])
          step({ op: "removeInterface", router: o.key, subnetId: itf.subnetId as string }, c);
      }
      step({ op: "delete", kind, key: o.key }, c);
    }
  }

  const locks = new Set<string>();
  for (const s of steps) {
    const [kind, key] =
      s.op === "addInterface" || s.op === "removeInterface"
        ? (["lrouter", s.router] as const)
        : [s.kind, s.key];
    const k = vkey(kind, key);
    const tenantId = (desired.get(k)?.value ?? (current.get(k)?.value as Obj | undefined))?.tenantId;
    const name = lockName(kind, tenantId);
    if (name !== undefined) locks.add(name);
  }
  const claims = new Set<string>();
  const valueOf = (kind: ObjectKind, key: string): Obj | undefined =>
    (desired.get(vkey(kind, key))?.value ?? current.get(vkey(kind, key))?.value) as Obj | undefined;
  for (const s of steps) {
    let ids: string[] = [];
    if (s.op === "create") ids = reservationIds(s.kind, s.value);
    else if (s.op === "update")
      ids = reservationIds(s.kind, { ...(current.get(vkey(s.kind, s.key))?.value as Obj), ...s.patch });
    else if (s.op === "addInterface" && s.ipAddress !== undefined) {
      const networkId = valueOf("subnet", s.subnetId)?.networkId;
      if (typeof networkId === "string") ids = [reservationId(IPAM_KINDS.ip, `${networkId}/${s.ipAddress}`)];
    }
    for (const id of ids) claims.add(id);
  }
  return { changes, steps, versions, locks: [...locks].sort(), claims: [...claims].sort() };
}

function planRouter(
  d: DesiredObject,
  cur: Versioned<unknown> | undefined,
  change: (c: Change) => number,
  step: (s: Step, c: number) => void,
): void {
  const want = d.interfaces ?? [];
  const routes = d.value.routes as Obj[];
  if (!cur) {
    const c = change({ sign: "+", kind: "lrouter", key: d.key });
    step({ op: "create", kind: "lrouter", key: d.key, value: { ...d.value, id: d.key, routes: [] } }, c);
    for (const itf of want)
      step(
        { op: "addInterface", router: d.key, ...itf },
        change({ sign: "+", kind: "lrouter", key: d.key, interface: itf.subnetId }),
      );
    if (routes.length > 0) step({ op: "update", kind: "lrouter", key: d.key, patch: { routes } }, c);
    return;
  }
  const stored = cur.value as Obj;
  const storedRoutes = stored.routes as Obj[];
  const has = (list: Obj[], r: Obj): boolean => list.some((x) => same(x, r));
  const keptRoutes = storedRoutes.filter((r) => has(routes, r));
  const routesChange = !(routes.length === storedRoutes.length && routes.every((r) => has(storedRoutes, r)));
  const fields = diffFields(d, stored);
  const patch: Obj = {};
  for (const f of fields) patch[f] = d.value[f];
  const allFields = routesChange ? [...fields, "routes"] : fields;
  let c = -1;
  if (allFields.length > 0) c = change({ sign: "~", kind: "lrouter", key: d.key, fields: allFields });
  if (fields.length > 0 || keptRoutes.length !== storedRoutes.length) {
    step({ op: "update", kind: "lrouter", key: d.key, patch: { ...patch, routes: keptRoutes } }, c);
  }
  const storedItfs = stored.interfaces as Obj[];
  for (const itf of storedItfs) {
    const w = want.find((x) => x.subnetId === itf.subnetId);
    if (!w || (w.ipAddress !== undefined && w.ipAddress !== itf.ipAddress)) {
      step(
        { op: "removeInterface", router: d.key, subnetId: itf.subnetId as string },
        change({ sign: "-", kind: "lrouter", key: d.key, interface: itf.subnetId as string }),
      );
    }
  }
  for (const w of want) {
    const itf = storedItfs.find((x) => x.subnetId === w.subnetId);
    if (!itf || (w.ipAddress !== undefined && w.ipAddress !== itf.ipAddress)) {
      step(
        { op: "addInterface", router: d.key, ...w },
        change({ sign: "+", kind: "lrouter", key: d.key, interface: w.subnetId }),
      );
    }
  }
  if (routesChange && keptRoutes.length !== routes.length)
    step({ op: "update", kind: "lrouter", key: d.key, patch: { routes } }, c);
}

function checkReferences(
  topology: Topology,
  existsAfter: (kind: ObjectKind, key: string) => boolean,
  malformed: Map<string, MalformedObject>,
): void {
  const need = (d: DesiredObject, field: string, kind: ObjectKind, key: unknown): void => {
    if (typeof key !== "string") return;
    const m = malformed.get(vkey(kind, key));
    if (m && !existsAfter(kind, key)) {
      throw new ValidationError(
        d.kind,
        d.key,
        field,
        `${KINDS[kind].noun} ${key} is malformed in the store (${m.malformed})`,
      );
    }
    if (!existsAfter(kind, key)) {
      throw new ValidationError(
        d.kind,
        d.key,
        field,
        `${KINDS[kind].noun} ${key} is neither in the file nor in the store`,
      );
    }
  };
  for (const d of topology.objects) {
    for (const ref of REFS[d.kind] ?? []) {
      const v = d.value[ref.field];
      if (ref.list && Array.isArray(v)) v.forEach((x, i) => need(d, `${ref.field}[${i}]`, ref.kind, x));
      else need(d, ref.field, ref.kind, v);
    }
    if (d.kind === "lport" && Array.isArray(d.value.fixedIps))
      (d.value.fixedIps as Obj[]).forEach((f, i) => need(d, `fixedIps[${i}].subnetId`, "subnet", f.subnetId));
    if (d.kind === "secgroup")
      (d.value.rules as Obj[]).forEach((r, i) => {
        if (r.remoteGroupId !== d.key) need(d, `rules[${i}].remoteGroupId`, "secgroup", r.remoteGroupId);
      });
    if (d.kind === "lrouter")
      (d.interfaces ?? []).forEach((itf, i) => need(d, `interfaces[${i}].subnetId`, "subnet", itf.subnetId));
  }
}

// ---- the executor ----------------------------------------------------------------------

/** What the store holds now (the planner's input), and the objects it cannot read. */
export async function readState(api: NbApi): Promise<{ state: State; malformed: MalformedObject[] }> {
  const state: State = {};
  const malformed: MalformedObject[] = [];
  for (const [, kind] of SECTIONS) {
    const r = await api.scan(kind);
    state[kind] = r.objects;
    malformed.push(...r.malformed);
  }
  return { state, malformed };
}

/** Read every object the planner compares (malformed ones left out; readState reports them). */
export async function loadState(api: NbApi): Promise<State> {
  return (await readState(api)).state;
}

export interface ApplyProgress {
  /** called once per change, in order, when its last call has been committed; awaited */
  onChange?: (c: Change) => void | Promise<void>;
}

export interface ApplyOptions extends ApplyProgress {
  /** one lock, read and transaction per call instead of one batch (how apply worked before batching) */
  perCall?: boolean;
  /** ops per transaction of the batch (default BATCH_MAX_OPS) */
  maxOps?: number;
}

/**
 * Perform the plan's calls in order, each guarded by the version the plan saw
 * (or the version the previous call of this apply produced), as one batch
 * (module comment). Stops at the first error, which it rethrows; the changes
 * committed before it have been reported.
 */
export async function executePlan(api: NbApi, plan: Plan, opts: ApplyOptions = {}): Promise<Change[]> {
  const versions = new Map(Object.entries(plan.versions));
  const done: Change[] = [];
  const lastStep = new Map<number, number>();
  plan.steps.forEach((s, i) => lastStep.set(s.change, i));
  const order = [...lastStep.keys()].sort((a, b) => lastStep.get(a)! - lastStep.get(b)!);
  /** `committed` calls (= steps, in order) are in the store: report the changes they complete. */
  const report = async (committed: number): Promise<void> => {
    while (done.length < order.length && lastStep.get(order[done.length]!)! < committed) {
      const c = plan.changes[order[done.length]!]!;
      done.push(c);
      await opts.onChange?.(c);
    }
  };
  const expect = (kind: ObjectKind, key: string): { expectVersion?: number } => {
    const v = versions.get(vkey(kind, key));
    return v === undefined ? {} : { expectVersion: v };
  };
  const run = async (w: NbBatch, s: Step): Promise<void> => {
    switch (s.op) {
      case "create": {
        const r = await w.create(s.kind, s.value);
        versions.set(vkey(s.kind, s.key), r.version);
        break;
      }
      case "update": {
        const r = await w.update(s.kind, s.key, s.patch, expect(s.kind, s.key));
        versions.set(vkey(s.kind, s.key), r.version);
        break;
      }
      case "delete":
        await w.delete(s.kind, s.key, expect(s.kind, s.key));
        versions.delete(vkey(s.kind, s.key));
        break;
      case "addInterface": {
        const args =
          s.ipAddress === undefined
            ? { subnetId: s.subnetId }
            : { subnetId: s.subnetId, ipAddress: s.ipAddress };
        const r = await w.routerAddInterface(s.router, args, expect("lrouter", s.router));
        versions.set(vkey("lrouter", s.router), r.router.version);
        break;
      }
      case "removeInterface": {
        const r = await w.routerRemoveInterface(
          s.router,
          { subnetId: s.subnetId },
          expect("lrouter", s.router),
        );
        versions.set(vkey("lrouter", s.router), r.version);
        break;
      }
    }
  };
  if (opts.perCall) {
    const direct = api.claiming(plan.claims);
    for (const [i, s] of plan.steps.entries()) {
      await run(direct, s);
      await report(i + 1);
    }
    return done;
  }
  if (plan.steps.length === 0) return done;
  await api.batch(
    plan.locks,
    async (b) => {
      for (const s of plan.steps) await run(b, s);
    },
    {
      onCommit: report,
      claims: plan.claims,
      ...(opts.maxOps === undefined ? {} : { maxOps: opts.maxOps }),
    },
  );
  return done;
}
