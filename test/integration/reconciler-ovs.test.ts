/**
 * The OpenFlow reconciler against a real ovs-vswitchd: changes that arrive
 * while a sync is on the wire (a packet-in handler installing a reactive flow
 * during an NB pass) are sent by the next sync and not forgotten, a bundle
 * with a rejected flow fails only its owner, and the installed state it keeps
 * matches what OVS holds.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { desiredFlow, type OwnerChange } from "../../src/controller/engine.js";
import { OpenFlowReconciler } from "../../src/controller/reconciler.js";
import { cookieFor, flow } from "../../src/datapath/index.js";
import { connectOpenFlow } from "../../src/openflow/client.js";
import type { OfConnection } from "../../src/openflow/connection.js";
import type { Flow } from "../../src/openflow/flow.js";
import { useOvsSandbox } from "../harness/index.js";

const sandbox = useOvsSandbox({ label: "reconciler", datapath: "dummy" });
let conn: OfConnection;

beforeEach(async () => {
  conn = await connectOpenFlow(sandbox().mgmtRemote("br-int"));
  await sandbox().ofctl("-O", "OpenFlow13", "del-flows", "br-int");
});
afterEach(() => conn.close());

function owner(name: string, mac: string, opts: { bad?: boolean } = {}): OwnerChange {
  const key = `l2/port/${name}`;
  const built = flow("l2_lookup", 100).eq("eth_dst", mac).output(1).build(cookieFor("l2", key));
  // goto_table must go forward: OVS rejects a goto back to table 0 (the builder would refuse it)
  const f: Flow = opts.bad ? { ...built, instructions: [{ type: "goto_table", table: 0 }] } : built;
  return { owner: key, before: undefined, after: { flows: [desiredFlow(key, f)], meters: [] } };
}

async function macsInOvs(): Promise<string[]> {
  const flows = await sandbox().dumpFlows("br-int");
  return flows
    .map((f) => /dl_dst=([0-9a-f:]+)/.exec(f)?.[1])
    .filter((m): m is string => !!m)
    .sort();
}

describe("OpenFlowReconciler on ovs-vswitchd", () => {
  it("sends, on the next sync, a change that arrived while a sync was running", async () => {
    const r = new OpenFlowReconciler();
    await r.sync(conn); // reads what the switch holds: from now on only changes are sent
    r.update([owner("a", "fa:16:3e:00:00:0a")]);
    const first = r.sync(conn);
    // the sync is waiting for the switch now: this change must not be lost when it finishes
    r.update([owner("b", "fa:16:3e:00:00:0b")]);
    const r1 = await first;
    expect(r1.added).toBe(1);
    expect(r.pending()).toBe(true);
    const r2 = await r.sync(conn);
    expect(r2.added).toBe(1);
    expect(r.pending()).toBe(false);
    expect(await macsInOvs()).toEqual(["fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b"]);
  });

  it("refuses a second sync while one runs", async () => {
    const r = new OpenFlowReconciler();
    r.update([owner("a", "fa:16:3e:00:00:0a")]);
    const first = r.sync(conn);
    await expect(r.sync(conn)).rejects.toThrow(/another sync/);
    await first;
  });

  it("a rejected flow fails its owner only; the rest of the bundle is installed", async () => {
    const r = new OpenFlowReconciler();
    r.update([owner("a", "fa:16:3e:00:00:0a"), owner("bad", "fa:16:3e:00:00:0f", { bad: true })]);
    const res = await r.sync(conn);
    expect(res.failed).toEqual(["l2/port/bad"]);
    expect(res.added).toBe(1);
    expect(r.failed.get("l2/port/bad")?.reason).toMatch(/OFPET_BAD_INSTRUCTION/);
    expect(await macsInOvs()).toEqual(["fa:16:3e:00:00:0a"]);
    expect(r.installedFlows().map((f) => f.cookie)).toEqual([cookieFor("l2", "l2/port/a")]);
  });
});
