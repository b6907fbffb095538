/**
 * The OVSDB client against a real ovsdb-server (private sandbox): RPCs over
 * unix and tcp, typed transaction errors, the replica following ovs-vsctl, the
 * write helpers, and the server's echo probe being answered.
 */
import { afterAll, describe, expect, it } from "vitest";
import {
  OvsdbClient,
  OvsdbSession,
  OvsdbTxnError,
  type RowChange,
  VswitchView,
  cond,
  ensureBridge,
  findInterfaceByIfaceId,
  map,
  mutation,
  namedUuid,
  op,
  set,
  setExternalId,
  setOtherConfig,
  uuid,
} from "../../src/ovsdb/index.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";

const sandbox = useOvsSandbox({ ovsdbTcp: true, datapath: "dummy", hostNetwork: true, label: "ovsdbc" });
const clients: OvsdbClient[] = [];
const sessions: OvsdbSession[] = [];
afterAll(() => {
  for (const c of clients) c.close();
  for (const s of sessions) s.stop();
});

async function connect(remote: string, probeIntervalMs = 0): Promise<OvsdbClient> {
  const c = await OvsdbClient.connect(remote, { probeIntervalMs });
  clients.push(c);
  return c;
}

async function vsctlGet(...args: string[]): Promise<string> {
  return (await sandbox().vsctl("get", ...args)).stdout.trim();
}

describe("OVSDB RPCs over unix and tcp", () => {
  for (const kind of ["unix", "tcp"] as const) {
    it(`list_dbs, get_schema, transact round trip over ${kind}`, async () => {
      const sb = sandbox();
      const remote = kind === "unix" ? sb.dbRemote : `tcp:127.0.0.1:${sb.ovsdbTcpPort}`;
      const c = await connect(remote);
      expect(await c.listDbs()).toContain("Open_vSwitch");
      const schema = await c.getSchema("Open_vSwitch");
      expect(schema.name).toBe("Open_vSwitch");
      expect(schema.tables.Bridge!.columns.external_ids!.type.value?.type).toBe("string");
      expect(await c.echo("ping", 1)).toEqual(["ping", 1]);

      const key = `rt-${kind}`;
      const [mut, sel] = await c.transact("Open_vSwitch", [
        op.mutate("Open_vSwitch", [], [mutation("external_ids", "insert", map({ [key]: "v1" }))]),
        op.select("Open_vSwitch", [], ["external_ids"]),
      ]);
      expect(mut!.count).toBe(1);
      expect(JSON.stringify(sel!.rows)).toContain(key);
      expect(await vsctlGet("Open_vSwitch", ".", `external_ids:${key}`)).toBe("v1");
    });
  }
});

describe("transaction errors are typed and change nothing", () => {
  it("a failing wait (wrong rows, timeout 0) is 'timed out' at its op index; the insert before it is undone", async () => {
    const c = await connect(sandbox().dbRemote);
    const err = await c
      .transact("Open_vSwitch", [
        op.mutate("Open_vSwitch", [], [mutation("external_ids", "insert", map({ "wait-test": "x" }))]),
        op.wait("Bridge", [cond("name", "==", "br-int")], {
          columns: ["fail_mode"],
          until: "==",
          rows: [{ fail_mode: "standalone" }],
          timeout: 0,
        }),
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OvsdbTxnError);
    const te = err as OvsdbTxnError;
    expect(te.error).toBe("timed out");
    expect(te.opIndex).toBe(1);
    expect(te.code).toBe("OVSDB_TXN");
    const r = await sandbox().vsctl("--if-exists", "get", "Open_vSwitch", ".", "external_ids:wait-test");
    expect(r.stdout.trim()).toBe("");
  });

  it("a duplicate bridge name is a 'constraint violation' at commit", async () => {
    const c = await connect(sandbox().dbRemote);
    const ops = [
      op.insert("Interface", { name: "dupif" }, "i"),
      op.insert("Port", { name: "dupport", interfaces: set([namedUuid("i")]) }, "p"),
      op.insert("Bridge", { name: "br-int", ports: set([namedUuid("p")]) }, "b"),
      op.mutate("Open_vSwitch", [], [mutation("bridges", "insert", set([namedUuid("b")]))]),
    ];
    const err = await c.transact("Open_vSwitch", ops).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OvsdbTxnError);
    expect((err as OvsdbTxnError).error).toBe("constraint violation");
    expect((err as OvsdbTxnError).opIndex).toBe(ops.length);
    const ports = (await sandbox().vsctl("--columns=name", "list", "Port")).stdout;
    expect(ports).not.toContain("dupport");
  });

  it("a reference to a missing row is a 'referential integrity violation'", async () => {
    const c = await connect(sandbox().dbRemote);
    const err = await c
      .transact("Open_vSwitch", [
        op.insert("Port", {
          name: "dangling",
          interfaces: set([uuid("11111111-2222-3333-4444-555555555555")]),
        }),
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OvsdbTxnError);
    expect((err as OvsdbTxnError).error).toBe("referential integrity violation");
  });

  it("a bad mutate (division by zero) fails with 'domain error' and leaves the row alone", async () => {
    const c = await connect(sandbox().dbRemote);
    const before = await vsctlGet("Open_vSwitch", ".", "next_cfg");
    const err = await c
      .transact("Open_vSwitch", [
        op.mutate("Open_vSwitch", [], [mutation("next_cfg", "+=", 5)]),
        op.mutate("Open_vSwitch", [], [mutation("next_cfg", "/=", 0)]),
      ])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OvsdbTxnError);
    expect((err as OvsdbTxnError).error).toBe("domain error");
    expect((err as OvsdbTxnError).opIndex).toBe(1);
    expect(await vsctlGet("Open_vSwitch", ".", "next_cfg")).toBe(before);
  });
});

describe("replica follows ovs-vsctl", () => {
  it("add-br, add-port with iface-id, set ofport_request, del-port, del-br produce the right events", async () => {
    const sb = sandbox();
    const s = OvsdbSession.start({
      remote: `tcp:127.0.0.1:${sb.ovsdbTcpPort}`,
      tables: {
        Open_vSwitch: ["bridges", "other_config", "external_ids"],
        Bridge: undefined,
        Port: ["name", "interfaces", "external_ids"],
        Interface: ["name", "type", "ofport", "ofport_request", "external_ids", "options"],
      },
    });
    sessions.push(s);
    await s.ready();
    expect(s.mode).toBe("monitor_cond_since");
    const view = new VswitchView(s.replica);
    expect(view.bridge("br-int")?.fail_mode).toBe("secure");
    const events: RowChange[] = [];
    const batches: RowChange[][] = [];
    s.on("change", (c) => events.push(c));
    s.on("batch", (b) => batches.push(b));

    await sb.vsctl("add-br", "br-rep", "--", "set", "bridge", "br-rep", "datapath_type=dummy");
    await waitFor(() => view.bridge("br-rep"), 10_000, "br-rep in replica");
    const br = view.bridge("br-rep")!;
    expect(br.datapath_type).toBe("dummy");
    expect(events.some((e) => e.table === "Bridge" && e.kind === "insert" && e.new?.name === "br-rep")).toBe(
      true,
    );
    const ovsMod = events.find((e) => e.table === "Open_vSwitch" && e.kind === "modify");
    expect(ovsMod?.new?.bridges).toContain(br._uuid);
    expect(ovsMod?.old?.bridges).not.toContain(br._uuid);
    // One ovs-vsctl transaction = one batch with Interface, Port, Bridge and Open_vSwitch.
    const addBatch = batches.find((b) => b.some((e) => e.table === "Bridge" && e.kind === "insert"));
    expect(new Set(addBatch!.map((e) => e.table))).toEqual(
      new Set(["Interface", "Port", "Bridge", "Open_vSwitch"]),
    );

    events.length = 0;
    await sb.vsctl(
      "add-port",
      "br-rep",
      "vm1",
      "--",
      "set",
      "interface",
      "vm1",
      "type=dummy",
      "external_ids:iface-id=lp-1",
    );
    const iface = await waitFor(() => view.interfaceByIfaceId("lp-1"), 10_000, "iface-id lp-1");
    expect(iface!.name).toBe("vm1");
    expect(iface!.type).toBe("dummy");
    await waitFor(() => view.interface("vm1")?.ofport, 10_000, "ofport assigned");
    expect(
      view
        .ports("br-rep")
        .map((p) => p.name)
        .sort(),
    ).toEqual(["br-rep", "vm1"]);
    expect(
      events.filter((e) => e.table === "Interface" && e.kind === "insert").map((e) => e.new?.name),
    ).toEqual(["vm1"]);

    events.length = 0;
    await sb.vsctl("set", "interface", "vm1", "ofport_request=77");
    await waitFor(() => view.interface("vm1")?.ofport === 77, 10_000, "ofport 77");
    const req = events.find(
      (e) => e.table === "Interface" && e.kind === "modify" && e.new?.ofport_request === 77,
    );
    expect(req?.old?.ofport_request).toBeNull();
    expect(events.every((e) => e.kind === "modify")).toBe(true);

    events.length = 0;
    await sb.vsctl("set", "interface", "vm1", "external_ids:extra=1", "options:foo=bar");
    await waitFor(() => view.interface("vm1")?.options.foo === "bar", 10_000, "options diff");
    expect(view.interface("vm1")?.external_ids).toEqual({ "iface-id": "lp-1", extra: "1" });
    await sb.vsctl("remove", "interface", "vm1", "external_ids", "extra");
    await waitFor(() => !("extra" in view.interface("vm1")!.external_ids), 10_000, "map key removed");
    expect(view.interface("vm1")?.external_ids).toEqual({ "iface-id": "lp-1" });

    events.length = 0;
    await sb.vsctl("del-port", "br-rep", "vm1");
    await waitFor(() => !view.interface("vm1"), 10_000, "vm1 gone");
    expect(
      events
        .filter((e) => e.kind === "delete")
        .map((e) => `${e.table}:${e.old?.name}`)
        .sort(),
    ).toEqual(["Interface:vm1", "Port:vm1"]);
    await sb.vsctl("del-br", "br-rep");
    await waitFor(() => !view.bridge("br-rep"), 10_000, "br-rep gone");

    // The replica equals what ovs-vsctl lists.
    const names = (await sb.vsctl("--bare", "--columns=name", "list", "Interface")).stdout
      .split(/\s+/)
      .filter(Boolean);
    expect(
      view
        .interfaces()
        .map((i) => i.name)
        .sort(),
    ).toEqual(names.sort());
  });
});

describe("write helpers", () => {
  it("ensureBridge, setOtherConfig, setExternalId, findInterfaceByIfaceId", async () => {
    const sb = sandbox();
    const c = await connect(sb.dbRemote);
    const id = await ensureBridge(c, "br-help", { datapathType: "dummy", failMode: "secure" });
    expect(await vsctlGet("Bridge", "br-help", "_uuid")).toBe(id);
    expect(await vsctlGet("Bridge", "br-help", "fail_mode")).toBe("secure");
    expect(await ensureBridge(c, "br-help")).toBe(id);
    expect((await sb.vsctl("list-ports", "br-help")).stdout.trim()).toBe("");
    expect((await sb.vsctl("list-ifaces", "br-help")).stdout.trim()).toBe("");
    expect((await sb.vsctl("br-exists", "br-help")).code).toBe(0);

    // Two concurrent ensureBridge calls: both return the same bridge, only one is created.
    const [a, b] = await Promise.all([
      ensureBridge(c, "br-race"),
      ensureBridge(await connect(sb.dbRemote), "br-race"),
    ]);
    expect(a).toBe(b);
    expect((await sb.vsctl("--bare", "--columns=name", "find", "Bridge", "name=br-race")).stdout.trim()).toBe(
      "br-race",
    );

    await setOtherConfig(c, "max-idle", "30000");
    expect(await vsctlGet("Open_vSwitch", ".", "other_config:max-idle")).toBe('"30000"');
    await setOtherConfig(c, "max-idle", "20000");
    expect(await vsctlGet("Open_vSwitch", ".", "other_config:max-idle")).toBe('"20000"');
    await setOtherConfig(c, "max-idle", undefined);
    expect(
      (await sb.vsctl("--if-exists", "get", "Open_vSwitch", ".", "other_config:max-idle")).stdout.trim(),
    ).toBe("");

    await sb.vsctl(
      "add-port",
      "br-help",
      "p9",
      "--",
      "set",
      "interface",
      "p9",
      "type=dummy",
      "ofport_request=9",
    );
    await setExternalId(c, "Interface", "p9", "iface-id", "lp-9");
    const bound = await waitFor(
      async () => (await findInterfaceByIfaceId(c, "lp-9"))?.ofport,
      10_000,
      "ofport",
    );
    expect(bound).toBe(9);
    expect((await findInterfaceByIfaceId(c, "lp-9"))?.name).toBe("p9");
    expect(await findInterfaceByIfaceId(c, "nope")).toBeUndefined();
    await expect(setExternalId(c, "Interface", "nope", "k", "v")).rejects.toThrow(/no Interface row/);
  });
});

describe("echo keepalive", () => {
  it("answers the server's echo probes: survives a 1 s server inactivity probe while idle", async () => {
    const sb = sandbox();
    const { freeTcpPort } = await import("../harness/index.js");
    const port = await freeTcpPort();
    await sb.vsctl(
      "--",
      "--id=@m",
      "create",
      "Manager",
      `target="ptcp:${port}:127.0.0.1"`,
      "inactivity_probe=1000",
      "--",
      "add",
      "Open_vSwitch",
      ".",
      "manager_options",
      "@m",
    );
    const c = await waitFor(() => connect(`tcp:127.0.0.1:${port}`, 0), 10_000, "manager listener");
    let closed = false;
    c.on("close", () => (closed = true));
    // idle, the server probes after 1 s and hangs up 1 s later unless answered: three answered
    // probes with the connection still open is three seconds of idleness survived
    await waitFor(() => closed || c.rpc.echoesAnswered >= 3, 20_000, "three echo probes answered");
    expect(closed).toBe(false);
    expect(c.rpc.echoesAnswered).toBeGreaterThanOrEqual(3);
    expect(await c.listDbs()).toContain("Open_vSwitch");
  });
});
