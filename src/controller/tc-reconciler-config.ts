/**
 * The agent's `offload` keys for the offload datapath (tc-reconciler.ts),
 * next to the OVS other_config keys config.ts declares (hwOffload, tcPolicy,
 * maxIdleMs, nOffloadThreads). Every key is also a flag (`--offload-mode
 * planner`, `--offload-ports 'fdv*'`, `--offload-capacity 60`).
 *
 *   mode             none    OpenFlow only; flowdrake's own tc filters, if a
 *                            previous run left any, are removed
 *                    ovs     OVS's own tc offload (hw-offload=true unless
 *                            hwOffload says otherwise), as before
 *                    planner flowdrake plans the NIC's share and installs it
 *                            as tc-flower filters in front of OVS
 *                    default: ovs when an OVS key is set, else none
 *   profile          the NIC profile to plan for (default: discovered from
 *                    the eswitch that holds br-int's representors)
 *   ports            netdev globs taken as eswitch ports when sysfs does not
 *                    say so (veth "representors" in the kernel lane)
 *   uplinks          physical bridge → its uplink netdev (`{br-ex: p0}`): the
 *                    patch port to that bridge counts as that uplink, for
 *                    what its destination MAC says the bridge would send
 *                    there (NAT traffic); the operator says by it that the
 *                    bridge switches with NORMAL and holds only the patch
 *                    port, the uplink and its own ports
 *   tcFlags          auto (skip_sw on a NIC, skip_hw for `ports`), skip_sw,
 *                    skip_hw or none
 *   capacity         filters the NIC may hold (default: the profile's)
 *   statsIntervalMs  how often counters are read (budget, metrics, explain)
 *   dwellMs          the budget's hysteresis: a flow stays demoted (or
 *                    promoted) at least this long
 *   socket           the unix socket `flowdrake caps` asks for the mode and
 *                    `caps --explain agent` for the installed state (default:
 *                    flowdrake.<bridge>.sock next to a unix ovsdb socket, so
 *                    that caps finds it from its own --ovsdb; else in
 *                    /var/run/flowdrake)
 */
import { dirname } from "node:path";
import { z } from "zod";
import { profiles } from "../offload/profiles/index.js";

/** The explain socket of the agent of `bridge` whose OVSDB is `ovsdb`, unless configured. */
export function offloadSocket(c: { ovsdb: string; bridge: string; offload: { socket?: string } }): string {
  if (c.offload.socket) return c.offload.socket;
  const dir = c.ovsdb.startsWith("unix:") ? dirname(c.ovsdb.slice(5)) : "/var/run/flowdrake";
  return `${dir}/flowdrake.${c.bridge}.sock`;
}

export const offloadDatapathKeys = {
  mode: z.enum(["none", "ovs", "planner"]).optional(),
  profile: z
    .string()
    .refine((id) => profiles.some((p) => p.id === id), {
      message: `is not a known NIC profile (${profiles.map((p) => p.id).join(", ")})`,
    })
    .optional(),
  ports: z.array(z.string().min(1)).default([]),
  uplinks: z.record(z.string().min(1).max(15), z.string().min(1).max(15)).default({}),
  tcFlags: z.enum(["auto", "skip_sw", "skip_hw", "none"]).default("auto"),
  capacity: z.number().int().nonnegative().optional(),
  statsIntervalMs: z.number().int().min(100).default(2000),
  dwellMs: z.number().int().nonnegative().default(10_000),
  socket: z.string().min(1).optional(),
};

export type OffloadMode = "none" | "ovs" | "planner";

interface ModeInput {
  mode?: OffloadMode;
  hwOffload?: boolean;
  tcPolicy?: string;
  maxIdleMs?: number;
  nOffloadThreads?: number;
}

/** The mode asked for: explicit, else ovs when an OVS other_config key is set, else none. */
export function requestedMode(o: ModeInput): OffloadMode {
  if (o.mode) return o.mode;
  const ovsKeys = [o.hwOffload, o.tcPolicy, o.maxIdleMs, o.nOffloadThreads];
  return ovsKeys.some((v) => v !== undefined) ? "ovs" : "none";
}

/** planner mode and OVS's own offload would both put filters on the same ports. */
export function checkOffloadMode(o: ModeInput, ctx: z.RefinementCtx): void {
  if (o.mode === "planner" && o.hwOffload === true) {
    ctx.addIssue({
      code: "custom",
      path: ["hwOffload"],
      message:
        "must not be true with mode planner: OVS's own offload and flowdrake's would share the ports' tc",
    });
  }
}
