/**
 * Numbers the datapath hands out: OpenFlow meter ids and conntrack zones.
 *
 * Meter ids are computed, not allocated: a punt meter belongs to one local
 * port and one purpose, and its id is `purpose base + ofport`, so a restarted
 * agent computes the same ids and the meter reconciler finds nothing to
 * change. Each purpose owns a 64 Ki range (ofports are below 0xff00 on every
 * bridge OVS builds):
 *
 *   purpose      ids
 *   ─────────    ──────────────────────
 *   dhcp         1 .. 0xfeff             (the id is the ofport, as before v2)
 *   nd           0x10000 + ofport
 *   l3           0x20000 + ofport        (first packets of routed flows)
 *   nat          0x30000 + ofport        (ARP of floating IPs and SNAT gateways, per
 *                                         provider patch port)
 *
 * OVS maps OpenFlow meter ids onto datapath meters itself, so sparse ids
 * cost nothing; only the number of meters counts against the switch's limit.
 * On top of the per-port meters, OpenFlow's reserved "controller" meter
 * (`CONTROLLER_METER`) bounds all punts of the host together.
 *
 * Conntrack zones (16-bit; two owners must never share one while both
 * exist) are split the same way. A local port's zone is computed: its ofport
 * (`portZone`), so a restarted agent finds its connections where it left
 * them and nothing needs saving. Zones above the ofport range (0xff00 –
 * 0xffff, 256 of them) are for owners that are not ports: `CtZones` hands
 * out the zone a caller prefers when it is free (`hashedZone`, the zone a
 * key's hash points at, is the usual preference), else the next free one,
 * per key; gives the same zone back for a key it already knows until the key
 * is released; lets a caller `claim` a given zone for a key (what a
 * restarted agent does with the zones it finds in use on the switch; the key
 * that held it is left without one); and can be restored from and saved to a
 * snapshot. Zone 0, the default zone, is never handed out.
 */

import { fnv1a32 } from "./fields.js";

export const METER_PURPOSES = { dhcp: 0, nd: 0x10000, l3: 0x20000, nat: 0x30000 } as const;

/**
 * OpenFlow 1.3's reserved meter for packets sent to the controller (OFPM_CONTROLLER,
 * 0xfffffffe; 0xfffffffd is OFPM_SLOWPATH, the one for upcalls).
 * OVS applies it to every punt on top of the flow's own meter: the host-wide
 * budget of packets the local agent receives.
 */
export const CONTROLLER_METER = 0xfffffffe;
export type MeterPurpose = keyof typeof METER_PURPOSES;

const OFPORT_MAX = 0xfeff;

/** The meter id of a punt of `purpose` from the local port at `ofport`. */
export function meterId(purpose: MeterPurpose, ofport: number): number {
  if (!Number.isInteger(ofport) || ofport < 1 || ofport > OFPORT_MAX) {
    throw new RangeError(`meterId: ofport ${ofport} outside 1..${OFPORT_MAX}`);
  }
  return METER_PURPOSES[purpose] + ofport;
}

/** Whether a meter id is one flowdrake hands out (other meters on the bridge are not its business). */
export function isOurMeter(id: number): boolean {
  if (id === CONTROLLER_METER) return true;
  const base = id - (id % 0x10000);
  const ofport = id % 0x10000;
  return Object.values(METER_PURPOSES).includes(base as never) && ofport >= 1 && ofport <= OFPORT_MAX;
}

/** The conntrack zone of the local port at `ofport` (the security groups' zone). */
export function portZone(ofport: number): number {
  if (!Number.isInteger(ofport) || ofport < 1 || ofport > OFPORT_MAX) {
    throw new RangeError(`portZone: ofport ${ofport} outside 1..${OFPORT_MAX}`);
  }
  return ofport;
}

/** The zones `CtZones` hands out: above every port zone. */
export const CT_ZONE_MIN = OFPORT_MAX + 1;
export const CT_ZONE_MAX = 0xffff;

export class CtZoneExhausted extends Error {}

/** The zone of the range that `key`'s FNV-1a hash points at: a preference that is the same everywhere. */
export function hashedZone(key: string): number {
  return CT_ZONE_MIN + (fnv1a32(key) % (CT_ZONE_MAX - CT_ZONE_MIN + 1));
}

function inRange(z: number): boolean {
  return Number.isInteger(z) && z >= CT_ZONE_MIN && z <= CT_ZONE_MAX;
}

export class CtZones {
  private readonly byKey = new Map<string, number>();
  private readonly byZone = new Map<number, string>();
  private next = CT_ZONE_MIN;

  /** Start from a saved snapshot (key → zone); invalid or duplicate entries are dropped. */
  constructor(snapshot: Iterable<[string, number]> = []) {
    for (const [k, z] of snapshot) {
      if (!inRange(z) || this.byZone.has(z) || this.byKey.has(k)) continue;
      this.take(k, z);
    }
  }

  private take(key: string, zone: number): void {
    this.byKey.set(key, zone);
    this.byZone.set(zone, key);
  }

  /**
   * The zone of `key`, allocated the first time: `prefer` when it is a free
   * zone of the range (a caller that derives it from the key gets the same
   * zone for the same key, whatever the order of allocation, unless two keys
   * want one zone), else the next free one.
   */
  zoneFor(key: string, prefer?: number): number {
    const have = this.byKey.get(key);
    if (have !== undefined) return have;
    if (prefer !== undefined && inRange(prefer) && !this.byZone.has(prefer)) {
      this.take(key, prefer);
      return prefer;
    }
    for (let i = 0; i <= CT_ZONE_MAX - CT_ZONE_MIN; i++) {
      const z = this.next;
      this.next = z >= CT_ZONE_MAX ? CT_ZONE_MIN : z + 1;
      if (this.byZone.has(z)) continue;
      this.take(key, z);
      return z;
    }
    throw new CtZoneExhausted(
      `no conntrack zone left for ${key} (all ${CT_ZONE_MAX - CT_ZONE_MIN + 1} of ${CT_ZONE_MIN}..${CT_ZONE_MAX} in use)`,
    );
  }

  /**
   * Give `zone` to `key`, whatever either held before: the key's old zone is
   * freed, and the key that held `zone` (returned) is left without a zone.
   */
  claim(key: string, zone: number): string | undefined {
    if (!inRange(zone))
      throw new RangeError(`CtZones.claim: zone ${zone} outside ${CT_ZONE_MIN}..${CT_ZONE_MAX}`);
    const holder = this.byZone.get(zone);
    if (holder === key) return undefined;
    this.release(key);
    if (holder !== undefined) this.release(holder);
    this.take(key, zone);
    return holder;
  }

  peek(key: string): number | undefined {
    return this.byKey.get(key);
  }

  /** The key holding `zone`, if any. */
  holder(zone: number): string | undefined {
    return this.byZone.get(zone);
  }

  release(key: string): void {
    const z = this.byKey.get(key);
    if (z === undefined) return;
    this.byKey.delete(key);
    this.byZone.delete(z);
  }

  get size(): number {
    return this.byKey.size;
  }

  snapshot(): Map<string, number> {
    return new Map(this.byKey);
  }
}
