/**
 * The OVSDB side of offload: `other_config` keys on the Open_vSwitch row that
 * ovs-vswitchd's tc offload provider reads. hw-offload, tc-policy and
 * n-offload-threads are read once when ovs-vswitchd starts, so changing them
 * takes a restart; max-idle (datapath flow idle timeout, ms) is live. The agent
 * applies them from its configuration and says plainly when a restart is due;
 * `flowdrake caps` shows the live values.
 */
import type { OvsdbClient } from "../ovsdb/client.js";
import { setOtherConfig } from "../ovsdb/helpers.js";
import { op } from "../ovsdb/ops.js";
import { UsageError } from "../util/errors.js";
import type { OvsOffloadSettings } from "./caps/source.js";

export type TcPolicy = "none" | "skip_sw" | "skip_hw";

export interface OffloadConfig {
  hwOffload?: boolean;
  tcPolicy?: TcPolicy;
  maxIdleMs?: number;
  nOffloadThreads?: number;
}

/** other_config key, how to render the value, and whether ovs-vswitchd reads it only at start. */
const keys = {
  hwOffload: { key: "hw-offload", restart: true, render: (v: boolean) => String(v) },
  tcPolicy: { key: "tc-policy", restart: true, render: (v: TcPolicy) => v },
  maxIdleMs: { key: "max-idle", restart: false, render: (v: number) => String(v) },
  nOffloadThreads: { key: "n-offload-threads", restart: true, render: (v: number) => String(v) },
} as const;

export function validateOffloadConfig(c: OffloadConfig): void {
  if (c.tcPolicy !== undefined && !["none", "skip_sw", "skip_hw"].includes(c.tcPolicy)) {
    throw new UsageError(`tc-policy must be none, skip_sw or skip_hw, not ${String(c.tcPolicy)}`);
  }
  if (c.maxIdleMs !== undefined && (!Number.isInteger(c.maxIdleMs) || c.maxIdleMs < 500)) {
    throw new UsageError(`max-idle must be an integer number of milliseconds ≥ 500, not ${c.maxIdleMs}`);
  }
  if (c.nOffloadThreads !== undefined && (!Number.isInteger(c.nOffloadThreads) || c.nOffloadThreads < 1)) {
    throw new UsageError(`n-offload-threads must be a positive integer, not ${c.nOffloadThreads}`);
  }
}

export async function readOffloadSettings(client: OvsdbClient, source: string): Promise<OvsOffloadSettings> {
  const [r] = await client.transact("Open_vSwitch", [op.select("Open_vSwitch", [], ["other_config"])]);
  // other_config is a string→string map: ["map", [[key, value], …]] on the wire (RFC 7047 5.1).
  const raw = r?.rows?.[0]?.other_config as ["map", [string, string][]] | undefined;
  const other = new Map(raw?.[1] ?? []);
  const get = (k: string): string | undefined => other.get(k);
  return {
    hwOffload: get("hw-offload"),
    tcPolicy: get("tc-policy"),
    maxIdle: get("max-idle"),
    nOffloadThreads: get("n-offload-threads"),
    source,
  };
}

export interface ApplyResult {
  changed: string[];
  restartNeeded: boolean;
  message: string;
}

/** Write the configured keys that differ; nothing is written when validation fails. */
export async function applyOffloadSettings(client: OvsdbClient, c: OffloadConfig): Promise<ApplyResult> {
  validateOffloadConfig(c);
  const live = await readOffloadSettings(client, "ovsdb");
  const current: Record<keyof OffloadConfig, string | undefined> = {
    hwOffload: live.hwOffload,
    tcPolicy: live.tcPolicy,
    maxIdleMs: live.maxIdle,
    nOffloadThreads: live.nOffloadThreads,
  };
  const changed: string[] = [];
  let restartNeeded = false;
  for (const name of Object.keys(keys) as (keyof OffloadConfig)[]) {
    const want = c[name];
    if (want === undefined) continue;
    const spec = keys[name];
    const value = (spec.render as (v: unknown) => string)(want);
    if (current[name] === value) continue;
    await setOtherConfig(client, spec.key, value);
    changed.push(`${spec.key}=${value}`);
    if (spec.restart) restartNeeded = true;
  }
  const message = !changed.length
    ? "OVS offload settings already as configured"
    : `set other_config ${changed.join(" ")}${restartNeeded ? "; restart ovs-vswitchd for hw-offload/tc-policy/n-offload-threads to take effect (it reads them only at start)" : ""}`;
  return { changed, restartNeeded, message };
}
