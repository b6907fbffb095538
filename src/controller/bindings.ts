/**
 * What the local switch says, followed row change by row change: which NB
 * ports are plugged into the integration bridge (an Interface whose
 * `external_ids:iface-id` names the NB port — the Nova/os-vif/OVN convention
 * — and that OVS has given an ofport), and at which ofports the agent's own
 * tunnel and patch ports sit.
 *
 * The OVSDB replica reports changed rows in batches (one per server update).
 * `apply(changes)` looks only at the interfaces those rows touch: an
 * Interface row itself, the interfaces of a changed Port row (old and new),
 * the interfaces of ports joining or leaving the bridge. So plugging one VM
 * into a bridge with thousands costs the same as into an empty one.
 *
 * Two interfaces claiming the same iface-id (a VM being moved, a stale
 * port) bind the NB port to the one with the lowest ofport, deterministically,
 * until the other goes.
 */
import type { EncapType } from "../apps/types.js";
import type { Replica, RowChange } from "../ovsdb/replica.js";
import type { Binding } from "./model.js";
import { TUNNEL_PORT_NAMES, patchPortNames } from "./tunnel-ports.js";

interface IfaceInfo {
  name: string;
  ifaceId: string | undefined;
  ofport: number;
}

export interface BindingDelta {
  /** NB port id → its binding now (undefined: unbound). */
  bindings: Map<string, Binding | undefined>;
  tunnelsChanged: boolean;
  providersChanged: boolean;
}

function uuids(v: unknown): string[] {
  return Array.isArray(v)
    ? v.filter((x): x is string => typeof x === "string")
    : typeof v === "string"
      ? [v]
      : [];
}

export class BindingTracker {
  private bridgeUuid: string | undefined;
  private readonly bridgePorts = new Set<string>();
  /** Port row uuid → its interface uuids. */
  private readonly portIfaces = new Map<string, string[]>();
  /** Interface uuid → its port row uuid. */
  private readonly ifacePort = new Map<string, string>();
  private readonly ifaces = new Map<string, IfaceInfo>();
  /** Interfaces on the bridge that claim an iface-id: iface-id → interface uuids. */
  private readonly claims = new Map<string, Set<string>>();
  /** Interface uuid → the iface-id it claims (reverse of `claims`). */
  private readonly claimOf = new Map<string, string>();
  private readonly bound = new Map<string, Binding>();
  private tunnels: Partial<Record<EncapType, number>> = {};
  private providers = new Map<string, number>();

  constructor(
    private readonly bridge: string,
    private readonly physicalNetworks: readonly string[],
  ) {}

  /** Start over from the replica's full contents (first connect or a resync). */
  reset(replica: Replica): BindingDelta {
    const changes: RowChange[] = [];
    for (const table of ["Bridge", "Port", "Interface"]) {
      for (const [uuid, row] of replica.table(table)) changes.push({ table, uuid, kind: "insert", new: row });
    }
    this.bridgeUuid = undefined;
    this.bridgePorts.clear();
    this.portIfaces.clear();
    this.ifacePort.clear();
    this.ifaces.clear();
    this.claims.clear();
    this.claimOf.clear();
    const before = new Map(this.bound);
    this.bound.clear();
    const d = this.apply(changes);
    for (const id of before.keys())
      if (!d.bindings.has(id) && !this.bound.has(id)) d.bindings.set(id, undefined);
    return d;
  }

  apply(changes: readonly RowChange[]): BindingDelta {
    const touched = new Set<string>();
    for (const c of changes) {
      if (c.table === "Bridge") {
        const row = c.new ?? c.old;
        if (row?.name !== this.bridge) continue;
        const before = new Set(this.bridgePorts);
        this.bridgePorts.clear();
        if (c.new) {
          this.bridgeUuid = c.uuid;
          for (const p of uuids(c.new.ports)) this.bridgePorts.add(p);
        } else this.bridgeUuid = undefined;
        for (const p of new Set([...before, ...this.bridgePorts])) {
          if (before.has(p) !== this.bridgePorts.has(p))
            for (const i of this.portIfaces.get(p) ?? []) touched.add(i);
        }
      } else if (c.table === "Port") {
        for (const i of this.portIfaces.get(c.uuid) ?? []) {
          touched.add(i);
          this.ifacePort.delete(i);
        }
        this.portIfaces.delete(c.uuid);
        if (c.new) {
          const list = uuids(c.new.interfaces);
          this.portIfaces.set(c.uuid, list);
          for (const i of list) {
            this.ifacePort.set(i, c.uuid);
            touched.add(i);
          }
        }
      } else if (c.table === "Interface") {
        touched.add(c.uuid);
        if (c.new) {
          const ids = (c.new.external_ids ?? {}) as Record<string, string>;
          const ofport = typeof c.new.ofport === "number" ? c.new.ofport : -1;
          this.ifaces.set(c.uuid, { name: String(c.new.name), ifaceId: ids["iface-id"], ofport });
        } else this.ifaces.delete(c.uuid);
      }
    }
    const affectedIds = new Set<string>();
    let tunnelsChanged = false;
    let providersChanged = false;
    for (const i of touched) {
      const was = this.claimOf.get(i);
      if (was !== undefined) {
        const set = this.claims.get(was)!;
        set.delete(i);
        if (set.size === 0) this.claims.delete(was);
        this.claimOf.delete(i);
        affectedIds.add(was);
      }
      const info = this.ifaces.get(i);
      const onBridge = info !== undefined && this.bridgePorts.has(this.ifacePort.get(i) ?? "");
      if (info?.ifaceId && onBridge) {
        let set = this.claims.get(info.ifaceId);
        if (!set) this.claims.set(info.ifaceId, (set = new Set()));
        set.add(i);
        this.claimOf.set(i, info.ifaceId);
        affectedIds.add(info.ifaceId);
      }
      if (info && Object.values(TUNNEL_PORT_NAMES).includes(info.name)) tunnelsChanged = true;
      if (info && this.physicalNetworks.some((p) => patchPortNames(p).int === info.name))
        providersChanged = true;
      if (!info) tunnelsChanged = providersChanged = true;
    }
    const bindings = new Map<string, Binding | undefined>();
    for (const id of affectedIds) {
      let best: Binding | undefined;
      for (const i of this.claims.get(id) ?? []) {
        const info = this.ifaces.get(i)!;
        if (info.ofport <= 0) continue;
        if (!best || info.ofport < best.ofport) best = { portId: id, ofport: info.ofport, iface: info.name };
      }
      const old = this.bound.get(id);
      if (old?.ofport === best?.ofport && old?.iface === best?.iface) continue;
      if (best) this.bound.set(id, best);
      else this.bound.delete(id);
      bindings.set(id, best);
    }
    if (tunnelsChanged) tunnelsChanged = this.refreshTunnels();
    if (providersChanged) providersChanged = this.refreshProviders();
    return { bindings, tunnelsChanged, providersChanged };
  }

  private ofportOnBridge(name: string): number | undefined {
    for (const [uuid, info] of this.ifaces) {
      if (info.name !== name || info.ofport <= 0) continue;
      if (this.bridgePorts.has(this.ifacePort.get(uuid) ?? "")) return info.ofport;
    }
    return undefined;
  }

  private refreshTunnels(): boolean {
    const next: Partial<Record<EncapType, number>> = {};
    for (const encap of ["geneve", "vxlan"] as const) {
      const p = this.ofportOnBridge(TUNNEL_PORT_NAMES[encap]);
      if (p !== undefined) next[encap] = p;
    }
    const changed = next.geneve !== this.tunnels.geneve || next.vxlan !== this.tunnels.vxlan;
    this.tunnels = next;
    return changed;
  }

  private refreshProviders(): boolean {
    const next = new Map<string, number>();
    for (const physnet of this.physicalNetworks) {
      const p = this.ofportOnBridge(patchPortNames(physnet).int);
      if (p !== undefined) next.set(physnet, p);
    }
    const changed =
      next.size !== this.providers.size || [...next].some(([k, v]) => this.providers.get(k) !== v);
    this.providers = next;
    return changed;
  }

  get bridgeExists(): boolean {
    return this.bridgeUuid !== undefined;
  }

  boundPorts(): ReadonlyMap<string, Binding> {
    return this.bound;
  }

  tunnelPorts(): Partial<Record<EncapType, number>> {
    return this.tunnels;
  }

  providerPorts(): ReadonlyMap<string, number> {
    return this.providers;
  }
}
