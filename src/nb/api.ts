/**
 * The NB API: what the CLI, `nb apply` and integrations (an OpenStack or
 * Kubernetes plugin, scripts) call to write the northbound model.
 *
 * Every write follows the same shape (Dragonflow's consistency design):
 *   1. take the per-tenant lock (`tenant/<id>`; `chassis` for chassis) so
 *      multi-object calls of one tenant are serialised;
 *   2. read what the call depends on and validate — schema rules, referential
 *      integrity, IPAM — throwing a ValidationError that names object, field
 *      and reason before anything is written;
 *   3. commit ONE store transaction holding every object it changes, each put
 *      guarded by the version it was read at (0 = must not exist) and every
 *      unique resource (segmentation id, IP, MAC) as a create-only IPAM
 *      reservation. So a call fully happens or not at all, and a writer that
 *      raced us (another process, a stale `--version`) gets a ConflictError.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { ConflictError } from "./store/errors.js";
import type { NbStore, StoredObject, TxnOp } from "./store/types.js";
import {
  type Chassis,
  DEFAULT_MTU,
  DEVICE_OWNER_ROUTER_INTERFACE,
  type FloatingIp,
  IPAM_KINDS,
  KINDS,
  type Network,
  NotFoundError,
  type ObjectKind,
  type Port,
  type Router,
  type RouterInterface,
  SEGMENTATION_RANGES,
  type Secgroup,
  type SecgroupRule,
  type SnatGateway,
  type Subnet,
  type Tenant,
  ValidationError,
  keyOf,
  parseObject,
} from "./model/index.js";
import { bigToIp, cidrContains, cidrsOverlap, hostRange, ipToBig, ipVersion, parseCidr } from "./model/ip.js";

export interface ModelOf {
  chassis: Chassis;
  tenant: Tenant;
  lswitch: Network;
  subnet: Subnet;
  lport: Port;
  lrouter: Router;
  secgroup: Secgroup;
  fip: FloatingIp;
  snat: SnatGateway;
}

export interface Versioned<T> {
  kind: ObjectKind;
  key: string;
  version: number;
  modRevision: number;
  value: T;
}

export interface WriteOptions {
  /** CAS: fail with ConflictError unless the object is at this version. */
  expectVersion?: number;
}

export interface ListFilter {
  tenantId?: string;
  networkId?: string;
}

type Obj = Record<string, unknown>;
type Reservations = Map<string, string>; // "<ipam kind>\0<key>" → owner

/** Fields that update refuses to change (the object must be deleted and created again). */
export const IMMUTABLE: Partial<Record<ObjectKind, string[]>> = {
  lswitch: ["networkType", "physicalNetwork", "external"],
  subnet: ["networkId", "cidr", "ipVersion"],
  lport: ["networkId", "deviceOwner"],
  fip: ["floatingNetworkId"],
  snat: ["routerId", "externalNetworkId"],
};

export class NbApi {
  constructor(
    readonly store: NbStore,
    private readonly opts: { lockTimeoutMs?: number } = {},
  ) {}

  // ---- reads ----------------------------------------------------------------

  async find<K extends ObjectKind>(kind: K, key: string): Promise<Versioned<ModelOf[K]> | undefined> {
    const o = await this.store.get(kind, key);
    return o ? toVersioned<ModelOf[K]>(kind, o) : undefined;
  }

  async get<K extends ObjectKind>(kind: K, key: string): Promise<Versioned<ModelOf[K]>> {
    const o = await this.find(kind, key);
    if (!o) throw new NotFoundError(kind, key);
    return o;
  }

  async list<K extends ObjectKind>(kind: K, filter: ListFilter = {}): Promise<Versioned<ModelOf[K]>[]> {
    const all = (await this.store.list(kind)).map((o) => toVersioned<ModelOf[K]>(kind, o));
    return all.filter((o) => {
      const v = o.value as unknown as Obj;
      if (filter.tenantId !== undefined && v.tenantId !== filter.tenantId) return false;
      if (filter.networkId !== undefined && v.networkId !== filter.networkId) return false;
      return true;
    });
  }

  /** Resolve an id, or a name unique within the tenant (or globally when no tenant is given). */
  async resolve(kind: ObjectKind, idOrName: string, tenantId?: string): Promise<string> {
    if (await this.store.get(kind, idOrName)) return idOrName;
    const matches = (await this.list(kind, tenantId ? { tenantId } : {})).filter(
      (o) => (o.value as unknown as Obj).name === idOrName,
    );
    if (matches.length === 1) return matches[0]!.key;
    if (matches.length > 1) {
      throw new ValidationError(kind, idOrName, "name", `is used by ${matches.length} objects; use the id`);
    }
    throw new NotFoundError(kind, idOrName);
  }

  // ---- generic writes --------------------------------------------------------------

  async create<K extends ObjectKind>(kind: K, input: Obj): Promise<Versioned<ModelOf[K]>> {
    const draft: Obj = { ...input };
    if (KINDS[kind].keyField === "id" && draft.id === undefined) draft.id = randomUUID();
    if (kind === "secgroup") draft.rules = withRuleIds(draft.rules);
    const key = keyOf(kind, draft);
    return this.locked(kind, draft, async () => {
      if (await this.store.get(kind, key))
        throw new ValidationError(kind, key, KINDS[kind].keyField, "already exists");
      const parsed = parseObject<Obj>(kind, draft, key);
      const { value, reservations } = await this.prepare(kind, parsed, undefined);
      const ops: TxnOp[] = [{ op: "put", kind, key, value, expectVersion: 0 }];
      ops.push(...(await this.reservationOps(kind, key, new Map(), reservations)));
      return this.commitObject<K>(kind, key, ops, value);
    });
  }

  async update<K extends ObjectKind>(
    kind: K,
    key: string,
    patch: Obj,
    opts: WriteOptions = {},
  ): Promise<Versioned<ModelOf[K]>> {
    const first = await this.get(kind, key);
    return this.locked(kind, first.value as unknown as Obj, async () => {
      const old = await this.get(kind, key);
      checkVersion(kind, key, opts.expectVersion, old.version);
      const oldValue = old.value as unknown as Obj;
      const draft: Obj = { ...oldValue, ...patch };
      for (const f of [KINDS[kind].keyField, "tenantId", ...(IMMUTABLE[kind] ?? [])]) {
        if (f in patch && JSON.stringify(patch[f]) !== JSON.stringify(oldValue[f])) {
          throw new ValidationError(kind, key, f, "cannot be changed after create");
        }
      }
      if (
        kind === "lrouter" &&
        "interfaces" in patch &&
        JSON.stringify(patch.interfaces) !== JSON.stringify(oldValue.interfaces)
      ) {
        throw new ValidationError(
          kind,
          key,
          "interfaces",
          "change interfaces with router add-interface/remove-interface",
        );
      }
      if (kind === "secgroup") draft.rules = withRuleIds(draft.rules);
      const parsed = parseObject<Obj>(kind, draft, key);
      const { value, reservations } = await this.prepare(kind, parsed, oldValue);
      const ops: TxnOp[] = [{ op: "put", kind, key, value, expectVersion: old.version }];
      ops.push(...(await this.reservationOps(kind, key, this.reservationsOf(kind, oldValue), reservations)));
      return this.commitObject<K>(kind, key, ops, value);
    });
  }

  async delete(kind: ObjectKind, key: string, opts: WriteOptions = {}): Promise<void> {
    const first = await this.get(kind, key);
    await this.locked(kind, first.value as unknown as Obj, async () => {
      const old = await this.get(kind, key);
      checkVersion(kind, key, opts.expectVersion, old.version);
      const v = old.value as unknown as Obj;
      await this.checkDelete(kind, key, v);
      const ops: TxnOp[] = [{ op: "delete", kind, key, expectVersion: old.version }];
      ops.push(...(await this.reservationOps(kind, key, this.reservationsOf(kind, v), new Map())));
      await this.store.txn(ops);
    });
  }

  // ---- multi-object operations ----------------------------------------------------------

  /** Attach a subnet to a router: creates the router's port on the subnet and adds the interface, in one txn. */
  async routerAddInterface(
    routerId: string,
    args: { subnetId: string; ipAddress?: string },
    opts: WriteOptions = {},
  ): Promise<{ router: Versioned<Router>; port: Versioned<Port> }> {
    const first = await this.get("lrouter", routerId);
    return this.withTenantLock(first.value.tenantId, async () => {
      const router = await this.get("lrouter", routerId);
      checkVersion("lrouter", routerId, opts.expectVersion, router.version);
      const r = router.value;
      const subnet = await this.find("subnet", args.subnetId);
      if (!subnet)
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.subnetId",
          `subnet ${args.subnetId} does not exist`,
        );
      const s = subnet.value;
      if (s.tenantId !== r.tenantId) {
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.subnetId",
          `subnet ${s.id} belongs to tenant ${s.tenantId}, not ${r.tenantId}`,
        );
      }
      for (const itf of r.interfaces) {
        if (itf.subnetId === s.id)
          throw new ValidationError(
            "lrouter",
            routerId,
            "interfaces.subnetId",
            `subnet ${s.id} is already attached`,
          );
        if (cidrsOverlap(itf.cidr, s.cidr)) {
          throw new ValidationError(
            "lrouter",
            routerId,
            "interfaces.subnetId",
            `subnet ${s.id} (${s.cidr}) overlaps subnet ${itf.subnetId} (${itf.cidr}) already on the router`,
          );
        }
      }
      const ip = args.ipAddress ?? s.gatewayIp;
      if (!ip)
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.ipAddress",
          `subnet ${s.id} has no gateway; give an ipAddress`,
        );
      const portDraft = parseObject<Obj>("lport", {
        id: randomUUID(),
        tenantId: r.tenantId,
        networkId: s.networkId,
        name: `router-interface ${r.name || r.id}`,
        deviceOwner: DEVICE_OWNER_ROUTER_INTERFACE,
        deviceId: r.id,
        fixedIps: [{ subnetId: s.id, ipAddress: ip }],
        portSecurityEnabled: false,
      });
      const { value: portValue, reservations } = await this.prepare("lport", portDraft, undefined);
      const port = portValue as unknown as Port;
      const itf: RouterInterface = {
        subnetId: s.id,
        portId: port.id,
        networkId: s.networkId,
        ipAddress: port.fixedIps[0]!.ipAddress,
        cidr: s.cidr,
        macAddress: port.macAddress,
      };
      const newRouter: Router = { ...r, interfaces: [...r.interfaces, itf] };
      const ops: TxnOp[] = [
        { op: "put", kind: "lport", key: port.id, value: port, expectVersion: 0 },
        { op: "put", kind: "lrouter", key: r.id, value: newRouter, expectVersion: router.version },
        ...(await this.reservationOps("lport", port.id, new Map(), reservations)),
      ];
      const res = await this.store.txn(ops);
      return {
        port: {
          kind: "lport",
          key: port.id,
          version: res.versions[0]!,
          modRevision: res.revision,
          value: port,
        },
        router: {
          kind: "lrouter",
          key: r.id,
          version: res.versions[1]!,
          modRevision: res.revision,
          value: newRouter,
        },
      };
    });
  }

  /** Detach a subnet from a router: deletes the router's port and the interface, in one txn. */
  async routerRemoveInterface(
    routerId: string,
    args: { subnetId: string },
    opts: WriteOptions = {},
  ): Promise<Versioned<Router>> {
    const first = await this.get("lrouter", routerId);
    return this.withTenantLock(first.value.tenantId, async () => {
      const router = await this.get("lrouter", routerId);
      checkVersion("lrouter", routerId, opts.expectVersion, router.version);
      const r = router.value;
      const itf = r.interfaces.find((i) => i.subnetId === args.subnetId);
      if (!itf)
        throw new ValidationError(
          "lrouter",
          routerId,
          "interfaces.subnetId",
          `subnet ${args.subnetId} is not attached`,
        );
      const route = r.routes.find((rt) => cidrContains(itf.cidr, rt.nexthop));
      if (route) {
        throw new ValidationError(
          "lrouter",
          routerId,
          "routes",
          `route ${route.destination} via ${route.nexthop} needs this interface; remove it first`,
        );
      }
      const newRouter: Router = { ...r, interfaces: r.interfaces.filter((i) => i !== itf) };
      const ops: TxnOp[] = [
        { op: "put", kind: "lrouter", key: r.id, value: newRouter, expectVersion: router.version },
      ];
      const port = await this.find("lport", itf.portId);
      if (port) {
        ops.push({ op: "delete", kind: "lport", key: port.key, expectVersion: port.version });
        ops.push(
          ...(await this.reservationOps(
            "lport",
            port.key,
            this.reservationsOf("lport", port.value as unknown as Obj),
            new Map(),
          )),
        );
      }
      const res = await this.store.txn(ops);
      return {
        kind: "lrouter",
        key: r.id,
        version: res.versions[0]!,
        modRevision: res.revision,
        value: newRouter,
      };
    });
  }

  async secgroupRuleAdd(
    groupId: string,
    rule: Obj,
    opts: WriteOptions = {},
  ): Promise<{ group: Versioned<Secgroup>; rule: SecgroupRule }> {
    const g = await this.get("secgroup", groupId);
    checkVersion("secgroup", groupId, opts.expectVersion, g.version);
    const id = typeof rule.id === "string" ? rule.id : randomUUID();
    const group = await this.update(
      "secgroup",
      groupId,
      { rules: [...g.value.rules, { ...rule, id }] },
      { expectVersion: g.version },
    );
    return { group, rule: group.value.rules.find((r) => r.id === id)! };
  }

  async secgroupRuleDelete(
    groupId: string,
    ruleId: string,
    opts: WriteOptions = {},
  ): Promise<Versioned<Secgroup>> {
    const g = await this.get("secgroup", groupId);
    checkVersion("secgroup", groupId, opts.expectVersion, g.version);
    if (!g.value.rules.some((r) => r.id === ruleId))
      throw new ValidationError("secgroup", groupId, "rules", `rule ${ruleId} does not exist`);
    return this.update(
      "secgroup",
      groupId,
      { rules: g.value.rules.filter((r) => r.id !== ruleId) },
      { expectVersion: g.version },
    );
  }

  // ---- locking ------------------------------------------------------------------------

  private async locked<T>(kind: ObjectKind, value: Obj, fn: () => Promise<T>): Promise<T> {
    if (!KINDS[kind].tenantOwned)
      return this.store.withLock(kind, fn, { timeoutMs: this.opts.lockTimeoutMs ?? 30_000 });
    const tenant = value.tenantId;
    if (typeof tenant !== "string" || tenant === "") {
      throw new ValidationError(kind, keyOf(kind, value), "tenantId", "is required");
    }
    return this.withTenantLock(tenant, fn);
  }

  private withTenantLock<T>(tenantId: string, fn: () => Promise<T>): Promise<T> {
    return this.store.withLock(`tenant/${tenantId}`, fn, { timeoutMs: this.opts.lockTimeoutMs ?? 30_000 });
  }

  // ---- integrity and IPAM -------------------------------------------------------------

  /** Check references, fill allocated fields, and return the reservations the object holds. */
  /** Commit a put (plus its reservations) and return the object as stored. */
  private async commitObject<K extends ObjectKind>(
    kind: K,
    key: string,
    ops: TxnOp[],
    value: unknown,
  ): Promise<Versioned<ModelOf[K]>> {
    const r = await this.store.txn(ops);
    return {
      kind,
      key,
      version: r.versions[0]!,
      modRevision: r.revision,
      value: value as ModelOf[K],
    };
  }

  private async prepare(
    kind: ObjectKind,
    v: Obj,
    old: Obj | undefined,
  ): Promise<{ value: Obj; reservations: Reservations }> {
    const key = keyOf(kind, v);
    const fail = (field: string, reason: string): never => {
      throw new ValidationError(kind, key, field, reason);
    };
    const owner = `${kind}/${key}`;
    const mine = old ? this.reservationsOf(kind, old) : new Map<string, string>();
    const taken = new Set<string>();
    switch (kind) {
      case "lswitch": {
        const n = v as unknown as Network;
        n.mtu ??= DEFAULT_MTU[n.networkType];
        const range = SEGMENTATION_RANGES[n.networkType];
        if (range) {
          n.segmentationId ??=
            (old?.segmentationId as number | undefined) ?? (await this.allocateSegmentationId(n, range));
          const holder = await this.reservationOwner(IPAM_KINDS.seg, segKey(n));
          if (holder && holder !== owner)
            fail("segmentationId", `${n.networkType} ${segLabel(n)} is already used by ${holder}`);
        } else {
          const holder = await this.reservationOwner(IPAM_KINDS.seg, segKey(n));
          if (holder && holder !== owner)
            fail("physicalNetwork", `flat network on ${n.physicalNetwork} already exists: ${holder}`);
        }
        break;
      }
      case "subnet": {
        const s = v as unknown as Subnet;
        const net = await this.find("lswitch", s.networkId);
        if (!net) fail("networkId", `network ${s.networkId} does not exist`);
        if (net!.value.tenantId !== s.tenantId && !net!.value.external) {
          fail("networkId", `network ${s.networkId} belongs to tenant ${net!.value.tenantId}`);
        }
        for (const other of await this.list("subnet", { networkId: s.networkId })) {
          if (other.key !== s.id && cidrsOverlap(other.value.cidr, s.cidr)) {
            fail(
              "cidr",
              `${s.cidr} overlaps subnet ${other.key} (${other.value.cidr}) on network ${s.networkId}`,
            );
          }
        }
        const c = parseCidr(s.cidr);
        s.ipVersion = c.version;
        const hosts = hostRange(s.cidr);
        if (s.gatewayIp === undefined) s.gatewayIp = bigToIp(hosts.first, c.version);
        for (const [i, pool] of (s.allocationPools ?? []).entries()) {
          const g = s.gatewayIp ? ipToBig(s.gatewayIp) : undefined;
          if (g !== undefined && g >= ipToBig(pool.start) && g <= ipToBig(pool.end)) {
            fail(`allocationPools[${i}]`, `contains the gateway ${s.gatewayIp}`);
          }
        }
        if (!s.allocationPools || s.allocationPools.length === 0) {
          const g = s.gatewayIp ? ipToBig(s.gatewayIp) : undefined;
          const pools: { start: bigint; end: bigint }[] = [];
          if (g === undefined || g < hosts.first || g > hosts.last)
            pools.push({ start: hosts.first, end: hosts.last });
          else {
            if (g > hosts.first) pools.push({ start: hosts.first, end: g - 1n });
            if (g < hosts.last) pools.push({ start: g + 1n, end: hosts.last });
          }
          s.allocationPools = pools.map((p) => ({
            start: bigToIp(p.start, c.version),
            end: bigToIp(p.end, c.version),
          }));
        }
        break;
      }
      case "lport": {
        const p = v as unknown as Omit<Port, "fixedIps"> & {
          fixedIps?: { subnetId: string; ipAddress?: string }[];
        };
        const net = await this.find("lswitch", p.networkId);
        if (!net) fail("networkId", `network ${p.networkId} does not exist`);
        if (net!.value.tenantId !== p.tenantId && !net!.value.external) {
          fail("networkId", `network ${p.networkId} belongs to tenant ${net!.value.tenantId}`);
        }
        const subnets = await this.list("subnet", { networkId: p.networkId });
        if (p.fixedIps === undefined) {
          const wanted: { subnetId: string }[] = [];
          for (const version of [4, 6]) {
            const s = subnets.find((x) => x.value.ipVersion === version);
            if (s) wanted.push({ subnetId: s.key });
          }
          p.fixedIps = wanted;
        }
        const filled: { subnetId: string; ipAddress: string }[] = [];
        for (const [i, f] of p.fixedIps.entries()) {
          const s = subnets.find((x) => x.key === f.subnetId)?.value;
          if (!s) {
            const exists = await this.find("subnet", f.subnetId);
            fail(
              `fixedIps[${i}].subnetId`,
              exists
                ? `subnet ${f.subnetId} is on network ${exists.value.networkId}, not ${p.networkId}`
                : `subnet ${f.subnetId} does not exist`,
            );
          }
          let ip = f.ipAddress;
          if (ip === undefined) ip = await this.allocateIp(p.networkId, s!, taken, mine, owner);
          else {
            const field = `fixedIps[${i}].ipAddress`;
            const hosts = hostRange(s!.cidr);
            if (!cidrContains(s!.cidr, ip)) fail(field, `${ip} is not inside subnet ${s!.id} (${s!.cidr})`);
            if (ipToBig(ip) < hosts.first || ipToBig(ip) > hosts.last)
              fail(field, `${ip} is not a host address of ${s!.cidr}`);
            if (ip === s!.gatewayIp && p.deviceOwner !== DEVICE_OWNER_ROUTER_INTERFACE)
              fail(field, `${ip} is the gateway of subnet ${s!.id}`);
            const holder = await this.reservationOwner(IPAM_KINDS.ip, `${p.networkId}/${ip}`);
            if ((holder && holder !== owner) || taken.has(ip))
              fail(field, `${ip} is already used by ${holder ?? "this port"}`);
          }
          taken.add(ip);
          filled.push({ subnetId: f.subnetId, ipAddress: ip });
        }
        p.fixedIps = filled;
        if (p.macAddress === undefined)
          p.macAddress = (old?.macAddress as string | undefined) ?? (await this.allocateMac(p.networkId));
        else {
          const holder = await this.reservationOwner(IPAM_KINDS.mac, `${p.networkId}/${p.macAddress}`);
          if (holder && holder !== owner)
            fail("macAddress", `${p.macAddress} is already used on network ${p.networkId} by ${holder}`);
        }
        for (const [i, g] of p.securityGroups.entries()) {
          const sg = await this.find("secgroup", g);
          if (!sg) fail(`securityGroups[${i}]`, `security group ${g} does not exist`);
          if (sg!.value.tenantId !== p.tenantId)
            fail(`securityGroups[${i}]`, `security group ${g} belongs to tenant ${sg!.value.tenantId}`);
        }
        break;
      }
      case "lrouter": {
        const r = v as unknown as Router;
        if (!old && r.interfaces.length > 0) fail("interfaces", "add interfaces with router add-interface");
        for (const [i, rt] of r.routes.entries()) {
          if (!r.interfaces.some((itf) => cidrContains(itf.cidr, rt.nexthop))) {
            fail(`routes[${i}].nexthop`, `${rt.nexthop} is not on a subnet attached to the router`);
          }
        }
        break;
      }
      case "secgroup": {
        const g = v as unknown as Secgroup;
        for (const [i, rule] of g.rules.entries()) {
          if (rule.remoteGroupId && rule.remoteGroupId !== g.id) {
            const rg = await this.find("secgroup", rule.remoteGroupId);
            if (!rg) fail(`rules[${i}].remoteGroupId`, `security group ${rule.remoteGroupId} does not exist`);
            if (rg!.value.tenantId !== g.tenantId)
              fail(
                `rules[${i}].remoteGroupId`,
                `security group ${rule.remoteGroupId} belongs to tenant ${rg!.value.tenantId}`,
              );
          }
        }
        break;
      }
      case "fip":
      case "snat": {
        const isFip = kind === "fip";
        const netField = isFip ? "floatingNetworkId" : "externalNetworkId";
        const ipField = isFip ? "floatingIpAddress" : "externalIpAddress";
        const netId = v[netField] as string;
        const net = await this.find("lswitch", netId);
        if (!net) fail(netField, `network ${netId} does not exist`);
        if (!net!.value.external) fail(netField, `network ${netId} is not external`);
        const subnets = (await this.list("subnet", { networkId: netId })).map((s) => s.value);
        let ip = v[ipField] as string | undefined;
        if (ip === undefined) {
          const s = subnets.find((x) => x.ipVersion === 4) ?? subnets[0];
          if (!s) fail(ipField, `external network ${netId} has no subnet to allocate from`);
          ip = await this.allocateIp(netId, s!, taken, mine, owner);
        } else {
          const s = subnets.find((x) => cidrContains(x.cidr, ip!));
          if (!s) fail(ipField, `${ip} is not inside a subnet of network ${netId}`);
          const holder = await this.reservationOwner(IPAM_KINDS.ip, `${netId}/${ip}`);
          if (holder && holder !== owner) fail(ipField, `${ip} is already used by ${holder}`);
          if (ip === s!.gatewayIp) fail(ipField, `${ip} is the gateway of subnet ${s!.id}`);
        }
        v[ipField] = ip;
        if (isFip) await this.prepareFip(v as unknown as FloatingIp, fail);
        else {
          const sn = v as unknown as SnatGateway;
          const router = await this.find("lrouter", sn.routerId);
          if (!router) fail("routerId", `router ${sn.routerId} does not exist`);
          if (router!.value.tenantId !== sn.tenantId)
            fail("routerId", `router ${sn.routerId} belongs to tenant ${router!.value.tenantId}`);
          const other = (await this.list("snat", { tenantId: sn.tenantId })).find(
            (o) => o.value.routerId === sn.routerId && o.key !== sn.id,
          );
          if (other) fail("routerId", `router ${sn.routerId} already has SNAT gateway ${other.key}`);
        }
        break;
      }
      default:
        break;
    }
    return { value: v, reservations: this.reservationsOf(kind, v) };
  }

  private async prepareFip(f: FloatingIp, fail: (field: string, reason: string) => never): Promise<void> {
    if (f.routerId !== undefined) {
      const r = await this.find("lrouter", f.routerId);
      if (!r) fail("routerId", `router ${f.routerId} does not exist`);
    }
    if (f.portId === undefined) {
      if (f.fixedIpAddress !== undefined) fail("fixedIpAddress", "needs a portId");
      return;
    }
    const port = await this.find("lport", f.portId);
    if (!port) fail("portId", `port ${f.portId} does not exist`);
    if (port!.value.tenantId !== f.tenantId)
      fail("portId", `port ${f.portId} belongs to tenant ${port!.value.tenantId}`);
    const ips = port!.value.fixedIps.map((x) => x.ipAddress);
    f.fixedIpAddress ??= ips.find((ip) => ipVersion(ip) === 4);
    if (f.fixedIpAddress === undefined) fail("fixedIpAddress", `port ${f.portId} has no IPv4 address`);
    if (!ips.includes(f.fixedIpAddress!))
      fail("fixedIpAddress", `${f.fixedIpAddress} is not an address of port ${f.portId}`);
    const other = (await this.list("fip")).find(
      (o) => o.key !== f.id && o.value.portId === f.portId && o.value.fixedIpAddress === f.fixedIpAddress,
    );
    if (other) fail("portId", `${f.fixedIpAddress} of port ${f.portId} already has floating IP ${other.key}`);
  }

  private async checkDelete(kind: ObjectKind, key: string, v: Obj): Promise<void> {
    const fail = (field: string, reason: string): never => {
      throw new ValidationError(kind, key, field, reason);
    };
    switch (kind) {
      case "lswitch": {
        const ports = await this.list("lport", { networkId: key });
        if (ports.length > 0)
          fail("", `network has ${ports.length} port(s), e.g. ${ports[0]!.key}; delete them first`);
        const subnets = await this.list("subnet", { networkId: key });
        if (subnets.length > 0)
          fail("", `network has ${subnets.length} subnet(s), e.g. ${subnets[0]!.key}; delete them first`);
        break;
      }
      case "subnet": {
        const s = v as unknown as Subnet;
        const users = (await this.list("lport", { networkId: s.networkId })).filter((p) =>
          p.value.fixedIps.some((f) => f.subnetId === key),
        );
        if (users.length > 0)
          fail("", `subnet has ${users.length} port(s) with addresses in it, e.g. ${users[0]!.key}`);
        const fips = (await this.list("fip")).filter(
          (f) => f.value.floatingNetworkId === s.networkId && cidrContains(s.cidr, f.value.floatingIpAddress),
        );
        if (fips.length > 0) fail("", `subnet holds floating IP ${fips[0]!.key}`);
        const snats = (await this.list("snat")).filter(
          (g) => g.value.externalNetworkId === s.networkId && cidrContains(s.cidr, g.value.externalIpAddress),
        );
        if (snats.length > 0) fail("", `subnet holds SNAT gateway ${snats[0]!.key}`);
        break;
      }
      case "lport": {
        const p = v as unknown as Port;
        if (p.deviceOwner === DEVICE_OWNER_ROUTER_INTERFACE)
          fail("deviceOwner", `port belongs to router ${p.deviceId}; use router remove-interface`);
        const fip = (await this.list("fip")).find((f) => f.value.portId === key);
        if (fip) fail("", `floating IP ${fip.key} points to this port; delete or update it first`);
        break;
      }
      case "lrouter": {
        const r = v as unknown as Router;
        if (r.interfaces.length > 0)
          fail("interfaces", `router has ${r.interfaces.length} interface(s); remove them first`);
        const snat = (await this.list("snat")).find((g) => g.value.routerId === key);
        if (snat) fail("", `router has SNAT gateway ${snat.key}; delete it first`);
        const fip = (await this.list("fip")).find((f) => f.value.routerId === key);
        if (fip) fail("", `floating IP ${fip.key} uses this router`);
        break;
      }
      case "secgroup": {
        const ports = (await this.list("lport")).filter((p) => p.value.securityGroups.includes(key));
        if (ports.length > 0)
          fail("", `security group is used by ${ports.length} port(s), e.g. ${ports[0]!.key}`);
        const groups = (await this.list("secgroup")).filter(
          (g) => g.key !== key && g.value.rules.some((r) => r.remoteGroupId === key),
        );
        if (groups.length > 0) fail("", `security group ${groups[0]!.key} refers to it as a remote group`);
        break;
      }
      default:
        break;
    }
  }

  private reservationsOf(kind: ObjectKind, v: Obj): Reservations {
    const out: Reservations = new Map();
    const owner = `${kind}/${keyOf(kind, v)}`;
    const add = (ipamKind: string, key: string): void => void out.set(`${ipamKind}\u0000${key}`, owner);
    if (kind === "lswitch") {
      const n = v as unknown as Network;
      if (n.segmentationId !== undefined || n.networkType === "flat") add(IPAM_KINDS.seg, segKey(n));
    } else if (kind === "lport") {
      const p = v as unknown as Port;
      if (p.macAddress) add(IPAM_KINDS.mac, `${p.networkId}/${p.macAddress}`);
      for (const f of p.fixedIps ?? []) if (f.ipAddress) add(IPAM_KINDS.ip, `${p.networkId}/${f.ipAddress}`);
    } else if (kind === "fip") {
      const f = v as unknown as FloatingIp;
      if (f.floatingIpAddress) add(IPAM_KINDS.ip, `${f.floatingNetworkId}/${f.floatingIpAddress}`);
    } else if (kind === "snat") {
      const g = v as unknown as SnatGateway;
      if (g.externalIpAddress) add(IPAM_KINDS.ip, `${g.externalNetworkId}/${g.externalIpAddress}`);
    }
    return out;
  }

  /** Ops that move an object's reservations from `before` to `after`, guarded. */
  private async reservationOps(
    kind: ObjectKind,
    key: string,
    before: Reservations,
    after: Reservations,
  ): Promise<TxnOp[]> {
    const ops: TxnOp[] = [];
    for (const k of before.keys()) {
      if (after.has(k)) continue;
      const [ipamKind, rkey] = k.split("\u0000") as [string, string];
      const cur = await this.store.get(ipamKind, rkey);
      if (cur && (cur.value as { owner?: string }).owner === `${kind}/${key}`) {
        ops.push({ op: "delete", kind: ipamKind, key: rkey, expectVersion: cur.version });
      }
    }
    for (const [k, owner] of after) {
      if (before.has(k)) continue;
      const [ipamKind, rkey] = k.split("\u0000") as [string, string];
      ops.push({ op: "put", kind: ipamKind, key: rkey, value: { owner }, expectVersion: 0 });
    }
    return ops;
  }

  private async reservationOwner(ipamKind: string, key: string): Promise<string | undefined> {
    const r = await this.store.get(ipamKind, key);
    return r ? String((r.value as { owner?: string }).owner) : undefined;
  }

  private async allocateSegmentationId(n: Network, range: [number, number]): Promise<number> {
    const prefix = `${n.networkType}/${n.physicalNetwork ?? "-"}/`;
    const used = new Set(
      (await this.store.list(IPAM_KINDS.seg))
        .filter((r) => r.key.startsWith(prefix))
        .map((r) => Number(r.key.slice(prefix.length))),
    );
    for (let id = range[0]; id <= range[1]; id++) if (!used.has(id)) return id;
    throw new ValidationError(
      "lswitch",
      n.id,
      "segmentationId",
      `no free ${n.networkType} segmentation id left`,
    );
  }

  private async allocateIp(
    networkId: string,
    s: Subnet,
    taken: Set<string>,
    mine: Reservations,
    owner: string,
  ): Promise<string> {
    const prefix = `${networkId}/`;
    const used = new Set<string>();
    for (const r of await this.store.list(IPAM_KINDS.ip)) {
      if (r.key.startsWith(prefix) && (r.value as { owner?: string }).owner !== owner)
        used.add(r.key.slice(prefix.length));
    }
    void mine;
    const version = parseCidr(s.cidr).version;
    for (const pool of s.allocationPools) {
      const end = ipToBig(pool.end);
      let scanned = 0;
      for (let n = ipToBig(pool.start); n <= end && scanned <= used.size + taken.size + 1; n++, scanned++) {
        const ip = bigToIp(n, version);
        if (ip !== s.gatewayIp && !used.has(ip) && !taken.has(ip)) return ip;
      }
    }
    throw new ValidationError(
      "subnet",
      s.id,
      "allocationPools",
      `no free address left in subnet ${s.id} (${s.cidr})`,
    );
  }

  private async allocateMac(networkId: string): Promise<string> {
    for (let i = 0; i < 32; i++) {
      const b = randomBytes(3);
      const mac = `fa:16:3e:${[...b].map((x) => x.toString(16).padStart(2, "0")).join(":")}`;
      if (!(await this.store.get(IPAM_KINDS.mac, `${networkId}/${mac}`))) return mac;
    }
    throw new ValidationError(
      "lport",
      "",
      "macAddress",
      `could not allocate a free MAC on network ${networkId}`,
    );
  }
}

function segKey(n: Network): string {
  return `${n.networkType}/${n.physicalNetwork ?? "-"}/${n.segmentationId ?? "flat"}`;
}

function segLabel(n: Network): string {
  return n.physicalNetwork ? `${n.physicalNetwork}:${n.segmentationId}` : String(n.segmentationId);
}

function withRuleIds(rules: unknown): unknown {
  if (!Array.isArray(rules)) return rules;
  return rules.map((r: unknown) =>
    typeof r === "object" && r !== null && !Array.isArray(r) && (r as Obj).id === undefined
      ? { ...(r as Obj), id: randomUUID() }
      : r,
  );
}

function checkVersion(kind: ObjectKind, key: string, expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual) {
    throw new ConflictError(
      `${kind} ${key}: expected version ${expected}, found ${actual}`,
      kind,
      key,
      expected,
      actual,
    );
  }
}

function toVersioned<T>(kind: ObjectKind, o: StoredObject): Versioned<T> {
  return { kind, key: o.key, version: o.version, modRevision: o.modRevision, value: o.value as T };
}
