/**
 * The passive side against a real ovs-vswitchd: flowdrake's OfListener on
 * 127.0.0.1 is the bridge's controller (`ovs-vsctl set-controller br-int
 * tcp:127.0.0.1:<port>`), with vswitchd in the host namespace (dummy
 * datapath, hostNetwork) so it can reach the loopback listener. Checks the
 * handshake (features = the bridge's datapath id), the primary role as OVS
 * reports it, a flow installed over the session, a packet_in for a frame
 * injected on a dummy port, and that vswitchd dials again after the listener
 * went away and came back on the same port. Every wait is bounded.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OFPP } from "../../src/openflow/actions.js";
import type { OfConnection } from "../../src/openflow/connection.js";
import { OfListener } from "../../src/openflow/listener.js";
import type { PacketIn, PacketIn2 } from "../../src/openflow/message.js";
import { OFPCR_ROLE } from "../../src/openflow/message.js";
import { flowMod, installFlows } from "../../src/controller/flow-installer.js";
import { buildFrame } from "../../src/packet/index.js";
import { OvsSandbox, waitFor } from "../harness/index.js";

describe("OfListener as the controller of a real ovs-vswitchd", () => {
  let sb: OvsSandbox;
  let listener: OfListener | undefined;
  let port = 0;

  beforeAll(async () => {
    sb = await OvsSandbox.start({ datapath: "dummy", hostNetwork: true, label: "oflisten" });
    await sb.addDummyPort("p1", 1);
    await sb.addDummyPort("p2", 2);
    listener = await OfListener.listen({ port: 0, echoIntervalMs: 1000, label: "listener-test" });
    port = listener.port;
    await sb.vsctl("set-controller", "br-int", listener.target);
    // Dial again quickly after a drop (default backoff grows to 8 s).
    await sb.vsctl("set", "controller", "br-int", "max_backoff=1000", "inactivity_probe=5000");
  }, 60_000);
  afterAll(async () => {
    await listener?.close();
    await sb?.stop();
  });

  async function datapathId(): Promise<bigint> {
    const { stdout } = await sb.vsctl("get", "bridge", "br-int", "datapath_id");
    return BigInt(`0x${stdout.trim().replace(/"/g, "")}`);
  }

  async function controllerState(): Promise<string> {
    const { stdout } = await sb.vsctl("--columns=is_connected,role", "list", "controller");
    return stdout;
  }

  async function packetInRoundTrip(conn: OfConnection, payload: string): Promise<void> {
    await installFlows(conn, [
      flowMod({ command: "delete", tableId: 0xff, match: [], instructions: [] }),
      flowMod({
        priority: 100,
        match: [{ field: "in_port", value: 1 }],
        instructions: [
          { type: "apply_actions", actions: [{ type: "output", port: OFPP.CONTROLLER, maxLen: 0xffff }] },
        ],
      }),
    ]);
    expect(await sb.dumpFlows()).toEqual([
      expect.stringMatching(/priority=100,in_port=1 actions=CONTROLLER:65535$/),
    ]);
    const got: (PacketIn | PacketIn2)[] = [];
    const on = (m: PacketIn | PacketIn2): void => void got.push(m);
    conn.on("packet_in", on);
    try {
      const frame = buildFrame({
        eth: { src: "02:00:00:00:00:0a", dst: "02:00:00:00:00:0b" },
        ipv4: { src: "10.0.0.10", dst: "10.0.0.11" },
        udp: { srcPort: 40000, dstPort: 5353 },
        payload: Buffer.from(payload),
      });
      await sb.appctl("ovs-vswitchd", "netdev-dummy/receive", "p1", frame.toString("hex"));
      const pin = await waitFor(() => got[0], 10_000, "packet_in over the listener session");
      if (pin?.type !== "packet_in") throw new Error(`expected OFPT_PACKET_IN, got ${pin?.type}`);
      expect(pin.match.find((m) => m.field === "in_port")?.value).toBe(1);
      expect(Buffer.compare(pin.data, frame)).toBe(0);
    } finally {
      conn.off("packet_in", on);
    }
  }

  it("vswitchd dials in: handshake, features, primary role", async () => {
    const conn = await listener!.nextConnection(20_000);
    expect(conn.isOpen).toBe(true);
    expect(conn.features.datapathId).toBe(await datapathId());
    expect((await conn.role("nochange")).role).toBe(OFPCR_ROLE.MASTER);
    await waitFor(
      async () => /is_connected\s*:\s*true/.test(await controllerState()),
      15_000,
      "Controller.is_connected = true",
    );
    expect(await controllerState()).toMatch(/role\s*:\s*master/);
  }, 40_000);

  it("installs a flow and receives the packet_in for a frame injected on p1", async () => {
    const conn = await listener!.nextConnection(20_000);
    await packetInRoundTrip(conn, "flowdrake listener packet_in");
  }, 40_000);

  it("vswitchd reconnects after the listener restarts on the same port", async () => {
    const old = await listener!.nextConnection(20_000);
    const closed = old.closedPromise();
    await listener!.close();
    listener = undefined;
    await closed;
    expect(old.isOpen).toBe(false);
    listener = await OfListener.listen({ port, echoIntervalMs: 1000, label: "listener-test-2" });
    const conn = await listener.nextConnection(30_000);
    expect(conn).not.toBe(old);
    expect(conn.features.datapathId).toBe(await datapathId());
    expect((await conn.role("nochange")).role).toBe(OFPCR_ROLE.MASTER);
    await packetInRoundTrip(conn, "after reconnect");
  }, 60_000);
});
