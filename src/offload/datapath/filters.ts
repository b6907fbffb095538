/**
 * The planner's plan as the filters each device holds.
 *
 * The planner thinks in one shared tc block on every eswitch port (a rule
 * with `indev` applies to packets from that port, one without to all). The
 * kernel and the NIC hold filters per device instead — flowdrake installs
 * each filter on the ingress of the device whose packets it classifies:
 *
 *   - mlx5 offloads a filter only for the device it is attached to and
 *     refuses an `indev` other than that device, so a shared block holding
 *     `indev` rules would be refused in hardware on every other member;
 *   - the hardware cost is the same either way (drivers replicate a block's
 *     rules per port), and per-device filters have per-device counters;
 *   - OVS's own tc offload does the same.
 *
 * So a rule with `indev` goes to that device only, and a rule without it to
 * every device whose packets can reach its chain: chain 0 is reached from
 * every block device, a later chain from the devices whose rules goto it
 * (following the plan's gotos table by table). `indev` itself is never sent:
 * the device implies it.
 *
 * A chain the planner leaves without a catch-all (a poisoned chain, whose
 * misses must reach OVS) gets an explicit one that passes the packet on
 * (prio 65535): a miss after a goto is reported by the kernel to OVS with the
 * chain number when OVS shares tc chains with its recirculation ids (tc
 * skb extensions), and an explicit pass keeps that from ever mattering.
 *
 * Each device filter has a key — device, chain, prio and match: what the
 * kernel cannot hold twice — and a signature (the key plus its role and
 * actions). Two planner rules that land on one key (coarse traps of several
 * OpenFlow rules, say) are one filter with several origins; if they disagree
 * on what to do, the filter passes the packet to OVS, which is always right.
 */
import type { Match } from "../planner/ir.js";
import { type Plan, type TcAction, type TcRule, trapActions } from "../planner/plan.js";

/** The prio of the explicit catch-all of a chain without one (above every rule the planner makes). */
export const SOFTWARE_MISS_PRIO = 0xffff;

export type FilterKind = "offload" | "trap" | "drop";

export interface DeviceRule {
  dev: string;
  /** The planner's rule, `indev` set to `dev`. */
  rule: TcRule;
  /** The planner rule ids (OpenFlow flows) this filter comes from; empty for a chain's catch-all. */
  origins: string[];
  /** Device, chain, prio, match: the filter's identity. */
  key: string;
  /** The key plus role and actions: equal signatures, equal filters. */
  sig: string;
  /** The OpenFlow table of the filter's chain (ordering: gotos only lead to later tables). */
  table: number;
  kind: FilterKind;
}

function hex(v: bigint): string {
  return v.toString(16);
}

/** A match as text, fields in name order. */
export function matchKey(m: Match): string {
  return Object.keys(m)
    .sort()
    .map((f) => {
      const mv = m[f as keyof Match]!;
      return `${f}=${hex(mv.value)}/${hex(mv.mask)}`;
    })
    .join(",");
}

export function actionText(a: TcAction): string {
  switch (a.type) {
    case "redirect":
    case "mirror":
      return `${a.type}:${a.dev}`;
    case "goto":
      return `goto:${a.chain}`;
    case "pedit":
      return `pedit:${a.field}=${hex(a.value)}`;
    case "vlan_push":
      return `vlan_push:${a.vid}`;
    case "tunnel_set":
      return `tunnel_set:${a.tunnel}:${hex(a.id)}@${hex(a.dst)}`;
    case "ct":
      return `ct:${a.zone}${a.commit ? ",commit" : ""}${a.nat ? ",nat" : ""}`;
    default:
      return a.type;
  }
}

export function kindOf(r: TcRule): FilterKind {
  if (r.actions.at(-1)?.type === "pass" && r.actions.every((a) => a.type === "pass" || a.type === "ct_clear"))
    return "trap";
  if (r.actions.length === 1 && r.actions[0]!.type === "drop") return "drop";
  return "offload";
}

function make(dev: string, rule: TcRule, table: number, origins: string[]): DeviceRule {
  const key = `${dev}|${rule.chain}|${rule.prio}|${matchKey(rule.match)}`;
  const r: TcRule = { ...rule, indev: dev };
  return {
    dev,
    rule: r,
    origins,
    key,
    sig: `${key}|${rule.role}|${rule.actions.map(actionText).join(";")}`,
    table,
    kind: kindOf(rule),
  };
}

/**
 * Every filter of a plan, per device. `devices` are the block's members: the
 * netdevs of the port map (representors, uplinks) and the tunnel devices.
 */
export function deviceRules(plan: Plan, devices: Iterable<string>): DeviceRule[] {
  const tableOf = new Map(plan.chains.map((c) => [c.chain, c.table]));
  // a trap in a chain after a ct lookup clears the lookup's state first, as the planner's own traps do
  const clears = new Set(plan.chains.filter((c) => c.clearsCt).map((c) => c.chain));

  const byChain = new Map<number, TcRule[]>();
  for (const r of plan.tc) {
    const list = byChain.get(r.chain);
    if (list) list.push(r);
    else byChain.set(r.chain, [r]);
  }
  const reach = new Map<number, Set<string>>([[0, new Set(devices)]]);
  const order = [...plan.chains].sort((a, b) => a.table - b.table || a.chain - b.chain);
  const out = new Map<string, DeviceRule>();
  const put = (d: DeviceRule): void => {
    const have = out.get(d.key);
    if (!have) {
      out.set(d.key, d);
      return;
    }
    const origins = [...new Set([...have.origins, ...d.origins])];
    if (have.sig === d.sig) {
      have.origins = origins;
      return;
    }
    // Two rules want different things of one filter: let OVS decide their packets.
    const trap: TcRule = { ...have.rule, actions: trapActions(clears.has(have.rule.chain)), role: "trap" };
    out.set(d.key, { ...make(d.dev, trap, d.table, origins) });
  };
  for (const c of order) {
    const devs = reach.get(c.chain);
    if (!devs?.size) continue;
    const rules = byChain.get(c.chain) ?? [];
    for (const r of rules) {
      const on = r.indev === undefined ? [...devs] : devs.has(r.indev) ? [r.indev] : [];
      for (const dev of on) put(make(dev, r, c.table, r.ruleId === undefined ? [] : [r.ruleId]));
      if (r.role !== "offload") continue;
      for (const a of r.actions) {
        if (a.type !== "goto") continue;
        let s = reach.get(a.chain);
        if (!s) reach.set(a.chain, (s = new Set()));
        for (const dev of on) s.add(dev);
      }
    }
    if (!rules.some((r) => r.role === "miss")) {
      const miss: TcRule = {
        chain: c.chain,
        prio: SOFTWARE_MISS_PRIO,
        match: {},
        actions: trapActions(clears.has(c.chain)),
        role: "trap",
      };
      for (const dev of devs) put(make(dev, miss, tableOf.get(c.chain) ?? c.table, []));
    }
  }
  return [...out.values()];
}
