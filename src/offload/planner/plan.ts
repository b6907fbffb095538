/**
 * The offload planner: splits the pipeline into what the NIC's embedded
 * switch carries (tc-flower rules in chains) and what stays in OVS, so that
 * the split datapath — NIC rules first, anything they hand over goes to OVS —
 * decides every packet exactly as the all-software pipeline would.
 *
 *   OpenFlow                         tc (one shared block on all eswitch ports)
 *   ─────────────────────────────    ───────────────────────────────────────────
 *   table t, registers R          →  chain c(t,R)   (chain 0 = table 0, all registers 0)
 *   priority p                    →  prio by rank within the chain (higher p first)
 *   match on headers              →  flower keys (in_port → indev)
 *   match on a register           →  resolved statically: R is known in chain c(t,R)
 *   set_field reg                 →  changes R for the chain a goto leads to
 *   goto_table / resubmit(,t)     →  gact goto chain c(t,R')
 *   output / flood                →  mirred redirect / mirror
 *   set_field header, dec_ttl     →  pedit (+ csum)
 *   push/pop vlan, tunnel encap   →  vlan, tunnel_key set + redirect
 *   ct(zone,commit,table)         →  ct + goto chain (profiles with conntrack offload)
 *   table miss (OF 1.3: drop)     →  a catch-all drop at the end of the chain
 *
 * Registers have no tc counterpart; specialising chains by their values
 * (OVS starts every packet with all registers zero, and the pipeline only
 * loads constants into them) keeps the mapping exact without flattening the
 * tables into their cross product.
 *
 * A header a rule sets to a constant (a router's MAC rewrite) specialises
 * the chains after it the same way, as a known value: a later rule whose
 * match disagrees with it cannot match there and is left out, and a rule
 * whose every match is on known values matches every packet of the chain,
 * so the rules below it (and the catch-all) are left out of that chain too.
 * There, too, a rule below one that matches a subset of its matches (a
 * learned default next hop above the punt for an unknown one) is left out.
 * The chains after a rewrite then hold only what the rewritten packet can
 * meet — for a routed flow, the destination's lookup and delivery rather
 * than the network's flood and punt rules — which is what lets a rewrite
 * stay on the NIC (below). A later rewrite replaces the value; dec_ttl,
 * VLAN push/pop and a ct NAT forget the values they change.
 *
 * A rule the NIC cannot carry stays in software, and the planner keeps the
 * hardware from deciding packets that rule would have decided:
 *   - its match goes into the chain as a *trap* (gact pass: the packet leaves
 *     tc untouched and OVS runs the whole pipeline on it);
 *   - if even its match cannot be expressed in flower, nothing below it in
 *     that chain is offloaded (they could shadow it) and the chain gets no
 *     catch-all, so such packets miss into OVS;
 *   - a rule that changes the packet is offloaded only if every chain it can
 *     lead to keeps the packet in hardware; otherwise OVS would see a packet
 *     already changed by the NIC. (A trap only for packets of a device that
 *     never enters the chain — the hairpin guard of another port's output —
 *     hands nothing over and does not count.) Such rules become traps too (a fixpoint,
 *     recomputed on every update, so that a rule whose later chains stop
 *     reaching software is offloaded again).
 *     Changes are header rewrites, VLAN push/pop, and a ct commit or NAT.
 *   - a plain ct lookup is not a change, though the NIC's ct leaves its state
 *     on the packet: where a table at or before it matches conntrack state,
 *     OVS, running the pipeline from table 0, would see that state where the
 *     software pipeline saw an untracked packet. So the chains after such a
 *     lookup (a pseudo-register; `clearsCt` in the plan) clear it first in
 *     every trap (act_ct `clear`, then pass), and end in a catch-all that does
 *     the same where they would otherwise miss into OVS. The packet reaches
 *     OVS untracked, as it came from the port — and OVS's own lookup, run on
 *     it once more, finds the connection as the NIC's did. A security group's
 *     ingress lookup, behind the egress table's conntrack matches, stays on
 *     the NIC this way.
 *   - a rule that matches the absence of a VLAN tag (flower has no key for
 *     it) is offloaded without that match, with a trap for tagged packets
 *     above it, on profiles that match VLANs.
 *   - dec_ttl is offloaded with traps for TTL 0 and 1 above it, because OVS
 *     sends those packets to the controller instead of forwarding them —
 *     unless no such packet gets there: a rule below higher-priority rules of
 *     its chain that take every one of its packets with TTL 0 and with TTL 1
 *     (a router's TTL punts) sees only TTL ≥ 2, and so do the chains it leads
 *     to (a pseudo-register, as for tunnel metadata) until a dec_ttl. There a
 *     dec_ttl needs no trap, and a change before it (a ct NAT) is not kept
 *     from the NIC by one.
 *
 * Decapsulation is not a change in this sense: a rule matching in_port=<tunnel
 * port> leaves the tunnel metadata on the packet and marks the chains it
 * leads to (a pseudo-register, so they are chains of their own); their rules
 * release the metadata (tunnel_key unset) just before the packet leaves
 * through an output. A packet such a chain hands to OVS still carries its
 * tunnel key, exactly as OVS would have received it from the tunnel port.
 * Encapsulation may take its destination from a register (move:reg→tun_dst),
 * resolved like any register in the chain.
 *
 * The caller can keep chosen rules in software whatever the NIC could do
 * (`exclude`: an offload budget's demotions, the kernel's refusals, a change
 * in flight): such a rule is handled exactly like one the NIC cannot carry —
 * a trap, a coarse trap, or the rest of its chain in software.
 *
 * A patch port mapped to an uplink (`ports.bridged`): the physical bridge
 * behind the patch port (br-ex) switches by MAC learning between the patch
 * port, its uplink and the host's own ports on it, and the planner stands the
 * uplink in for the patch port only where that switching is known:
 *   - from the uplink, only packets table 0 takes by an exact unicast
 *     destination MAC on a rule for that in_port (a floating IP's, a router
 *     gateway's) are planned; every other packet of the uplink — broadcast,
 *     or for a MAC the bridge may deliver to the host's own port — is trapped
 *     in chain 0 (also in front of table 0's rules that match no in_port, and
 *     instead of the catch-all drop), so that OVS and the bridge decide it;
 *   - to the patch port, only packets whose destination MAC the chain knows
 *     (a constant an earlier rule set, or the rule's exact match) to be
 *     unicast and none of the bridge's own ports' MACs are redirected to the
 *     uplink: for those, the bridge would send them there too.
 *
 * Every rule gets a decision with a sentence a person can read.
 */
import type { NicProfile } from "../profiles/index.js";
import type { ActionKind, MatchKey } from "../profiles/vocabulary.js";
import {
  type Action,
  type CtNatRange,
  type FieldName,
  fieldDef,
  fields,
  fullMask,
  type Match,
  type PipelineRule,
  type PortMap,
} from "./ir.js";

export type TcAction =
  | { type: "redirect"; dev: string }
  | { type: "mirror"; dev: string }
  | { type: "drop" }
  | { type: "pass" }
  | { type: "goto"; chain: number }
  | { type: "pedit"; field: FieldName; value: bigint }
  | { type: "dec_ttl" }
  | { type: "vlan_push"; vid: number }
  | { type: "vlan_pop" }
  | { type: "tunnel_set"; id: bigint; dst: bigint; tunnel: "vxlan" | "geneve" }
  | { type: "tunnel_unset" }
  | { type: "ct"; zone: number; commit: boolean; nat: boolean; natRange?: CtNatRange }
  | { type: "ct_clear" };

export interface TcRule {
  chain: number;
  prio: number;
  /** Header fields only; in_port is expressed as `indev`. */
  match: Match;
  indev?: string;
  actions: TcAction[];
  /** The pipeline rule this came from (undefined for a chain's catch-all). */
  ruleId?: string;
  role: "offload" | "trap" | "miss";
}

export interface Decision {
  ruleId: string;
  offloaded: boolean;
  /** Chains in which the rule is carried by the NIC. */
  chains: number[];
  reason: string;
}

export interface ChainInfo {
  chain: number;
  table: number;
  registers: Record<string, bigint>;
  /** Headers every packet of this chain carries with these values (an earlier rule set them). */
  known?: Record<string, bigint>;
  /** A packet in this chain may end up in OVS (trap, poisoned or a software rule downstream). */
  reachesSoftware: boolean;
  /** Its traps clear the packet's conntrack state first (an earlier ct lookup's, which OVS must not see). */
  clearsCt?: true;
}

/**
 * How far a rule is kept from the NIC (`exclude`): `actions` — its match may
 * still be a trap; `match` — not even its exact match (a coarse trap, as for
 * a key the profile lacks); `all` — no trap at all, so the rest of its chain
 * stays in software.
 */
export type ExclusionScope = "actions" | "match" | "all";

export interface Exclusion {
  reason: string;
  scope: ExclusionScope;
}

/** The pseudo-register that marks chains whose packets still carry tunnel metadata. */
const DECAP = "·decap";
/** The pseudo-register that marks chains whose packets all have a TTL of 2 or more (see the module comment). */
const TTL_OK = "·ttl≥2";
/**
 * The pseudo-register that marks chains after a ct lookup whose state a table at or before it
 * matches: their traps clear the packet's conntrack state before handing it to OVS (see the module comment).
 */
const CT_LOOKED = "·ct";
/** What a trap does: hand the packet to OVS as it came, its conntrack state cleared in a `clearsCt` chain. */
export function trapActions(clearsCt: boolean): TcAction[] {
  return clearsCt ? [{ type: "ct_clear" }, { type: "pass" }] : [{ type: "pass" }];
}
/** Prefix of the pseudo-registers that hold a header's known value (set by an earlier rewrite). */
const KNOWN = "·known:";
const knownKey = (field: string): string => `${KNOWN}${field}`;
/** Forget the known values of `fields` (an action changed them to something the planner does not track). */
function forget(regs: Regs, fields: readonly string[]): void {
  for (const f of fields) regs.delete(knownKey(f));
}
/** The known header values among a chain's registers, undefined when there are none. */
function known(regs: Regs): Record<string, bigint> | undefined {
  const out = [...regs].filter(([k]) => k.startsWith(KNOWN)).map(([k, v]) => [k.slice(KNOWN.length), v]);
  return out.length ? Object.fromEntries(out) : undefined;
}
const NAT_FIELDS = ["ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", "tp_src", "tp_dst"] as const;

export interface Plan {
  tc: TcRule[];
  decisions: Map<string, Decision>;
  chains: ChainInfo[];
}

export interface PlanInput {
  rules: PipelineRule[];
  profile: NicProfile;
  ports: PortMap;
}

const tunnelDev = { vxlan: "vxlan_sys_4789", geneve: "genev_sys_6081" } as const;
const maxPrio = 0xffff;

/**
 * tc prio from the OpenFlow priority, so that a rule keeps its tc prio when
 * others come and go (no renumbering on change): two bands per priority, the
 * traps that must win over a rule just above it. OpenFlow priorities above
 * 32766 share the top band; the catch-all miss sits at 65535.
 */
export function tcPrio(ofPriority: number, band: "trap" | "main"): number {
  const p = Math.min(Math.max(ofPriority, 0), 32766);
  const main = 2 * (32766 - p) + 2;
  return band === "main" ? main : main - 1;
}

type Regs = Map<string, bigint>;

/** OpenFlow's vlan_vid present bit (OFPVID_PRESENT): any tagged packet. */
const VLAN_PRESENT = { value: 0x1000n, mask: 0x1000n };
/** A vlan_vid match on the absence of a tag (vlan_tci=0/0x1fff, or 0/0x1000). */
const vlanAbsent = (mv: { value: bigint; mask: bigint } | undefined): boolean =>
  !!mv && (mv.mask & 0x1000n) !== 0n && (mv.value & 0x1000n) === 0n;

/** Not a group address: the I/G bit (the first octet's lowest bit) is clear. */
const isUnicastMac = (mac: bigint): boolean => ((mac >> 40n) & 1n) === 0n;

function regsKey(table: number, regs: Regs): string {
  // A register absent is a register at zero; a known header value of zero is still known.
  const parts = [...regs]
    .filter(([k, v]) => v !== 0n || k.startsWith(KNOWN))
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return `${table}|${parts.map(([k, v]) => `${k}=${v}`).join(",")}`;
}

interface RuleOutcome {
  ok: boolean;
  reason: string;
  actions: TcAction[];
  /** Chains this rule can send the packet to. */
  next: number[];
  /** What the rule changes that OVS would see if a later chain handed the packet over (undefined: nothing). */
  modifies: string | undefined;
  decTtl: boolean;
  /** Output ports the rule does not exclude as ingress: OVS never sends a packet back out of its ingress port. */
  hairpins: string[];
}

export class OffloadPlanner {
  /** table → rule id → rule. */
  private readonly byTable = new Map<number, Map<string, PipelineRule>>();
  /** table → how many of its rules match a conntrack field. */
  private readonly ctMatchers = new Map<number, number>();
  /** Per-table lookup by exact register match, rebuilt lazily after a change to the table. */
  private readonly index = new Map<number, TableIndex>();
  private readonly chainOf = new Map<string, number>();
  private readonly chainInfo = new Map<number, { table: number; regs: Regs }>();
  private readonly perChain = new Map<
    number,
    { rules: TcRule[]; outcomes: Map<string, RuleOutcome>; poisoned: boolean }
  >();
  /** How many chains the last plan/update computed (for incremental-planning tests and stats). */
  lastPlannedChains = 0;
  /** While an update runs: tc rules settle() changed, with their previous form. */
  private settleLog: { rule: TcRule; before: TcRule }[] | undefined;
  /** Offloaded tc rules settle() has turned into traps, with their offload actions. */
  private readonly settled = new Map<TcRule, TcAction[]>();
  /** Rules the caller keeps in software (exclude). */
  private readonly excluded = new Map<string, Exclusion>();
  /** rule id → its table. */
  private readonly tableOf = new Map<string, number>();

  constructor(
    private readonly profile: NicProfile,
    private readonly ports: PortMap,
  ) {}

  static plan(input: PlanInput): Plan {
    const p = new OffloadPlanner(input.profile, input.ports);
    p.setRules(input.rules);
    return p.result();
  }

  setRules(rules: PipelineRule[]): void {
    this.byTable.clear();
    this.tableOf.clear();
    this.index.clear();
    this.ctMatchers.clear();
    for (const r of rules) this.addToTable(r);
    this.chainOf.clear();
    this.chainInfo.clear();
    this.perChain.clear();
    this.settled.clear();
    this.lastPlannedChains = 0;
    this.chainFor(0, new Map());
    this.expandFrom([0]);
  }

  /**
   * Apply a change (rules added, replaced by id, or removed by id) and re-plan
   * only the chains of the tables it touched, plus chains newly reachable.
   */
  update(change: { upsert?: PipelineRule[]; remove?: string[] }): { added: TcRule[]; removed: TcRule[] } {
    const changed: PipelineRule[] = [];
    const drop = (id: string) => {
      for (const [t, rules] of this.byTable) {
        const old = rules.get(id);
        if (old) {
          rules.delete(id);
          this.tableOf.delete(id);
          changed.push(old);
          this.index.delete(t);
          if (matchesConntrack(old)) this.ctMatchers.set(t, this.ctMatchers.get(t)! - 1);
        }
      }
    };
    for (const id of change.remove ?? []) drop(id);
    for (const r of change.upsert ?? []) {
      drop(r.id);
      this.addToTable(r);
      changed.push(r);
    }
    // Only the chains in which a changed rule (old or new version) can apply are re-planned, and,
    // when a changed rule matches conntrack state, every chain of its table and later ones (their
    // ct lookups may now count as changes; see translate).
    const ctFrom = Math.min(...changed.filter(matchesConntrack).map((r) => r.table));
    const affected = [...this.chainInfo]
      .filter(
        ([, info]) =>
          info.table >= ctFrom ||
          changed.some((r) => r.table === info.table && this.registersAllow(r.match, info.regs)),
      )
      .map(([c]) => c);
    const reachableBefore = new Set(this.reachableChains());
    const before = new Map<string, TcRule>();
    for (const c of affected) {
      // copies: settle may change a rule in place before the diff is taken
      if (reachableBefore.has(c))
        for (const r of this.perChain.get(c)?.rules ?? []) before.set(tcKey(r), { ...r });
    }
    this.settleLog = [];
    this.lastPlannedChains = 0;
    this.expandFrom(affected);
    const settled = this.settleLog;
    this.settleLog = undefined;
    const reachableAfter = new Set(this.reachableChains());
    const after = new Map<string, TcRule>();
    for (const c of affected) {
      if (reachableAfter.has(c)) for (const r of this.perChain.get(c)?.rules ?? []) after.set(tcKey(r), r);
    }
    const added: TcRule[] = [];
    const removed: TcRule[] = [];
    for (const [k, r] of after) if (!before.has(k)) added.push(r);
    for (const [k, r] of before) if (!after.has(k)) removed.push(r);
    for (const s of settled) {
      // (a chain reachable only now is added whole below, as settle left it)
      const c = s.rule.chain;
      if (affected.includes(c) || !reachableAfter.has(c) || !reachableBefore.has(c)) continue;
      removed.push(s.before);
      added.push(s.rule);
    }
    for (const c of reachableAfter) {
      if (!reachableBefore.has(c) && !affected.includes(c))
        added.push(...(this.perChain.get(c)?.rules ?? []));
    }
    // a chain no longer reachable goes as it was installed: as it was before settle changed its rules
    const settledFrom = new Map(settled.map((s) => [s.rule, s.before] as const));
    for (const c of reachableBefore) {
      if (!reachableAfter.has(c) && !affected.includes(c))
        removed.push(...(this.perChain.get(c)?.rules ?? []).map((r) => settledFrom.get(r) ?? r));
    }
    return { added, removed };
  }

  /**
   * Keep rules in software (an Exclusion) or give them back to the planner
   * (undefined), and re-plan the chains they appear in. Unknown ids are
   * remembered: they take effect when a rule with that id arrives.
   */
  exclude(changes: ReadonlyMap<string, Exclusion | undefined>): { added: TcRule[]; removed: TcRule[] } {
    const upsert: PipelineRule[] = [];
    for (const [id, ex] of changes) {
      const before = this.excluded.get(id);
      if (ex) this.excluded.set(id, ex);
      else this.excluded.delete(id);
      if (before?.reason === ex?.reason && before?.scope === ex?.scope) continue;
      const t = this.tableOf.get(id);
      const r = t === undefined ? undefined : this.byTable.get(t)?.get(id);
      if (r) upsert.push(r);
    }
    return upsert.length ? this.update({ upsert }) : { added: [], removed: [] };
  }

  /** The rules kept in software now, by id. */
  exclusions(): ReadonlyMap<string, Exclusion> {
    return this.excluded;
  }

  private addToTable(r: PipelineRule): void {
    let rules = this.byTable.get(r.table);
    if (!rules) this.byTable.set(r.table, (rules = new Map()));
    rules.set(r.id, r);
    this.tableOf.set(r.id, r.table);
    this.index.delete(r.table);
    if (matchesConntrack(r)) this.ctMatchers.set(r.table, (this.ctMatchers.get(r.table) ?? 0) + 1);
  }

  /** A table at or before `table` has a rule matching ct_state, ct_zone or ct_mark. */
  private conntrackMatchedBy(table: number): number | undefined {
    let first: number | undefined;
    for (const [t, n] of this.ctMatchers)
      if (n > 0 && t <= table && (first === undefined || t < first)) first = t;
    return first;
  }

  /** The rules of `table` that can apply with registers `regs`, highest priority first. */
  private candidates(table: number, regs: Regs): PipelineRule[] {
    let idx = this.index.get(table);
    if (!idx) {
      idx = buildIndex(this.byTable.get(table)?.values() ?? []);
      this.index.set(table, idx);
    }
    const out = [...idx.generic];
    for (const reg of idx.regNames) out.push(...(idx.keyed.get(`${reg}=${regs.get(reg) ?? 0n}`) ?? []));
    return out.sort(byPriority);
  }

  private chainFor(table: number, regs: Regs): { chain: number; fresh: boolean } {
    const key = regsKey(table, regs);
    const have = this.chainOf.get(key);
    if (have !== undefined) return { chain: have, fresh: false };
    const chain =
      table === 0 && [...regs].every(([k, v]) => v === 0n && !k.startsWith(KNOWN))
        ? 0
        : this.chainOf.size + 1000;
    this.chainOf.set(key, chain);
    this.chainInfo.set(chain, { table, regs: new Map(regs) });
    return { chain, fresh: true };
  }

  /** (Re)plan the given chains and any chain they newly reach, then settle traps for rewrites. */
  private expandFrom(chains: number[]): void {
    const queue = [...chains];
    const done = new Set<number>();
    while (queue.length) {
      const c = queue.shift()!;
      if (done.has(c)) continue;
      done.add(c);
      this.planChain(c, queue);
    }
    this.settle();
  }

  private planChain(chain: number, queue: number[]): void {
    this.lastPlannedChains++;
    for (const r of this.perChain.get(chain)?.rules ?? []) this.settled.delete(r);
    const { table, regs } = this.chainInfo.get(chain)!;
    /** A trap's actions here: after a lookup OVS must not see, the state is cleared first. */
    const trap = (): TcAction[] => trapActions(regs.has(CT_LOOKED));
    const outcomes = new Map<string, RuleOutcome>();
    const tc: TcRule[] = [];
    let poisoned = false;
    const skip = (reason: string): RuleOutcome => ({
      ok: false,
      reason,
      actions: [],
      next: [],
      modifies: undefined,
      decTtl: false,
      hairpins: [],
    });
    if (!this.profile.switchdev) {
      for (const rule of this.byTable.get(table)?.values() ?? []) {
        outcomes.set(rule.id, skip(`not offloaded: ${this.profile.name}: the device has no embedded switch`));
      }
      this.perChain.set(chain, { rules: tc, outcomes, poisoned: true });
      return;
    }
    // Only chains after a rewrite are cut short: elsewhere a rule below a catch-all stays, as it was.
    const cut = [...regs.keys()].some((k) => k.startsWith(KNOWN));
    let shadowed = false;
    /** Rules above, by priority, that take packets of one TTL (0 or 1): see ttlCovered. */
    const catchers: PipelineRule[] = [];
    /** In a cut chain: rules above with at most two header matches, by those matches (see coveredBy). */
    const coverers = new Map<string, PipelineRule>();
    for (const rule of this.candidates(table, regs)) {
      if (shadowed) break;
      if (!this.registersAllow(rule.match, regs)) continue;
      const above = cut ? this.coveredBy(rule, regs, coverers) : undefined;
      if (above) {
        outcomes.set(
          rule.id,
          skip(`not offloaded: never reached here: ${above.id} above takes all its packets`),
        );
        continue;
      }
      const cover = (): void => {
        const pairs = cut ? this.uncertainPairs(rule, regs) : undefined;
        if (!pairs || pairs.length > 2 || rule.opaqueMatch?.length) return;
        const key = pairs.join("&");
        if (!coverers.has(key)) coverers.set(key, rule);
      };
      const ttl = rule.match.nw_ttl;
      if (ttl && ttl.mask === 0xffn && ttl.value <= 1n && !rule.opaqueMatch?.length) catchers.push(rule);
      // Every packet of this chain matches it: nothing below it is ever reached here.
      shadowed = cut && this.matchesAll(rule, regs);
      const inPort = rule.match.in_port ? Number(rule.match.in_port.value) : undefined;
      if (inPort !== undefined && !this.devOf(inPort)) {
        // Packets from this port never pass through the NIC, so the rule cannot be shadowed by tc either.
        outcomes.set(
          rule.id,
          skip(`not offloaded: traffic from port ${inPort} never passes through the NIC`),
        );
        continue;
      }
      if (poisoned) {
        outcomes.set(
          rule.id,
          skip(
            "not offloaded: a higher-priority software-only rule in this table cannot be trapped in hardware, so this rule could shadow it",
          ),
        );
        continue;
      }
      const ex = this.excluded.get(rule.id) ?? this.uplinkGate(chain, rule, inPort);
      const headerMatch: ReturnType<OffloadPlanner["headerMatch"]> =
        ex && ex.scope !== "actions" ? { ok: false, reason: ex.reason } : this.headerMatch(rule);
      if (!headerMatch.ok) {
        outcomes.set(rule.id, skip(`not offloaded: ${headerMatch.reason}`));
        // Trap a superset of the rule's packets — its match without what the NIC cannot
        // match — to software: every packet the rule could take still reaches OVS, and
        // every other packet provably misses the rule, so lower rules keep their offload.
        const coarse = ex?.scope === "all" ? undefined : this.coarseMatch(rule);
        if (!coarse) {
          poisoned = true;
          continue;
        }
        tc.push({
          chain,
          match: coarse.match,
          indev: coarse.indev,
          ruleId: rule.id,
          prio: tcPrio(rule.priority, "main"),
          actions: trap(),
          role: "trap",
        });
        cover();
        continue;
      }
      const outcome = ex
        ? skip(`not offloaded: ${ex.reason}`)
        : this.translate(rule, regs, queue, this.ttlCovered(rule, regs, catchers));
      outcomes.set(rule.id, outcome);
      const base = { chain, match: headerMatch.match, indev: headerMatch.indev, ruleId: rule.id };
      const traps: Omit<TcRule, "prio">[] = [];
      if (outcome.ok && headerMatch.untagged) {
        // flower has no key for "no VLAN tag": the rule matches without one (headerMatch), and a
        // trap above it hands the tagged packets it would otherwise take to OVS
        traps.push({
          ...base,
          match: { ...base.match, vlan_vid: VLAN_PRESENT },
          actions: trap(),
          role: "trap",
        });
      }
      if (outcome.ok) {
        if (outcome.decTtl) {
          for (const ttl of [0n, 1n]) {
            traps.push({
              ...base,
              match: { ...base.match, nw_ttl: { value: ttl, mask: 0xffn } },
              actions: trap(),
              role: "trap",
            });
          }
        }
        for (const dev of outcome.hairpins)
          traps.push({ ...base, indev: dev, actions: trap(), role: "trap" });
      }
      if (chain === 0 && inPort === undefined) {
        // A table-0 rule for every port also meets the uplinks' packets: those go to OVS first.
        for (const dev of this.bridgedDevs())
          traps.push({ ...base, indev: dev, actions: trap(), role: "trap" });
      }
      for (const t of traps) tc.push({ ...t, prio: tcPrio(rule.priority, "trap") });
      tc.push({
        ...base,
        prio: tcPrio(rule.priority, "main"),
        actions: outcome.ok ? outcome.actions : trap(),
        role: outcome.ok ? "offload" : "trap",
      });
      cover();
    }
    if (chain === 0) {
      // What table 0 does not take from an uplink, the bridge behind it may still switch elsewhere.
      for (const dev of this.bridgedDevs())
        tc.push({
          chain,
          prio: tcPrio(0, "main"),
          match: {},
          indev: dev,
          actions: trap(),
          role: "trap",
        });
    }
    if (!poisoned && !shadowed)
      tc.push({ chain, prio: maxPrio, match: {}, actions: [{ type: "drop" }], role: "miss" });
    else if (poisoned && regs.has(CT_LOOKED))
      // what misses the chain goes to OVS too, and must not take the lookup's state along
      tc.push({ chain, prio: maxPrio, match: {}, actions: trapActions(true), role: "miss" });
    this.perChain.set(chain, { rules: tc, outcomes, poisoned });
  }

  /** Whether a packet of the chain can match: its registers, and its headers' known values, agree. */
  private registersAllow(match: Match, regs: Regs): boolean {
    for (const [name, mv] of Object.entries(match)) {
      if (!mv) continue;
      const v = fieldDef(name)?.pipelineOnly ? (regs.get(name) ?? 0n) : regs.get(knownKey(name));
      if (v !== undefined && (v & mv.mask) !== (mv.value & mv.mask)) return false;
    }
    return true;
  }

  /** Whether every packet of the chain matches the rule (given registersAllow): it matches known values only. */
  private matchesAll(rule: PipelineRule, regs: Regs): boolean {
    if (rule.opaqueMatch?.length) return false;
    for (const [name, mv] of Object.entries(rule.match)) {
      if (!mv || fieldDef(name)?.pipelineOnly) continue;
      if (regs.get(knownKey(name)) === undefined) return false;
    }
    return true;
  }

  /**
   * The rule's match as tc filters take it: header fields only, in_port as the
   * device; a match on the absence of a VLAN tag is left out on a profile that
   * matches VLANs (`untagged`: the caller traps tagged packets above an
   * offloaded rule; a trap without it is a coarser one), so that the rule's
   * filter is the same one whether it offloads or traps.
   */
  private headerMatch(
    rule: PipelineRule,
  ): { ok: true; match: Match; indev?: string; untagged: boolean } | { ok: false; reason: string } {
    const match = rule.match;
    const out: Match = {};
    if (rule.opaqueMatch?.length) {
      return { ok: false, reason: `match on ${rule.opaqueMatch.join(", ")} is not offloadable` };
    }
    let indev: string | undefined;
    let untagged = false;
    for (const [name, mv] of Object.entries(match) as [FieldName, Match[FieldName]][]) {
      if (!mv) continue;
      const def = fieldDef(name)!;
      if (def.pipelineOnly) continue;
      if (name === "in_port") {
        // planChain has set aside rules whose in_port the NIC does not see.
        indev = this.devOf(Number(mv.value));
        continue;
      }
      if (name === "vlan_vid" && vlanAbsent(mv) && this.profile.matches.includes("vlan_id")) {
        untagged = true;
        continue;
      }
      if (!def.key || !this.profile.matches.includes(def.key)) {
        return { ok: false, reason: `match on ${name} is not offloadable on ${this.profile.name}` };
      }
      if (name.startsWith("tun_")) {
        // Decapsulation happens in table 0's rules; later chains no longer see the tunnel metadata in tc.
        const tunnelIn = match.in_port && this.ports.tunnels.get(Number(match.in_port.value));
        if (!tunnelIn || rule.table !== 0) {
          return {
            ok: false,
            reason: `match on ${name} is offloadable only in table 0 together with in_port=<tunnel port>`,
          };
        }
      }
      out[name] = mv;
    }
    return { ok: true, match: out, indev, untagged };
  }

  /**
   * The part of a rule's match the NIC can express, for a coarse trap; undefined
   * when nothing narrower than "every packet" remains, in which case the rest
   * of the chain must stay in software.
   */
  private coarseMatch(rule: PipelineRule): { match: Match; indev?: string } | undefined {
    const out: Match = {};
    let indev: string | undefined;
    for (const [name, mv] of Object.entries(rule.match) as [FieldName, Match[FieldName]][]) {
      if (!mv) continue;
      const def = fieldDef(name)!;
      if (def.pipelineOnly) continue;
      if (name === "in_port") {
        indev = this.devOf(Number(mv.value));
        continue;
      }
      if (name === "vlan_vid" && vlanAbsent(mv)) continue; // flower cannot say it: a coarser trap
      if (!def.key || !this.profile.matches.includes(def.key) || name.startsWith("tun_")) continue;
      out[name] = mv;
    }
    if (Object.keys(out).length === 0 && indev === undefined) return undefined;
    return indev === undefined ? { match: out } : { match: out, indev };
  }

  /**
   * Whether every packet of `rule` in this chain has a TTL of 2 or more: the
   * chain's packets all have (TTL_OK), or, for each of TTL 0 and 1, a rule
   * above it takes every packet of `rule` with that TTL — a `catcher` of a
   * higher priority whose other matches `rule` matches too, with the same
   * value and mask (or that every packet of the chain meets: a register, a
   * known value). Such packets never reach `rule` in OVS, and in tc the
   * catcher, offloaded or a trap, comes first.
   */
  private ttlCovered(rule: PipelineRule, regs: Regs, catchers: readonly PipelineRule[]): boolean {
    if (regs.has(TTL_OK)) return true;
    const ethType = rule.match.eth_type;
    if (!ethType || ethType.mask !== 0xffffn || (ethType.value !== 0x800n && ethType.value !== 0x86ddn))
      return false;
    const covers = (c: PipelineRule): boolean => {
      // above it in tc too (priorities beyond 32766 share a band there)
      if (tcPrio(c.priority, "main") >= tcPrio(rule.priority, "main")) return false;
      for (const [name, mv] of Object.entries(c.match) as [FieldName, Match[FieldName]][]) {
        if (!mv || name === "nw_ttl") continue;
        if (fieldDef(name)?.pipelineOnly) continue; // registersAllow: every packet of the chain has it
        const known = regs.get(knownKey(name));
        if (known !== undefined && (known & mv.mask) === (mv.value & mv.mask)) continue;
        const own = rule.match[name];
        if (!own || own.value !== mv.value || own.mask !== mv.mask) return false;
      }
      return true;
    };
    return [0n, 1n].every((t) => catchers.some((c) => c.match.nw_ttl!.value === t && covers(c)));
  }

  /**
   * A rule's header matches that not every packet of the chain meets (a known
   * value that agrees is met), as sorted "field=value/mask" strings; registers
   * are left out (registersAllow: every packet of the chain meets them).
   */
  private uncertainPairs(rule: PipelineRule, regs: Regs): string[] {
    const out: string[] = [];
    for (const [name, mv] of Object.entries(rule.match) as [FieldName, Match[FieldName]][]) {
      if (!mv || fieldDef(name)?.pipelineOnly) continue;
      const known = regs.get(knownKey(name));
      if (known !== undefined && (known & mv.mask) === (mv.value & mv.mask)) continue;
      out.push(`${name}=${mv.value & mv.mask}/${mv.mask}`);
    }
    return out.sort();
  }

  /**
   * In a chain after a rewrite (its packets are few kinds): a rule above
   * `rule`, of a higher priority, whose every header match `rule` has too, so
   * that it takes every packet of `rule` (a learned default next hop above the
   * punt for an unknown one) — `rule` is never reached. Only rules with at
   * most two such matches are looked for, each subset of `rule`'s a lookup.
   */
  private coveredBy(
    rule: PipelineRule,
    regs: Regs,
    coverers: ReadonlyMap<string, PipelineRule>,
  ): PipelineRule | undefined {
    if (!coverers.size) return undefined;
    const pairs = this.uncertainPairs(rule, regs);
    const keys = [""];
    for (let i = 0; i < pairs.length; i++) {
      keys.push(pairs[i]!);
      for (let j = i + 1; j < pairs.length; j++) keys.push(`${pairs[i]}&${pairs[j]}`);
    }
    for (const k of keys) {
      const a = coverers.get(k);
      if (a && a.priority > rule.priority) return a;
    }
    return undefined;
  }

  /** The uplinks standing in for patch ports. */
  private bridgedDevs(): string[] {
    const out: string[] = [];
    for (const port of this.ports.bridged?.keys() ?? []) {
      const dev = this.ports.hardware.get(port);
      if (dev) out.push(dev);
    }
    return out;
  }

  /**
   * Table 0's rules for a patch port mapped to an uplink: only one that takes
   * packets by an exact unicast destination MAC is planned (and not at
   * priority 0, where chain 0's trap for the uplink sits).
   */
  private uplinkGate(chain: number, rule: PipelineRule, inPort: number | undefined): Exclusion | undefined {
    if (chain !== 0 || inPort === undefined || !this.ports.bridged?.has(inPort)) return undefined;
    const dst = rule.match.eth_dst;
    const own = this.ports.bridged.get(inPort)!;
    if (
      dst &&
      dst.mask === fullMask(48) &&
      isUnicastMac(dst.value) &&
      !own.includes(dst.value) &&
      rule.priority > 0
    )
      return undefined;
    return {
      reason: `from patch port ${inPort}, only packets for a MAC of br-int's own (an exact unicast eth_dst, not one of the bridge's own ports) leave the bridge behind it: the rest may be for its other ports`,
      scope: "actions",
    };
  }

  /** Why an output to a patch port mapped to an uplink must stay in OVS, if it must. */
  private bridgedOutput(port: number, rule: PipelineRule, regs: Regs): string | undefined {
    const own = this.ports.bridged?.get(port);
    if (!own) return undefined;
    const m = rule.match.eth_dst;
    const dst = regs.get(knownKey("eth_dst")) ?? (m && m.mask === fullMask(48) ? m.value : undefined);
    if (dst === undefined) {
      return `output to patch port ${port}: the bridge behind it switches by destination MAC, which this rule does not know`;
    }
    if (!isUnicastMac(dst))
      return `output to patch port ${port}: the bridge behind it floods a group MAC to all its ports`;
    if (own.includes(dst))
      return `output to patch port ${port}: the destination MAC is the bridge's own port's`;
    return undefined;
  }

  /** The netdev tc sees a port's packets on: its representor or uplink, or the tunnel device. */
  private devOf(port: number): string | undefined {
    const t = this.ports.tunnels.get(port);
    return this.ports.hardware.get(port) ?? (t && tunnelDev[t]);
  }

  private need(kind: ActionKind, what: string): string | undefined {
    return this.profile.actions.includes(kind)
      ? undefined
      : `${what} is not offloadable on ${this.profile.name}`;
  }

  private translate(rule: PipelineRule, regsIn: Regs, queue: number[], ttlOk: boolean): RuleOutcome {
    const regs = new Map(regsIn);
    if (ttlOk) regs.set(TTL_OK, 1n);
    const actions: TcAction[] = [];
    const next: number[] = [];
    const hairpins: string[] = [];
    let modifies: string | undefined;
    let decTtl = false;
    /** The rule set or decremented the TTL: a later dec_ttl's traps would test the wrong one. */
    let ttlTouched = false;
    const fail = (reason: string): RuleOutcome => ({
      ok: false,
      reason: `not offloaded: ${reason}`,
      actions: [],
      next,
      modifies,
      decTtl,
      hairpins,
    });
    const inPort = rule.match.in_port ? Number(rule.match.in_port.value) : undefined;
    const inTunnel = inPort !== undefined ? this.ports.tunnels.get(inPort) : undefined;
    if (inTunnel) {
      if (!this.profile.tunnels.includes(inTunnel))
        return fail(`${inTunnel} decapsulation is not offloadable`);
      const miss = this.need("tunnel_decap", "tunnel decapsulation");
      if (miss) return fail(miss);
      // The metadata stays on the packet until it is output (see the module comment).
      regs.set(DECAP, 1n);
    }
    let released = false;
    const release = (): void => {
      if (released || !regs.get(DECAP)) return;
      actions.push({ type: "tunnel_unset" });
      released = true;
    };
    let outputs = 0;
    let encapsulated = false;
    let terminal = false;
    let pendingTunnel: Extract<Action, { type: "set_tunnel" }> | undefined;
    for (let i = 0; i < rule.actions.length; i++) {
      const a = rule.actions[i]!;
      if (terminal) return fail("actions after a goto are not offloadable");
      switch (a.type) {
        case "controller":
          return fail("action CONTROLLER is never offloadable: the packet must reach the local agent");
        case "other":
          return fail(`action ${a.name} is never offloadable`);
        case "set_field": {
          const def = fieldDef(a.field);
          if (def?.pipelineOnly) {
            regs.set(a.field, a.value & fullMask(def.bits));
            break;
          }
          if (!def?.rewrite) return fail(`set_field ${a.field} has no tc rewrite`);
          const miss = this.need(def.rewrite, `rewrite of ${a.field}`);
          if (miss) return fail(miss);
          actions.push({ type: "pedit", field: a.field, value: a.value & fullMask(def.bits) });
          regs.set(knownKey(a.field), a.value & fullMask(def.bits));
          if (a.field === "nw_ttl") {
            if (a.value >= 2n) regs.set(TTL_OK, 1n);
            else regs.delete(TTL_OK);
            ttlTouched = true;
          }
          modifies = "rewrites the packet";
          break;
        }
        case "dec_ttl": {
          const miss =
            this.need("pedit_ttl", "dec_ttl") ??
            (this.profile.matches.includes("ip_ttl")
              ? undefined
              : "dec_ttl needs TTL matching to trap TTL 0/1");
          if (miss) return fail(miss);
          // The traps match the TTL a packet arrives with: this rule must not have changed it.
          const known = regs.get(knownKey("nw_ttl"));
          if (known !== undefined && known <= 1n)
            return fail(`dec_ttl of a TTL set to ${known}: OVS sends the packet to the controller`);
          if (ttlTouched && known === undefined && !regs.has(TTL_OK))
            return fail("a second dec_ttl in one rule is not offloadable");
          actions.push({ type: "dec_ttl" });
          forget(regs, ["nw_ttl"]);
          modifies = "rewrites the packet";
          // OVS punts TTL 0 and 1 here: traps for them, unless no such packet gets here
          if (!regs.has(TTL_OK)) decTtl = true;
          regs.delete(TTL_OK);
          ttlTouched = true;
          break;
        }
        case "push_vlan": {
          const miss = this.need("vlan_push", "push_vlan");
          if (miss) return fail(miss);
          actions.push({ type: "vlan_push", vid: a.vid });
          forget(regs, ["vlan_vid", "vlan_pcp"]);
          modifies = "rewrites the packet";
          break;
        }
        case "pop_vlan": {
          const miss = this.need("vlan_pop", "pop_vlan");
          if (miss) return fail(miss);
          actions.push({ type: "vlan_pop" });
          forget(regs, ["vlan_vid", "vlan_pcp"]);
          modifies = "rewrites the packet";
          break;
        }
        case "set_tunnel":
          if (!this.profile.tunnels.includes(a.tunnel))
            return fail(`${a.tunnel} encapsulation is not offloadable`);
          if (a.options && a.options > this.profile.geneveOptions) {
            return fail(`${a.options} Geneve option(s) exceed what ${this.profile.name} can set`);
          }
          pendingTunnel = a;
          break;
        case "output": {
          if (encapsulated) return fail("output after a tunnel encapsulation is not offloadable");
          if (a.port === inPort) break; // OVS drops output to the ingress port
          const tunnel = this.ports.tunnels.get(a.port);
          if (tunnel) {
            if (!pendingTunnel || pendingTunnel.tunnel !== tunnel) {
              return fail(`output to tunnel port ${a.port} without a ${tunnel} key set first`);
            }
            const miss = this.need("tunnel_encap", "tunnel encapsulation");
            if (miss) return fail(miss);
            // A packet that came in from this tunnel must not be sent back into it: OVS drops
            // output to the ingress port, so such packets are trapped like any other hairpin.
            if (inPort === undefined) hairpins.push(tunnelDev[tunnel]);
            const dst = pendingTunnel.dstFrom ? (regs.get(pendingTunnel.dstFrom) ?? 0n) : pendingTunnel.dst;
            release();
            actions.push({ type: "tunnel_set", id: pendingTunnel.id, dst, tunnel });
            actions.push({ type: "mirror", dev: tunnelDev[tunnel] });
            encapsulated = true;
            outputs++;
            break;
          }
          const dev = this.ports.hardware.get(a.port);
          if (!dev) return fail(`output to port ${a.port}, which is not an eswitch port`);
          const bridged = this.bridgedOutput(a.port, rule, regs);
          if (bridged) return fail(bridged);
          if (inPort === undefined) hairpins.push(dev);
          release();
          actions.push({ type: "mirror", dev });
          outputs++;
          break;
        }
        case "goto": {
          if (i !== rule.actions.length - 1)
            return fail("resubmit followed by more actions is not offloadable");
          if (a.table <= rule.table) return fail("a goto to an earlier or the same table is not offloadable");
          if (outputs) return fail("output before a goto is not offloadable");
          const { chain, fresh } = this.chainFor(a.table, regs);
          if (fresh) queue.push(chain);
          next.push(chain);
          if (!this.profile.actions.includes("goto_chain") || chain > this.profile.maxChain) {
            return fail(`goto chain ${chain} is beyond what ${this.profile.name} supports`);
          }
          actions.push({ type: "goto", chain });
          terminal = true;
          break;
        }
        case "ct": {
          if (!this.profile.conntrack || !this.profile.actions.includes("ct")) {
            return fail(`connection tracking is not offloaded on ${this.profile.name}`);
          }
          if (a.nat && !this.profile.actions.includes("ct_nat")) return fail("ct nat is not offloadable");
          if (a.mark) return fail("a ct commit that sets ct_mark is not offloaded");
          if (a.table === undefined) return fail("ct without a recirculation table is not offloadable");
          if (a.table <= rule.table) return fail("ct recirculation to an earlier table is not offloadable");
          if (outputs) return fail("output before ct is not offloadable");
          // A commit or NAT changes state OVS would see if a later table handed the packet over; so
          // does the lookup itself when OVS, rerunning the pipeline, matches conntrack state before it.
          const seenBy = this.conntrackMatchedBy(rule.table);
          if (a.commit || a.nat) modifies = "commits the connection";
          if (a.nat) forget(regs, NAT_FIELDS);
          else if (seenBy !== undefined && !a.commit) regs.set(CT_LOOKED, 1n);
          else if (seenBy !== undefined)
            modifies = `leaves conntrack state on the packet, which table ${seenBy} matches`;
          const { chain, fresh } = this.chainFor(a.table, regs);
          if (fresh) queue.push(chain);
          next.push(chain);
          actions.push(
            {
              type: "ct",
              zone: a.zone,
              commit: a.commit,
              nat: a.nat,
              ...(a.natRange ? { natRange: a.natRange } : {}),
            },
            { type: "goto", chain },
          );
          terminal = true;
          break;
        }
      }
    }
    if (outputs > 1) {
      const miss = this.need("mirror", "output to several ports (flood)");
      if (miss) return fail(miss);
    }
    if (!terminal) {
      // Rewrites after the last output change nothing OVS would emit: drop them; the last output redirects.
      let last = actions.length - 1;
      while (last >= 0 && actions[last]!.type !== "mirror") last--;
      actions.length = last + 1;
      const tail = actions[last];
      if (tail && tail.type === "mirror") actions[last] = { type: "redirect", dev: tail.dev };
      else actions.push({ type: "drop" });
    }
    return { ok: true, reason: "offloaded", actions, next, modifies, decTtl, hairpins };
  }

  /**
   * Turn rules that change the packet and lead to a software-reaching chain
   * into traps, until nothing changes. The fixpoint starts from the rules as
   * translated: a trap set by an earlier settle() is first turned back, so a
   * chain that no longer reaches software gives its rewrites back to the NIC.
   */
  private settle(): void {
    const start = new Map<TcRule, TcRule>();
    for (const [tcRule, actions] of this.settled) {
      start.set(tcRule, { ...tcRule });
      const o = this.perChain.get(tcRule.chain)!.outcomes.get(tcRule.ruleId!)!;
      o.ok = true;
      o.reason = "offloaded";
      tcRule.role = "offload";
      tcRule.actions = actions;
    }
    this.settled.clear();
    for (;;) {
      const reaches = this.reachesSoftware();
      let changed = false;
      for (const pc of this.perChain.values()) {
        for (const tcRule of pc.rules) {
          if (tcRule.role !== "offload" || !tcRule.ruleId) continue;
          const o = pc.outcomes.get(tcRule.ruleId)!;
          if (o.modifies && o.next.some((c) => reaches.get(c))) {
            if (!start.has(tcRule)) start.set(tcRule, { ...tcRule });
            this.settled.set(tcRule, tcRule.actions);
            o.ok = false;
            o.reason = `not offloaded: it ${o.modifies} and a later table may hand the packet to OVS, which must see it unchanged`;
            tcRule.role = "trap";
            tcRule.actions = trapActions(this.chainInfo.get(tcRule.chain)!.regs.has(CT_LOOKED));
            changed = true;
          }
        }
      }
      if (!changed) break;
    }
    for (const [tcRule, before] of start) {
      if (tcKey(before) !== tcKey(tcRule)) this.settleLog?.push({ rule: tcRule, before });
    }
  }

  /**
   * The devices whose packets can enter each chain: every device enters chain 0, and a rule
   * passes on what enters its chain — only its indev, if it has one. (Gotos lead to later
   * tables, so one pass in table order is enough.) Undefined: every device.
   */
  private reachingDevices(): Map<number, Set<string> | undefined> {
    const devs = new Map<number, Set<string> | undefined>([[0, undefined]]);
    const order = [...this.perChain.keys()].sort(
      (a, b) => this.chainInfo.get(a)!.table - this.chainInfo.get(b)!.table || a - b,
    );
    for (const c of order) {
      if (!devs.has(c)) continue;
      const from = devs.get(c);
      const pc = this.perChain.get(c)!;
      for (const t of pc.rules) {
        if (t.role !== "offload" || !t.ruleId) continue;
        if (t.indev !== undefined && from !== undefined && !from.has(t.indev)) continue;
        const passed = t.indev !== undefined ? new Set([t.indev]) : from;
        for (const n of pc.outcomes.get(t.ruleId)?.next ?? []) {
          if (!devs.has(n)) devs.set(n, passed && new Set(passed));
          else {
            const have = devs.get(n);
            if (have === undefined) continue;
            if (passed === undefined) devs.set(n, undefined);
            else for (const d of passed) have.add(d);
          }
        }
      }
    }
    return devs;
  }

  private reachesSoftware(): Map<number, boolean> {
    const memo = new Map<number, boolean>();
    const devs = this.reachingDevices();
    // A trap for packets of a device that never enters the chain (a hairpin guard for a port
    // other than the one the chain's packets came from) hands nothing to OVS.
    const live = (c: number, t: TcRule): boolean => {
      const d = devs.get(c);
      return t.indev === undefined || d === undefined || d.has(t.indev);
    };
    const visit = (c: number, stack: Set<number>): boolean => {
      if (memo.has(c)) return memo.get(c)!;
      if (stack.has(c)) return false;
      stack.add(c);
      const pc = this.perChain.get(c);
      let r = !pc || pc.poisoned || pc.rules.some((t) => t.role === "trap" && live(c, t));
      if (!r && pc) {
        for (const o of pc.outcomes.values()) if (o.ok && o.next.some((n) => visit(n, stack))) r = true;
      }
      stack.delete(c);
      memo.set(c, r);
      return r;
    };
    for (const c of this.perChain.keys()) visit(c, new Set());
    return memo;
  }

  /** Chains reachable from chain 0 through offloaded gotos (stale chains drop out after an update). */
  private reachableChains(): number[] {
    const seen = new Set<number>([0]);
    const queue = [0];
    while (queue.length) {
      const c = queue.shift()!;
      for (const o of this.perChain.get(c)?.outcomes.values() ?? []) {
        for (const n of o.next) {
          if (!seen.has(n)) {
            seen.add(n);
            queue.push(n);
          }
        }
      }
    }
    return [...seen].sort((a, b) => a - b);
  }

  /** A chain's identity, the same in every plan: its table and the register values it is specialised for. */
  chainIdentity(chain: number): string | undefined {
    const info = this.chainInfo.get(chain);
    return info && regsKey(info.table, info.regs);
  }

  result(): Plan {
    const chains = this.reachableChains();
    const reaches = this.reachesSoftware();
    const decisions = new Map<string, Decision>();
    for (const rules of this.byTable.values()) {
      for (const r of rules.values()) {
        decisions.set(r.id, { ruleId: r.id, offloaded: false, chains: [], reason: "" });
      }
    }
    for (const c of chains) {
      for (const [id, o] of this.perChain.get(c)?.outcomes ?? []) {
        const d = decisions.get(id);
        if (!d) continue;
        if (o.ok) {
          d.chains.push(c);
          if (!d.offloaded) d.reason = "offloaded";
          d.offloaded = true;
        } else if (!d.offloaded) d.reason = o.reason;
      }
    }
    for (const d of decisions.values()) {
      if (!d.reason) d.reason = "not offloaded: no packet reaches this rule through hardware chains";
      if (d.offloaded)
        d.reason = `offloaded in chain${d.chains.length > 1 ? "s" : ""} ${d.chains.join(", ")}`;
    }
    return {
      tc: chains.flatMap((c) => this.perChain.get(c)?.rules ?? []),
      decisions,
      chains: chains.map((c) => {
        const info = this.chainInfo.get(c)!;
        const values = known(info.regs);
        return {
          chain: c,
          table: info.table,
          registers: Object.fromEntries(
            [...info.regs].filter(
              ([k, v]) => v !== 0n && k !== DECAP && k !== TTL_OK && k !== CT_LOOKED && !k.startsWith(KNOWN),
            ),
          ),
          ...(values && { known: values }),
          ...(info.regs.has(CT_LOOKED) && { clearsCt: true }),
          reachesSoftware: reaches.get(c) ?? true,
        };
      }),
    };
  }
}

function tcKey(r: TcRule): string {
  let k = `${r.chain}/${r.prio}/${r.indev ?? ""}/${r.role}/${r.ruleId ?? ""}/`;
  for (const [f, mv] of Object.entries(r.match)) k += `${f}=${mv!.value}/${mv!.mask},`;
  for (const a of r.actions)
    k += `${a.type}:${"dev" in a ? a.dev : ""}${"chain" in a ? a.chain : ""}${"field" in a ? `${a.field}=${a.value}` : ""}${"vid" in a ? a.vid : ""}${"id" in a ? `${a.id}@${a.dst}` : ""}${"zone" in a ? `${a.zone}${a.commit}${a.nat}${a.natRange ? JSON.stringify(a.natRange) : ""}` : ""};`;
  return k;
}

function matchesConntrack(r: PipelineRule): boolean {
  return Object.keys(r.match).some((f) => fieldDef(f)?.conntrack);
}

const byPriority = (a: PipelineRule, b: PipelineRule) =>
  b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

interface TableIndex {
  /** Rules without a single exact register match: candidates in every chain of the table. */
  generic: PipelineRule[];
  /** "reg6=5" → rules matching exactly that register value (and maybe more). */
  keyed: Map<string, PipelineRule[]>;
  regNames: string[];
}

function buildIndex(rules: Iterable<PipelineRule>): TableIndex {
  const generic: PipelineRule[] = [];
  const keyed = new Map<string, PipelineRule[]>();
  const regNames = new Set<string>();
  for (const r of rules) {
    const regMatches = Object.entries(r.match).filter(([f]) => fieldDef(f)?.pipelineOnly);
    const [first] = regMatches;
    if (!first || !first[1] || first[1].mask !== fullMask(fieldDef(first[0])!.bits)) {
      generic.push(r);
      continue;
    }
    const key = `${first[0]}=${first[1].value}`;
    regNames.add(first[0]);
    const list = keyed.get(key);
    if (list) list.push(r);
    else keyed.set(key, [r]);
  }
  return { generic, keyed, regNames: [...regNames] };
}

export { fields };
export type { MatchKey };
