/**
 * Faults inside a live OvsdbSession, against a real ovsdb-server: a replica
 * that loses the update stream is rebuilt on the same connection (a request in
 * flight on it still gets its answer), a replica that keeps failing falls back
 * to a reconnect, and a listener that throws costs neither the replica, nor
 * the connection, nor the listeners after it.
 */
import { afterAll, describe, expect, it } from "vitest";
import { OvsdbSession, type RowChange, VswitchView } from "../../src/ovsdb/index.js";
import { cond, map, mutation, op, uuid as wireUuid } from "../../src/ovsdb/index.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";

const sandbox = useOvsSandbox({ datapath: "dummy", label: "ovsdbf" });
const sessions: OvsdbSession[] = [];
afterAll(() => {
  for (const s of sessions) s.stop();
});

const TABLES = {
  Open_vSwitch: ["bridges"],
  Bridge: ["name", "ports", "external_ids"],
  Port: ["name", "interfaces"],
  Interface: ["name", "external_ids"],
};

async function started(): Promise<OvsdbSession> {
  const s = OvsdbSession.start({ remote: sandbox().dbRemote, tables: TABLES });
  sessions.push(s);
  await s.ready();
  return s;
}

/** Makes the replica forget a row, as a replica that missed an update would have. */
function forget(s: OvsdbSession, table: string, uuid: string): void {
  const data = (s.replica as unknown as { data: Map<string, Map<string, unknown>> }).data;
  expect(data.get(table)!.delete(uuid)).toBe(true);
}

function brInt(s: OvsdbSession) {
  return new VswitchView(s.replica).bridge("br-int");
}

describe("an OvsdbSession whose replica loses the stream", () => {
  it("rebuilds the replica on the same connection; the transaction in flight gets its answer", async () => {
    const s = await started();
    const uuid = brInt(s)!._uuid;
    const connects = s.connects;
    const events: RowChange[] = [];
    s.on("change", (c) => events.push(c));
    forget(s, "Bridge", uuid);
    // ovsdb-server sends this transaction's "modify" for a row the replica no longer holds
    const result = await s.transact([
      op.mutate(
        "Bridge",
        [cond("_uuid", "==", wireUuid(uuid))],
        [mutation("external_ids", "insert", map({ lost: "1" }))],
      ),
    ]);
    expect(result).toEqual([{ count: 1 }]);
    await waitFor(() => brInt(s)?.external_ids.lost === "1", 10_000, "br-int back in the replica");
    expect(s.resyncs).toBe(1);
    expect(s.connects).toBe(connects);
    expect(s.connected).toBe(true);
    // the fresh snapshot brings the row back as an insert, and nothing else changed
    expect(events.map((e) => `${e.kind} ${e.table} ${e.uuid}`)).toEqual([`insert Bridge ${uuid}`]);
    // and the stream is followed again
    await sandbox().vsctl("set", "bridge", "br-int", "external_ids:after=resync");
    await waitFor(() => brInt(s)?.external_ids.after === "resync", 10_000, "live after the resync");
    expect(events.at(-1)).toMatchObject({ kind: "modify", table: "Bridge", uuid });
    expect(s.resyncs).toBe(1);
  });

  it("falls back to a reconnect when the fresh snapshots keep failing", async () => {
    const s = await started();
    const uuid = brInt(s)!._uuid;
    const connects = s.connects;
    // the three in-place snapshots lose br-int again before the next update arrives; the
    // fourth failure reconnects, and that connection's snapshot is left alone
    const replica = s.replica as unknown as { resync(snap: Map<string, Map<string, unknown>>): unknown };
    const resync = replica.resync.bind(replica);
    let snapshots = 0;
    replica.resync = (snap) => {
      if (++snapshots <= 3) snap.get("Bridge")?.delete(uuid);
      return resync(snap);
    };
    forget(s, "Bridge", uuid);
    for (let i = 0; i < 3; i++) {
      await sandbox().vsctl("set", "bridge", "br-int", `external_ids:round=${i}`);
      await waitFor(() => s.resyncs === i + 1, 10_000, `in-place resync ${i + 1}`);
    }
    expect(s.connects).toBe(connects);
    await sandbox().vsctl("set", "bridge", "br-int", "external_ids:round=3");
    await waitFor(() => s.connects > connects, 10_000, "the reconnect after a fourth failure in a row");
    await waitFor(() => brInt(s)?.external_ids.round === "3", 10_000, "br-int back after the reconnect");
    expect(s.resyncs).toBe(3);
    expect(snapshots).toBe(4);
  });
});

describe("an OvsdbSession listener that throws", () => {
  it("is logged and counted; the listeners after it, the replica and the connection carry on", async () => {
    const s = await started();
    const connects = s.connects;
    let throws = 0;
    s.on("batch", () => {
      throws++;
      throw new Error("a consumer's bug");
    });
    const seen: RowChange[][] = [];
    s.on("batch", (b) => seen.push(b));
    await sandbox().vsctl("set", "bridge", "br-int", "external_ids:first=1");
    await waitFor(() => seen.length === 1, 10_000, "the second listener's batch");
    expect(throws).toBe(1);
    expect(s.listenerFailures).toBe(1);
    await sandbox().vsctl("set", "bridge", "br-int", "external_ids:second=2");
    await waitFor(() => seen.length === 2, 10_000, "the next batch");
    expect(brInt(s)?.external_ids).toMatchObject({ first: "1", second: "2" });
    expect(s.listenerFailures).toBe(2);
    expect(s.resyncs).toBe(0);
    expect(s.connects).toBe(connects);
    expect(s.connected).toBe(true);
  });
});
