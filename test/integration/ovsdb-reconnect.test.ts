/**
 * The self-healing session against a real ovsdb-server that goes away: a
 * restart (with a change made to the database file while the server was
 * down) must leave the replica equal to `ovs-vsctl list` and report only what
 * changed; a frozen server (SIGSTOP) must be declared dead by our echo probe.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConnectionError } from "../../src/util/errors.js";
import { run } from "../../src/util/exec.js";
import { OvsdbClient, OvsdbSession, type RowChange, VswitchView } from "../../src/ovsdb/index.js";
import { type OvsSandbox, useOvsSandbox, waitFor } from "../harness/index.js";

const sandbox = useOvsSandbox({ ovsdbTcp: true, datapath: "dummy", hostNetwork: true, label: "ovsdbr" });
const sessions: OvsdbSession[] = [];
afterAll(() => {
  for (const s of sessions) s.stop();
});

const TABLES = {
  Open_vSwitch: ["bridges", "external_ids"],
  Bridge: ["name", "ports", "external_ids", "fail_mode"],
  Port: ["name", "interfaces", "external_ids"],
  Interface: ["name", "type", "external_ids", "ofport_request"],
};

function ovsdbPid(sb: OvsSandbox): number {
  return Number.parseInt(readFileSync(join(sb.dir, "ovsdb-server.pid"), "utf8").trim(), 10);
}

/** Starts ovsdb-server again on the same database (the sandbox's own start routine). */
async function startOvsdb(sb: OvsSandbox): Promise<void> {
  await (sb as unknown as { startOvsdb(tcp: boolean): Promise<void> }).startOvsdb(true);
}

async function vsctlInterfaces(sb: OvsSandbox): Promise<Record<string, string>> {
  const out = (await sb.vsctl("--format=json", "--columns=name,external_ids", "list", "Interface")).stdout;
  const data = (JSON.parse(out) as { data: [string, ["map", [string, string][]]][] }).data;
  return Object.fromEntries(data.map(([name, ids]) => [name, JSON.stringify(Object.fromEntries(ids[1]))]));
}

function replicaInterfaces(view: VswitchView): Record<string, string> {
  return Object.fromEntries(view.interfaces().map((i) => [i.name, JSON.stringify(i.external_ids)]));
}

describe("OvsdbSession across server restarts", () => {
  it("reports only the rows changed while the server was down, and matches ovs-vsctl", async () => {
    const sb = sandbox();
    for (const [name, n] of [
      ["p1", 11],
      ["p2", 12],
      ["p3", 13],
    ] as const) {
      await sb.addDummyPort(name, n);
      await sb.vsctl("set", "interface", name, `external_ids:iface-id=lp-${n}`);
    }
    const s = OvsdbSession.start({
      remote: sb.dbRemote,
      tables: TABLES,
      backoff: { initialMs: 50, maxMs: 500 },
    });
    sessions.push(s);
    await s.ready();
    const view = new VswitchView(s.replica);
    expect(replicaInterfaces(view)).toEqual(await vsctlInterfaces(sb));
    const rowsBefore = s.replica.size;
    const events: RowChange[] = [];
    s.on("change", (c) => events.push(c));
    const connected: { resumed: boolean; changes: number }[] = [];
    s.on("connected", (i) => connected.push(i));

    // Down: change one row in the database file itself, then start the server again.
    await sb.killDaemon("ovsdb-server");
    await waitFor(() => !s.connected, 10_000, "session to notice the server is gone");
    await run(
      [
        "ovsdb-tool",
        "transact",
        join(sb.dir, "conf.db"),
        JSON.stringify([
          "Open_vSwitch",
          {
            op: "mutate",
            table: "Interface",
            where: [["name", "==", "p2"]],
            mutations: [["external_ids", "insert", ["map", [["offline-edit", "yes"]]]]],
          },
        ]),
      ],
      { env: sb.env },
    );
    await startOvsdb(sb);
    await waitFor(() => connected.length === 1, 20_000, "session to reconnect");

    expect(events.map((e) => `${e.kind} ${e.table} ${String(e.new?.name)}`)).toEqual(["modify Interface p2"]);
    expect(events[0]!.new!.external_ids).toEqual({ "iface-id": "lp-12", "offline-edit": "yes" });
    expect(events[0]!.old!.external_ids).toEqual({ "iface-id": "lp-12" });
    expect(connected[0]!.changes).toBe(1);
    expect(s.replica.size).toBe(rowsBefore);
    expect(replicaInterfaces(view)).toEqual(await vsctlInterfaces(sb));

    // A plain restart with no change emits nothing at all.
    events.length = 0;
    await sb.restartOvsdb();
    await waitFor(() => connected.length === 2 && s.connected, 20_000, "second reconnect");
    expect(events).toEqual([]);
    expect(replicaInterfaces(view)).toEqual(await vsctlInterfaces(sb));

    // And the replica keeps following live changes after the restarts.
    await sb.vsctl("del-port", "br-int", "p3");
    await waitFor(() => !view.interface("p3"), 10_000, "p3 deleted");
    expect(
      events
        .filter((e) => e.kind === "delete")
        .map((e) => e.table)
        .sort(),
    ).toEqual(["Interface", "Port"]);
    expect(replicaInterfaces(view)).toEqual(await vsctlInterfaces(sb));
  });
});

describe("dead peer detection", () => {
  // How long that takes (two to three probe intervals) is measured by `npm run bench --
  // ovsdb-dead-peer`, not asserted here.
  it("a frozen server (SIGSTOP) is declared dead with a ConnectionError by the echo probe", async () => {
    const sb = sandbox();
    const c = await OvsdbClient.connect(`tcp:127.0.0.1:${sb.ovsdbTcpPort}`, { probeIntervalMs: 300 });
    expect(await c.listDbs()).toContain("Open_vSwitch");
    const closed = new Promise<Error | undefined>((resolve) => c.once("close", resolve));
    const pid = ovsdbPid(sb);
    process.kill(pid, "SIGSTOP");
    try {
      const pending = c.echo("never").catch((e: unknown) => e);
      const err = await closed;
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err?.message).toMatch(/no reply to echo/);
      expect(await pending).toBeInstanceOf(ConnectionError);
      await expect(c.listDbs()).rejects.toBeInstanceOf(ConnectionError);
    } finally {
      process.kill(pid, "SIGCONT");
    }
  });

  it("a session rides through a frozen server and resynchronises without spurious events", async () => {
    const sb = sandbox();
    const s = OvsdbSession.start({
      remote: `tcp:127.0.0.1:${sb.ovsdbTcpPort}`,
      tables: TABLES,
      probeIntervalMs: 300,
      backoff: { initialMs: 50, maxMs: 400 },
    });
    sessions.push(s);
    await s.ready();
    const events: RowChange[] = [];
    s.on("change", (c) => events.push(c));
    const disconnects: (Error | undefined)[] = [];
    s.on("disconnected", (e) => disconnects.push(e));
    const connectsBefore = s.connects;
    const pid = ovsdbPid(sb);
    process.kill(pid, "SIGSTOP");
    try {
      await waitFor(() => disconnects.length > 0, 5000, "dead-peer detection");
      expect(disconnects[0]).toBeInstanceOf(ConnectionError);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    await waitFor(() => s.connects > connectsBefore && s.connected, 20_000, "reconnect after SIGCONT");
    expect(events).toEqual([]);
    await sb.vsctl("set", "bridge", "br-int", "external_ids:after=thaw");
    await waitFor(
      () => new VswitchView(s.replica).bridge("br-int")?.external_ids.after === "thaw",
      10_000,
      "live",
    );
    expect(events.map((e) => `${e.kind} ${e.table}`)).toEqual(["modify Bridge"]);
  });
});
