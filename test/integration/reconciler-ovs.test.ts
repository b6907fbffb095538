/**
 * The OpenFlow reconciler against a real ovs-vswitchd: changes that arrive
 * while a sync is on the wire (a packet-in handler installing a reactive flow
 * during an NB pass) are sent by the next sync and not forgotten, a bundle
 * with a rejected flow fails only its owner, and the installed state it keeps
 * matches what OVS holds. The reactive fast path writes its flow_mods with no
 * round trip, and a packet_out written right after them meets them; a
 * rejected one is undone and fails its owner, also inside the bundle that
 * carries the unhurried ones that came fast. A route deleted and installed
 * again within one round trip stays installed when its delete's flow_removed
 * comes after the new flow_mod.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { desiredFlow, type DesiredFlow, type OwnerChange } from "../../src/controller/engine.js";
import { OpenFlowReconciler } from "../../src/controller/reconciler.js";
import { cookieFor, flow } from "../../src/datapath/index.js";
import { connectOpenFlow } from "../../src/openflow/client.js";
import type { OfConnection } from "../../src/openflow/connection.js";
import type { Flow } from "../../src/openflow/flow.js";
import { OFPP } from "../../src/openflow/actions.js";
import { OFP_NO_BUFFER, OFPRR } from "../../src/openflow/message.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";

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

  it("pushNow: a packet_out written right after the flow_mod meets the flow, with no round trip between", async () => {
    const r = new OpenFlowReconciler();
    await r.sync(conn);
    const key = "l3/reactive/fast";
    const f = flow("classification", 100)
      .inPort(OFPP.LOCAL)
      .eq("eth_type", 0x88b5)
      .controller()
      .build(cookieFor("l3", key, "reactive"));
    const punted: bigint[] = [];
    conn.on("packet_in", (m) => punted.push(m.type === "packet_in" ? m.cookie : (m.cookie ?? 0n)));
    await conn.send({ type: "set_config", flags: 0, missSendLen: 0xffff });
    const sent = await r.pushNow(conn, [
      { owner: key, before: undefined, after: { flows: [desiredFlow(key, f)], meters: [] } },
    ]);
    expect(sent).toBe(1);
    // no await between the flow_mod and the packet_out: only the session's order puts the flow first
    const frame = Buffer.alloc(60);
    Buffer.from([0xfa, 0x16, 0x3e, 0, 0, 1, 0xfa, 0x16, 0x3e, 0, 0, 2, 0x88, 0xb5]).copy(frame);
    await conn.send({
      type: "packet_out",
      bufferId: OFP_NO_BUFFER,
      inPort: OFPP.LOCAL,
      actions: [{ type: "output", port: OFPP.TABLE, maxLen: 0 }],
      data: frame,
    });
    await waitFor(() => punted.includes(f.cookie), 5_000, "the packet punted by the new flow");
    expect(r.pending()).toBe(false);
    expect(r.installedFlows().map((x) => x.cookie)).toEqual([f.cookie]);
  });

  it("pushNow waits for the sync when one is running, and undoes a flow the switch rejects", async () => {
    const r = new OpenFlowReconciler();
    await r.sync(conn);
    r.update([owner("a", "fa:16:3e:00:00:0a")]);
    const running = r.sync(conn);
    expect(await r.pushNow(conn, [owner("b", "fa:16:3e:00:00:0b")])).toBeUndefined();
    await running;
    await r.sync(conn);
    expect(await macsInOvs()).toEqual(["fa:16:3e:00:00:0a", "fa:16:3e:00:00:0b"]);

    const errors: (string | undefined)[] = [];
    r.onFastPathError = (o) => errors.push(o);
    expect(await r.pushNow(conn, [owner("bad", "fa:16:3e:00:00:0f", { bad: true })])).toBe(1);
    await conn.barrier();
    expect(errors).toEqual(["l2/port/bad"]);
    expect(r.failed.get("l2/port/bad")?.reason).toMatch(/OFPET_BAD_INSTRUCTION/);
    expect(r.installedFlows()).toHaveLength(2);
  });

  it("unhurried flows that come fast go in one bundle; one the switch rejects fails its owner, the others are installed", async () => {
    // a clock that stands still: the five pushes fall in one window however slow the machine is
    const r = new OpenFlowReconciler(() => 1000);
    await r.sync(conn);
    const errors: (string | undefined)[] = [];
    r.onFastPathError = (o) => errors.push(o);
    const push = (name: string, mac: string, bad = false) =>
      r.pushNow(conn, [owner(name, mac, { bad })], { unhurried: true });
    // the window's first two go at once, the rest wait for its end
    for (const [name, mac] of [
      ["a", "fa:16:3e:00:00:0a"],
      ["b", "fa:16:3e:00:00:0b"],
      ["c", "fa:16:3e:00:00:0c"],
    ] as const)
      await push(name, mac);
    await push("bad", "fa:16:3e:00:00:0f", true);
    await push("e", "fa:16:3e:00:00:0e");
    // (not asked of OVS here: the window's timer, 50 ms of real time, may have gone meanwhile)
    await r.releaseCoalesced();
    await conn.barrier();
    expect(errors).toEqual(["l2/port/bad"]);
    expect(r.failed.get("l2/port/bad")?.reason).toMatch(/OFPET_BAD_INSTRUCTION/);
    expect(await macsInOvs()).toEqual([
      "fa:16:3e:00:00:0a",
      "fa:16:3e:00:00:0b",
      "fa:16:3e:00:00:0c",
      "fa:16:3e:00:00:0e",
    ]);
    expect(r.installedFlows()).toHaveLength(4);
    // and a sync finds nothing to change: what the reconciler holds is what OVS holds
    expect((await r.sync(conn)).added).toBe(0);
  });

  it("a route deleted and installed again within one round trip stays installed and owned", async () => {
    const r = new OpenFlowReconciler();
    await r.sync(conn);
    // service connections get asynchronous messages (flow_removed here) once they set a miss_send_len
    await conn.send({ type: "set_config", flags: 0, missSendLen: 0xffff });
    const key = "l3/reactive/route";
    const f = flow("l2_lookup", 100)
      .eq("eth_dst", "fa:16:3e:00:00:0e")
      .output(1)
      .idleTimeout(300)
      .sendFlowRemoved()
      .build(cookieFor("l3", key, "reactive"));
    const out = (d: DesiredFlow | undefined) => d && { flows: [d], meters: [] };
    const removed: { reason: number; forgot: string | undefined }[] = [];
    conn.on("flow_removed", (m) => {
      if (m.type !== "flow_removed") return;
      const gone: Flow = {
        table: m.tableId,
        priority: m.priority,
        cookie: m.cookie,
        match: m.match,
        instructions: [],
      };
      removed.push({ reason: m.reason, forgot: r.forgetInstalled(gone) });
    });
    const d = desiredFlow(key, f);
    await r.pushNow(conn, [{ owner: key, before: undefined, after: out(d) }]);
    // a model change deletes the route and its next packet asks for it again: no answer awaited between
    await r.pushNow(conn, [{ owner: key, before: out(d), after: undefined }]);
    await r.pushNow(conn, [{ owner: key, before: undefined, after: out(desiredFlow(key, f)) }]);
    // OVS reports the deleted rule when it frees it, after an RCU grace period: maybe after the add
    await waitFor(() => removed.length > 0, 5_000, "the flow_removed of the agent's delete");
    await conn.barrier();
    expect(removed).toEqual([{ reason: OFPRR.DELETE, forgot: undefined }]);
    expect(r.awaitedRemovals).toBe(0);
    expect(r.installedFlows().map((x) => x.cookie)).toEqual([f.cookie]);
    const inOvs = await sandbox().dumpFlows("br-int");
    expect(inOvs.filter((x) => x.includes(`cookie=0x${f.cookie.toString(16)}`))).toHaveLength(1);
    // the barriers after the writes retire their xids
    await waitFor(() => r.inFlightCount === 0, 5_000, "the fast path's barriers answered");
    // the switch's own removal of it later is forgotten as installed
    await sandbox().ofctl("-O", "OpenFlow13", "del-flows", "br-int", `cookie=0x${f.cookie.toString(16)}/-1`);
    await waitFor(() => removed.length === 2, 5_000, "the flow_removed of ovs-ofctl's delete");
    expect(removed[1]).toEqual({ reason: OFPRR.DELETE, forgot: expect.any(String) });
    expect(r.installedFlows()).toEqual([]);
  });
});
