/**
 * A NIC's tc table for host tests: the hardware we do not have. It stands in
 * for the kernel's tc on an eswitch's ports — the part of it that a NIC
 * decides — so that the agent's offload datapath can be driven on the host
 * (whose kernel has no cls_flower; the kernel lane runs the real one):
 *
 *   - filters per device, keyed by (chain, prio, handle) as the kernel keys
 *     them; every request is encoded to the netlink bytes the agent would
 *     send and decoded from them, so what is held is what the bytes said;
 *   - add refuses a taken handle (EEXIST), replace and delete a missing one
 *     (ENOENT), every add beyond `capacity` filters (ENOSPC, what mlx5
 *     answers when its flow tables are full), and any rule `refuse` names
 *     (EOPNOTSUPP with the driver's message, as for a key it cannot
 *     offload);
 *   - counters the test sets (what the NIC would have counted), and whether
 *     it holds a skip_sw filter in hardware (in_hw, by default yes);
 *   - foreign filters (OVS's, an operator's) the test puts there;
 *   - a log of every operation received.
 */
import type {
  FilterCounters,
  KernelFilter,
  KernelOp,
  OpError,
  TcDatapath,
} from "../../src/offload/datapath/kernel.js";
import { kernelMessage, ourFilter } from "../../src/offload/datapath/kernel.js";
import { decodeNlmsgs } from "../../src/offload/netlink/framing.js";
import { decodeFilter, encodeRequest } from "../../src/offload/netlink/tc/client.js";
import { decodeTcMessage } from "../../src/offload/netlink/tc/message.js";
import type { FlowerRule } from "../../src/offload/netlink/tc/rule.js";

interface Held {
  rule: FlowerRule;
  foreign: boolean;
}

export class SimulatedNic implements TcDatapath {
  private readonly links: Map<string, number>;
  private readonly filters = new Map<string, Map<string, Held>>();
  /** Every operation received, in order. */
  readonly log: KernelOp[] = [];
  readonly ingress = new Set<number>();
  capacity = Number.POSITIVE_INFINITY;
  /** Whether the NIC holds a skip_sw filter it took (in_hw). */
  inHw: (rule: FlowerRule, dev: string) => boolean = () => true;
  /** A message for a rule the NIC will not take, or undefined. */
  refuse: (rule: FlowerRule, dev: string) => string | undefined = () => undefined;
  private readonly counters = new Map<string, FilterCounters>();

  constructor(devices: readonly string[]) {
    this.links = new Map(devices.map((d, i) => [d, 100 + i]));
  }

  addDevice(dev: string): void {
    if (!this.links.has(dev)) this.links.set(dev, 100 + this.links.size);
  }

  private on(dev: string): Map<string, Held> {
    let m = this.filters.get(dev);
    if (!m) this.filters.set(dev, (m = new Map()));
    return m;
  }

  private total(): number {
    let n = 0;
    for (const m of this.filters.values()) for (const h of m.values()) if (!h.foreign) n++;
    return n;
  }

  /** Put a filter that is not flowdrake's on `dev`. */
  addForeign(dev: string, rule: FlowerRule & { handle: number }): void {
    this.on(dev).set(`${rule.chain ?? 0}/${rule.prio}/${rule.handle}`, { rule, foreign: true });
  }

  /** flowdrake's filters on `dev` as the kernel would list them. */
  ours(dev: string): KernelFilter[] {
    const ifindex = this.links.get(dev)!;
    return [...(this.filters.get(dev)?.values() ?? [])]
      .map((h) =>
        ourFilter(dev, {
          ifindex,
          parent: 0xfffffff2,
          kind: "flower",
          chain: h.rule.chain ?? 0,
          prio: h.rule.prio,
          protocol: h.rule.protocol,
          handle: h.rule.handle ?? 0,
          rule: this.withFlags(dev, this.withCounters(dev, h.rule)),
        }),
      )
      .filter((f): f is KernelFilter => f !== undefined);
  }

  /** Lose flowdrake's filters (a NIC reset, a host reboot); foreign ones stay. */
  forgetOurs(): void {
    for (const m of this.filters.values()) for (const [k, h] of m) if (!h.foreign) m.delete(k);
  }

  rules(dev: string): FlowerRule[] {
    return [...(this.filters.get(dev)?.values() ?? [])].map((h) => h.rule);
  }

  foreign(dev: string): FlowerRule[] {
    return [...(this.filters.get(dev)?.values() ?? [])].filter((h) => h.foreign).map((h) => h.rule);
  }

  /** Set what the NIC counted on a filter (by device and handle). */
  count(dev: string, handle: number, c: Partial<FilterCounters>): void {
    const k = `${dev}#${handle}`;
    this.counters.set(k, { packets: 0, bytes: 0, hwPackets: 0, hwBytes: 0, ...this.counters.get(k), ...c });
  }

  private withFlags(dev: string, rule: FlowerRule): FlowerRule {
    if (!rule.flags?.skipSw) return rule;
    return {
      ...rule,
      flags: { ...rule.flags, ...(this.inHw(rule, dev) ? { inHw: true } : { notInHw: true }) },
    };
  }

  private withCounters(dev: string, rule: FlowerRule): FlowerRule {
    const c = this.counters.get(`${dev}#${rule.handle}`);
    if (!c || !rule.actions.length) return rule;
    const [first, ...rest] = rule.actions;
    const stats = {
      packets: c.packets,
      bytes: BigInt(c.bytes),
      hwPackets: c.hwPackets,
      hwBytes: BigInt(c.hwBytes),
    };
    return { ...rule, actions: [{ ...first!, stats }, ...rest] };
  }

  devices(): Promise<Map<string, number>> {
    return Promise.resolve(new Map(this.links));
  }

  ensureIngress(ifindex: number): Promise<void> {
    this.ingress.add(ifindex);
    return Promise.resolve();
  }

  /** A device whose filters cannot be read (the dump fails with this message), or undefined. */
  unreadable: (dev: string) => string | undefined = () => undefined;

  dump(dev: string): Promise<{ ours: KernelFilter[]; foreign: number }> {
    const err = this.unreadable(dev);
    if (err !== undefined) return Promise.reject(new Error(err));
    return Promise.resolve({ ours: this.ours(dev), foreign: this.foreign(dev).length });
  }

  send(ops: readonly KernelOp[]): Promise<OpError[]> {
    const errors: OpError[] = [];
    ops.forEach((op, index) => {
      this.log.push(op);
      const fail = (errno: number, errnoName: string, message: string) =>
        errors.push({ index, errno, errnoName, message });
      const m = this.on(op.dev);
      if (op.op === "delete") {
        const k = `${op.chain}/${op.prio}/${op.handle}`;
        if (!m.delete(k)) fail(2, "ENOENT", "ENOENT, no such object: Filter with specified handle not found");
        return;
      }
      const k = `${op.rule.chain ?? 0}/${op.rule.prio}/${op.handle}`;
      const have = m.get(k);
      if (op.op === "add" && have) return void fail(17, "EEXIST", "EEXIST, the object exists");
      if (op.op === "replace" && !have) return void fail(2, "ENOENT", "ENOENT, no such object");
      const refusal = this.refuse(op.rule, op.dev);
      if (refusal) return void fail(95, "EOPNOTSUPP", `EOPNOTSUPP, operation not supported: ${refusal}`);
      if (op.op === "add" && this.total() >= this.capacity)
        return void fail(28, "ENOSPC", "ENOSPC, no space left on device: the NIC's flow table is full");
      const [msg] = decodeNlmsgs(encodeRequest(kernelMessage(op)));
      const rule = decodeFilter(decodeTcMessage(msg!)).rule!;
      m.set(k, { rule, foreign: false });
      this.counters.delete(`${op.dev}#${op.handle}`);
    });
    return Promise.resolve(errors);
  }

  close(): void {}
}
