/**
 * OVSDB monitor conditions, monitor cancellation and locks against a real
 * ovsdb-server (private sandbox; ovs-vswitchd in the host namespace with the
 * dummy datapath):
 *  - monitor_cond_change moves a conditional monitor from one bridge to
 *    another: the server sends the old row's delete and the new row's insert,
 *    and from then on only changes to the new row;
 *  - monitor_cancel stops the updates of that monitor id (other monitors on
 *    the same connection go on), and cancelling an unknown id is a typed
 *    OvsdbRpcError;
 *  - lock / steal / unlock between two clients, with the "locked" and
 *    "stolen" notifications and an `assert` operation that only the owner's
 *    transaction passes.
 * Every wait is bounded.
 */
import { afterAll, describe, expect, it } from "vitest";
import {
  OvsdbClient,
  OvsdbRpcError,
  OvsdbTxnError,
  cond,
  map,
  mutation,
  op,
  type UpdateMessage,
} from "../../src/ovsdb/index.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";

const sandbox = useOvsSandbox({ datapath: "dummy", hostNetwork: true, label: "ovsdbml" });
const clients: OvsdbClient[] = [];
afterAll(() => {
  for (const c of clients) c.close();
});

async function connect(): Promise<OvsdbClient> {
  const c = await OvsdbClient.connect(sandbox().dbRemote, { probeIntervalMs: 0 });
  clients.push(c);
  return c;
}

/** Collects update notifications of one monitor id. */
function collect(c: OvsdbClient, monitorId: string): UpdateMessage[] {
  const got: UpdateMessage[] = [];
  c.on("update", (m) => {
    if (m.monitorId === monitorId) got.push(m);
  });
  return got;
}

/** Row names by uuid, learnt from initial/insert rows (modify/delete carry only the uuid). */
const names = new Map<string, string>();

/** The rows an update2 set touches, with the kind: ["br-x:insert", …]. */
function touched(msgs: UpdateMessage[]): string[] {
  const out: string[] = [];
  for (const m of msgs) {
    for (const rows of Object.values(m.updates)) {
      for (const [uuid, ru] of Object.entries(rows)) {
        const [kind, row] = Object.entries(ru as Record<string, unknown>)[0] as [
          string,
          Record<string, unknown> | null,
        ];
        if (typeof row?.name === "string") names.set(uuid, row.name);
        out.push(`${names.get(uuid) ?? uuid}:${kind}`);
      }
    }
  }
  return out;
}

async function setBridgeExternalId(name: string, value: string): Promise<void> {
  await sandbox().vsctl("set", "bridge", name, `external_ids:probe=${value}`);
}

describe("monitor_cond_change", () => {
  it("moves a conditional monitor from br-int to br-mc and follows only the new row", async () => {
    const sb = sandbox();
    await sb.addBridge("br-mc");
    const c = await connect();
    const got = collect(c, "mc");
    const initial = await c.monitorCond("Open_vSwitch", "mc", {
      Bridge: { columns: ["name", "external_ids"], where: [cond("name", "==", "br-int")] },
    });
    expect(touched([{ version: 2, monitorId: "mc", updates: initial }])).toEqual(["br-int:initial"]);

    await setBridgeExternalId("br-int", "1");
    await waitFor(() => touched(got).includes("br-int:modify"), 10_000, "modify of br-int");

    await c.monitorCondChange("mc", "mc", {
      Bridge: [{ where: [cond("name", "==", "br-mc")] }],
    });
    // The server reports the row leaving the condition and the one entering it.
    await waitFor(
      () => touched(got).some((t) => t.endsWith(":delete")) && touched(got).includes("br-mc:insert"),
      10_000,
      "delete of br-int and insert of br-mc",
    );
    got.length = 0;
    await setBridgeExternalId("br-int", "2");
    await setBridgeExternalId("br-mc", "1");
    await waitFor(() => touched(got).includes("br-mc:modify"), 10_000, "modify of br-mc");
    // Updates are sent in transaction order, so br-int's change (made first) would be here already.
    expect(touched(got)).toEqual(["br-mc:modify"]);
  }, 40_000);

  it("refuses a condition change for an unknown monitor with OvsdbRpcError", async () => {
    const c = await connect();
    await expect(
      c.monitorCondChange("no-such-monitor", "no-such-monitor", { Bridge: [{ where: [true] }] }),
    ).rejects.toBeInstanceOf(OvsdbRpcError);
  });
});

describe("monitor_cancel", () => {
  it("stops one monitor's updates while another on the same connection goes on", async () => {
    const c = await connect();
    const a = collect(c, "a");
    const b = collect(c, "b");
    const req = { Bridge: { columns: ["name", "external_ids"] } };
    touched([{ version: 2, monitorId: "a", updates: await c.monitorCond("Open_vSwitch", "a", req) }]);
    await c.monitorCond("Open_vSwitch", "b", req);
    await setBridgeExternalId("br-int", "c1");
    await waitFor(() => a.length > 0 && b.length > 0, 10_000, "both monitors updated");

    await c.monitorCancel("a");
    a.length = 0;
    b.length = 0;
    await setBridgeExternalId("br-int", "c2");
    await waitFor(() => b.length > 0, 10_000, "monitor b updated");
    // b's update for the same transaction has arrived; a (cancelled) must have had none.
    expect(a).toEqual([]);
    expect(touched(b)).toEqual(["br-int:modify"]);
  }, 30_000);

  it("cancelling an unknown monitor is a typed OvsdbRpcError", async () => {
    const c = await connect();
    const err = await c.monitorCancel("never-created").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OvsdbRpcError);
    expect((err as OvsdbRpcError).method).toBe("monitor_cancel");
  });
});

describe("lock, steal, unlock", () => {
  /** A transaction that succeeds only for the holder of `lock`. */
  async function guarded(c: OvsdbClient, lock: string, value: string): Promise<void> {
    await c.transact("Open_vSwitch", [
      op.assert(lock),
      op.mutate("Open_vSwitch", [], [mutation("external_ids", "insert", map({ [`lock-${value}`]: value }))]),
    ]);
  }

  it("hands the lock over on unlock and on steal, with notifications and assert", async () => {
    const a = await connect();
    const b = await connect();
    const events: string[] = [];
    for (const [name, c] of [
      ["a", a],
      ["b", b],
    ] as const) {
      c.on("locked", (id) => events.push(`${name} locked ${id}`));
      c.on("stolen", (id) => events.push(`${name} stolen ${id}`));
    }

    // A lock name is an <id> (letters, digits, underscore): anything else is refused, typed.
    await expect(a.lock("fd-lock")).rejects.toBeInstanceOf(OvsdbRpcError);
    expect(await a.lock("fd_lock")).toBe(true);
    expect(await b.lock("fd_lock")).toBe(false);
    await guarded(a, "fd_lock", "a1");
    const notOwner = await guarded(b, "fd_lock", "b1").catch((e: unknown) => e);
    expect(notOwner).toBeInstanceOf(OvsdbTxnError);
    expect((notOwner as OvsdbTxnError).error).toBe("not owner");

    // Unlock: the waiting client gets the lock and a "locked" notification.
    await a.unlock("fd_lock");
    await waitFor(() => events.includes("b locked fd_lock"), 10_000, "b's locked notification");
    await guarded(b, "fd_lock", "b2");

    // Steal: a takes it back at once; b is told it was stolen and loses the assert.
    expect(await a.steal("fd_lock")).toBe(true);
    await waitFor(() => events.includes("b stolen fd_lock"), 10_000, "b's stolen notification");
    await guarded(a, "fd_lock", "a2");
    await expect(guarded(b, "fd_lock", "b3")).rejects.toBeInstanceOf(OvsdbTxnError);

    const ids = (await sandbox().vsctl("get", "Open_vSwitch", ".", "external_ids")).stdout;
    expect(ids).toMatch(/lock-a1=a1/);
    expect(ids).toMatch(/lock-b2=b2/);
    expect(ids).toMatch(/lock-a2=a2/);
    expect(ids).not.toMatch(/lock-b1|lock-b3/);
    expect(events).toEqual(["b locked fd_lock", "b stolen fd_lock"]);
  }, 30_000);

  it("a lock is released when its holder disconnects", async () => {
    const a = await connect();
    const b = await connect();
    const lockedB = new Promise<string>((resolve) => b.once("locked", resolve));
    expect(await a.lock("fd_lock_2")).toBe(true);
    expect(await b.lock("fd_lock_2")).toBe(false);
    a.close();
    const id = await Promise.race([
      lockedB,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("no locked notification")), 10_000),
      ),
    ]);
    expect(id).toBe("fd_lock_2");
  }, 20_000);
});
