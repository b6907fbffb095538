/**
 * flowdrake's OpenFlow stack against a real ovs-vswitchd (dummy datapath):
 * bulk install in a bundle compared line by line with `ovs-ofctl dump-flows`,
 * packet_in from a frame injected on a dummy port, packet_out delivery seen
 * in port counters, and round trips of flow_mod modify/delete (strict and by
 * cookie mask), group_mod, meter_mod, role, set_config/get_config, barrier.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { connectOpenFlow } from "../../src/openflow/client.js";
import { OpenFlowError, type OfConnection } from "../../src/openflow/connection.js";
import { flowFromStats, flowToFlowMod, type Flow } from "../../src/openflow/flow.js";
import { OFP_NO_BUFFER, type PacketIn } from "../../src/openflow/message.js";
import { OFPP } from "../../src/openflow/actions.js";
import type { PortStats } from "../../src/openflow/multipart.js";
import { formatFlow, parseFlow } from "../../src/openflow/text.js";
import { flowMod, installFlows } from "../../src/controller/flow-installer.js";
import { buildFrame, parseEthernet } from "../../src/packet/index.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";

const sandbox = useOvsSandbox({ label: "ofovs", datapath: "dummy" });

beforeAll(async () => {
  await sandbox().addDummyPort("p1", 1);
  await sandbox().addDummyPort("p2", 2);
});

async function withConn<T>(fn: (conn: OfConnection) => Promise<T>): Promise<T> {
  const conn = await connectOpenFlow(sandbox().mgmtRemote());
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}

async function deleteAllFlows(conn: OfConnection): Promise<void> {
  await installFlows(conn, [flowMod({ command: "delete", tableId: 0xff, match: [], instructions: [] })], {
    bundle: false,
  });
}

/** Every frame from p1 goes to the controller; a service (mgmt socket) connection gets packet_ins only with a nonzero miss_send_len. */
async function puntFromP1(conn: OfConnection): Promise<void> {
  await deleteAllFlows(conn);
  await conn.send({ type: "set_config", flags: 0, missSendLen: 0xffff });
  await installFlows(conn, [
    flowMod({
      priority: 100,
      match: [{ field: "in_port", value: 1 }],
      instructions: [
        { type: "apply_actions", actions: [{ type: "output", port: OFPP.CONTROLLER, maxLen: 0xffff }] },
      ],
    }),
  ]);
}

function udpFrame(payload: string): Buffer {
  return buildFrame({
    eth: { src: "02:00:00:00:00:0a", dst: "02:00:00:00:00:0b" },
    ipv4: { src: "10.0.0.10", dst: "10.0.0.11" },
    udp: { srcPort: 40000, dstPort: 5353 },
    payload: Buffer.from(payload),
  });
}

/** Flow i of a varied set: four tables, several match shapes, several action kinds. */
function genFlow(i: number): Flow {
  const b2 = (i >> 8) & 0xff;
  const b3 = i & 0xff;
  switch (i % 4) {
    case 0:
      return {
        table: 0,
        priority: 100 + (i % 50),
        cookie: BigInt(i),
        match: [
          { field: "in_port", value: (i % 2) + 1 },
          { field: "reg0", value: i },
        ],
        instructions: [{ type: "apply_actions", actions: [{ type: "output", port: 2 }] }],
      };
    case 1:
      return {
        table: 1,
        priority: 200,
        cookie: 0xabc0000n + BigInt(i),
        match: [
          { field: "eth_type", value: 0x0800 },
          { field: "ip_dst", value: `10.${b2}.${b3}.1` },
        ],
        instructions: [{ type: "goto_table", table: 3 }],
      };
    case 2:
      return {
        table: 2,
        priority: 300,
        cookie: 0n,
        match: [
          { field: "eth_type", value: 0x0800 },
          { field: "nw_proto", value: 17 },
          { field: "ip_src", value: `192.168.${b2}.${b3}` },
          { field: "udp_dst", value: 1000 + (i % 1000) },
        ],
        instructions: [
          {
            type: "apply_actions",
            actions: [
              { type: "set_field", field: "eth_dst", value: "02:00:00:00:00:01" },
              { type: "output", port: 1 },
            ],
          },
        ],
      };
    default:
      return {
        table: 3,
        priority: 400 + (i % 7),
        cookie: BigInt(i) << 32n,
        match: [
          {
            field: "eth_dst",
            value: `02:aa:00:00:${b2.toString(16).padStart(2, "0")}:${b3.toString(16).padStart(2, "0")}`,
          },
        ],
        instructions: [],
      };
  }
}

const canon = (line: string): string => formatFlow(parseFlow(line));

describe("flowdrake OpenFlow against ovs-vswitchd", () => {
  it("10,000 flows installed in one bundle equal ovs-ofctl dump-flows, line for line", async () => {
    await withConn(async (conn) => {
      await deleteAllFlows(conn);
      const flows = Array.from({ length: 10_000 }, (_, i) => genFlow(i));
      const r = await installFlows(
        conn,
        flows.map((f) => flowToFlowMod(f)),
        { bundle: true, timeoutMs: 120_000 },
      );
      expect(r.errors).toEqual([]);
      const ours = new Set(flows.map((f) => formatFlow(f)));
      expect(ours.size).toBe(10_000);
      const lines = await sandbox().dumpFlows();
      expect(lines.length).toBe(10_000);
      const theirs = new Set(lines.map(canon));
      const missing = [...ours].filter((l) => !theirs.has(l));
      const extra = [...theirs].filter((l) => !ours.has(l));
      expect(missing.slice(0, 5)).toEqual([]);
      expect(extra.slice(0, 5)).toEqual([]);
      expect(theirs).toEqual(ours);
      // The same flows read back by flowdrake's own flow stats multipart.
      const stats = await conn.flowStats();
      expect(stats.length).toBe(10_000);
      expect(new Set(stats.map((st) => formatFlow(flowFromStats(st))))).toEqual(ours);
      const agg = await conn.multipart({
        mpType: "aggregate",
        tableId: 0xff,
        outPort: OFPP.ANY,
        outGroup: 0xffffffff,
        cookie: 0n,
        cookieMask: 0n,
        match: [],
      });
      expect(agg.map((a) => (a.mpType === "aggregate" ? a.flowCount : -1))).toEqual([10_000]);
    });
  }, 180_000);

  it("a frame injected on dummy port p1 arrives as a packet_in that decodes", async () => {
    await withConn(async (conn) => {
      await puntFromP1(conn);
      const got: PacketIn[] = [];
      conn.on("packet_in", (m) => {
        if (m.type === "packet_in") got.push(m);
      });
      const frame = udpFrame("flowdrake packet_in");
      await sandbox().appctl("ovs-vswitchd", "netdev-dummy/receive", "p1", frame.toString("hex"));
      const pin = await waitFor(() => got[0], 10_000, "packet_in");
      if (!pin) throw new Error("no packet_in");
      expect(pin.match.find((m) => m.field === "in_port")?.value).toBe(1);
      expect(pin.totalLen).toBe(frame.length);
      expect(pin.bufferId).toBe(OFP_NO_BUFFER);
      expect(Buffer.compare(pin.data, frame)).toBe(0);
      const f = parseEthernet(pin.data);
      expect(f.eth).toMatchObject({ src: "02:00:00:00:00:0a", dst: "02:00:00:00:00:0b", ethertype: 0x0800 });
      expect(f.ipv4).toMatchObject({ src: "10.0.0.10", dst: "10.0.0.11" });
      expect(f.udp).toMatchObject({ srcPort: 40000, dstPort: 5353 });
      expect(f.payload.toString()).toBe("flowdrake packet_in");
    });
  }, 30_000);

  it("a packet_in listener that throws is counted, and the session reads on", async () => {
    await withConn(async (conn) => {
      await puntFromP1(conn);
      const seen: string[] = [];
      conn.on("packet_in", (m) => {
        if (m.type !== "packet_in") return;
        const payload = parseEthernet(m.data).payload.toString();
        seen.push(payload);
        if (payload === "first") throw new Error("a consumer's bug");
      });
      for (const payload of ["first", "second"]) {
        const frame = udpFrame(payload);
        await sandbox().appctl("ovs-vswitchd", "netdev-dummy/receive", "p1", frame.toString("hex"));
        await waitFor(() => seen.includes(payload), 10_000, `packet_in "${payload}"`);
      }
      expect(seen).toEqual(["first", "second"]);
      expect(conn.listenerFailures).toBe(1);
      expect(conn.isOpen).toBe(true);
      await conn.barrier();
    });
  }, 30_000);

  it("a packet_out with output:2 leaves on p2 (tx_packets +1 by port stats and ovs-ofctl)", async () => {
    await withConn(async (conn) => {
      const portStats = async (): Promise<PortStats> => {
        const parts = await conn.multipart({ mpType: "port_stats", portNo: 2 });
        const p = parts
          .flatMap((b) => (b.mpType === "port_stats" ? b.ports : []))
          .find((s) => s.portNo === 2);
        if (!p) throw new Error("no port stats for port 2");
        return p;
      };
      const ofctlTx = async (): Promise<number> => {
        const { stdout } = await sandbox().ofctl("dump-ports", sandbox().mgmtRemote(), "2");
        const m = /tx pkts=(\d+)/.exec(stdout);
        if (!m) throw new Error(`no tx pkts in ${stdout}`);
        return Number(m[1]);
      };
      const before = await portStats();
      const beforeCli = await ofctlTx();
      const frame = buildFrame({
        eth: { src: "02:00:00:00:00:0c", dst: "02:00:00:00:00:0d" },
        ipv4: { src: "10.0.0.12", dst: "10.0.0.13" },
        udp: { srcPort: 1234, dstPort: 4321 },
        payload: Buffer.from("out"),
      });
      await conn.send({
        type: "packet_out",
        bufferId: OFP_NO_BUFFER,
        inPort: OFPP.CONTROLLER,
        actions: [{ type: "output", port: 2 }],
        data: frame,
      });
      await conn.barrier();
      const after = await waitFor(
        async () => {
          const s = await portStats();
          return s.txPackets > before.txPackets ? s : undefined;
        },
        5000,
        "p2 tx_packets to grow",
      );
      if (!after) throw new Error("no port stats");
      expect(after.txPackets - before.txPackets).toBe(1n);
      expect(after.txBytes - before.txBytes).toBe(BigInt(frame.length));
      expect((await ofctlTx()) - beforeCli).toBe(1);
    });
  }, 30_000);

  it("a flow installed by flowdrake forwards an injected frame p1 → p2 and counts it", async () => {
    await withConn(async (conn) => {
      await deleteAllFlows(conn);
      await installFlows(conn, [
        flowMod({
          priority: 100,
          cookie: 0x77n,
          match: [{ field: "in_port", value: 1 }],
          instructions: [{ type: "apply_actions", actions: [{ type: "output", port: 2 }] }],
        }),
      ]);
      const tx2 = async (): Promise<bigint> => {
        const parts = await conn.multipart({ mpType: "port_stats", portNo: OFPP.ANY });
        const p = parts
          .flatMap((b) => (b.mpType === "port_stats" ? b.ports : []))
          .find((x) => x.portNo === 2);
        if (!p) throw new Error("no port stats for port 2");
        return p.txPackets;
      };
      const before = await tx2();
      const frame = buildFrame({
        eth: { src: "02:00:00:00:00:1a", dst: "02:00:00:00:00:1b" },
        ipv4: { src: "10.0.1.1", dst: "10.0.1.2" },
        udp: { srcPort: 7, dstPort: 9 },
        payload: Buffer.alloc(20, 1),
      });
      for (let i = 0; i < 3; i++) {
        await sandbox().appctl("ovs-vswitchd", "netdev-dummy/receive", "p1", frame.toString("hex"));
      }
      await waitFor(async () => (await tx2()) - before === 3n, 5000, "3 packets out of p2");
      // OVS credits a flow with the packets of its datapath flows when its revalidators dump them
      const flow = await waitFor(
        async () =>
          (await conn.flowStats({ cookie: 0x77n, cookieMask: 0xffffffffffffffffn })).find(
            (f) => f.packetCount === 3n,
          ),
        5000,
        "flow packet_count 3",
      ).catch(async (err: unknown) => {
        // for the failure's message: the rule's counters and the datapath flows behind them
        const stats = await conn.flowStats({ cookie: 0x77n, cookieMask: 0xffffffffffffffffn });
        const dp = (await sandbox().appctl("ovs-vswitchd", "dpctl/dump-flows", "-m")).stdout;
        const upcalls = (await sandbox().appctl("ovs-vswitchd", "upcall/show")).stdout;
        throw new Error(
          `${err instanceof Error ? err.message : String(err)}\nrule: ${stats.map((f) => `${f.packetCount} packets`).join(", ")}\n${dp}\n${upcalls}`,
        );
      });
      expect(flow?.byteCount).toBe(BigInt(3 * frame.length));
    });
  }, 30_000);

  it("flow_mod modify/delete, strict and non-strict, with cookie masks", async () => {
    await withConn(async (conn) => {
      await deleteAllFlows(conn);
      const out = (port: number) => [
        { type: "apply_actions" as const, actions: [{ type: "output" as const, port, maxLen: 0 }] },
      ];
      // 10 flows in table 5: cookies 0x100+i for i<5 and 0x200+i for i>=5, priorities 10 and 20.
      const flows: Flow[] = Array.from({ length: 10 }, (_, i) => ({
        table: 5,
        priority: i % 2 ? 20 : 10,
        cookie: (i < 5 ? 0x100n : 0x200n) + BigInt(i),
        match: [{ field: "reg1", value: i }],
        instructions: out(1),
      }));
      await installFlows(
        conn,
        flows.map((f) => flowToFlowMod(f)),
      );
      const table5 = async () => conn.flowStats({ tableId: 5 });
      expect((await table5()).length).toBe(10);

      // modify (non-strict) by cookie 0x200/0xf00: flows 5..9 now output:2.
      await installFlows(conn, [
        flowMod({
          command: "modify",
          tableId: 5,
          cookie: 0x200n,
          cookieMask: 0xf00n,
          match: [],
          instructions: out(2),
        }),
      ]);
      const afterMod = await table5();
      const byReg = (fs: typeof afterMod, reg: number) =>
        fs.find((f) => f.match.some((m) => m.field === "reg1" && m.value === reg));
      for (let i = 0; i < 10; i++) {
        const act = byReg(afterMod, i)?.instructions[0];
        expect(act).toEqual({
          type: "apply_actions",
          actions: [{ type: "output", port: i < 5 ? 1 : 2, maxLen: 0 }],
        });
      }

      // modify_strict with the wrong priority changes nothing; with the right one changes one flow.
      await installFlows(conn, [
        flowMod({
          command: "modify_strict",
          tableId: 5,
          priority: 20,
          match: [{ field: "reg1", value: 0 }],
          instructions: out(3),
        }),
        flowMod({
          command: "modify_strict",
          tableId: 5,
          priority: 10,
          match: [{ field: "reg1", value: 2 }],
          instructions: out(3),
        }),
      ]);
      const afterStrict = await table5();
      expect(byReg(afterStrict, 0)?.instructions).toEqual(out(1));
      expect(byReg(afterStrict, 2)?.instructions).toEqual(out(3));
      expect(
        afterStrict.filter((f) => JSON.stringify(f.instructions) === JSON.stringify(out(3))).length,
      ).toBe(1);

      // delete_strict: wrong priority deletes nothing, right one deletes one flow.
      await installFlows(conn, [
        flowMod({
          command: "delete_strict",
          tableId: 5,
          priority: 10,
          match: [{ field: "reg1", value: 1 }],
          instructions: [],
        }),
      ]);
      expect((await table5()).length).toBe(10);
      await installFlows(conn, [
        flowMod({
          command: "delete_strict",
          tableId: 5,
          priority: 20,
          match: [{ field: "reg1", value: 1 }],
          instructions: [],
        }),
      ]);
      expect((await table5()).length).toBe(9);
      expect(byReg(await table5(), 1)).toBeUndefined();

      // delete (non-strict) by cookie 0x100/0xf00 removes the rest of flows 0..4.
      await installFlows(conn, [
        flowMod({
          command: "delete",
          tableId: 0xff,
          cookie: 0x100n,
          cookieMask: 0xf00n,
          match: [],
          instructions: [],
        }),
      ]);
      const left = await table5();
      expect(left.length).toBe(5);
      expect(left.every((f) => (f.cookie & 0xf00n) === 0x200n)).toBe(true);
      expect((await sandbox().dumpFlows("br-int", ["table=5"])).length).toBe(5);

      // delete (non-strict) with out_port filter: only the flows that output to 2.
      await installFlows(conn, [
        flowMod({ command: "delete", tableId: 5, outPort: 2, match: [], instructions: [] }),
      ]);
      expect((await table5()).length).toBe(0);
    });
  }, 30_000);

  it("group_mod add (select and all) reads back by group_desc and ovs-ofctl dump-groups", async () => {
    await withConn(async (conn) => {
      await installFlows(
        conn,
        [
          {
            type: "group_mod",
            command: "add",
            groupType: "select",
            groupId: 7,
            buckets: [
              { weight: 30, actions: [{ type: "output", port: 1 }] },
              { weight: 70, actions: [{ type: "output", port: 2 }] },
            ],
          },
          {
            type: "group_mod",
            command: "add",
            groupType: "all",
            groupId: 8,
            buckets: [{ actions: [{ type: "output", port: 1 }] }, { actions: [{ type: "output", port: 2 }] }],
          },
        ],
        { bundle: false },
      );
      const parts = await conn.multipart({ mpType: "group_desc" });
      const groups = parts.flatMap((p) => (p.mpType === "group_desc" ? p.groups : []));
      const g7 = groups.find((g) => g.groupId === 7);
      const g8 = groups.find((g) => g.groupId === 8);
      expect(g7?.groupType).toBe("select");
      expect(g7?.buckets.map((b) => [b.weight, b.actions])).toEqual([
        [30, [{ type: "output", port: 1, maxLen: 0 }]],
        [70, [{ type: "output", port: 2, maxLen: 0 }]],
      ]);
      expect(g8?.groupType).toBe("all");
      expect(g8?.buckets.map((b) => b.actions)).toEqual([
        [{ type: "output", port: 1, maxLen: 0 }],
        [{ type: "output", port: 2, maxLen: 0 }],
      ]);
      const { stdout } = await sandbox().ofctl("dump-groups", sandbox().mgmtRemote());
      expect(stdout).toMatch(
        /group_id=7,type=select,.*weight:30,actions=output:1.*weight:70,actions=output:2/,
      );
      expect(stdout).toMatch(/group_id=8,type=all,.*actions=output:1.*actions=output:2/);

      // A flow pointing at the group, then delete the group: OVS removes the flow with it.
      await installFlows(conn, [
        flowMod({
          tableId: 9,
          match: [{ field: "reg2", value: 1 }],
          instructions: [{ type: "apply_actions", actions: [{ type: "group", groupId: 7 }] }],
        }),
      ]);
      expect((await conn.flowStats({ tableId: 9 })).length).toBe(1);
      await installFlows(
        conn,
        [{ type: "group_mod", command: "delete", groupType: "all", groupId: 7, buckets: [] }],
        {
          bundle: false,
        },
      );
      const after = (await conn.multipart({ mpType: "group_desc" })).flatMap((p) =>
        p.mpType === "group_desc" ? p.groups : [],
      );
      expect(after.map((g) => g.groupId)).toEqual([8]);
      expect((await conn.flowStats({ tableId: 9 })).length).toBe(0);
      // Adding an existing group id is OFPET_GROUP_MOD_FAILED/OFPGMFC_GROUP_EXISTS.
      const err = await conn
        .request({ type: "group_mod", command: "add", groupType: "all", groupId: 8, buckets: [] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenFlowError);
      expect((err as OpenFlowError).errorName).toBe("OFPET_GROUP_MOD_FAILED/OFPGMFC_GROUP_EXISTS");
    });
  }, 30_000);

  it("meter_mod add shows in meter_config and ovs-ofctl dump-meters", async () => {
    await withConn(async (conn) => {
      await installFlows(
        conn,
        [
          {
            type: "meter_mod",
            command: "add",
            flags: 0x1 | 0x4 | 0x8, // OFPMF_KBPS | OFPMF_BURST | OFPMF_STATS
            meterId: 3,
            bands: [{ type: "drop", rate: 1000, burstSize: 200 }],
          },
        ],
        { bundle: false },
      );
      const parts = await conn.multipart({ mpType: "meter_config", meterId: 0xffffffff });
      const meters = parts.flatMap((p) => (p.mpType === "meter_config" ? p.meters : []));
      const m3 = meters.find((m) => m.meterId === 3);
      expect(m3?.flags).toBe(0xd);
      expect(m3?.bands).toEqual([{ type: "drop", rate: 1000, burstSize: 200 }]);
      const { stdout } = await sandbox().ofctl("dump-meters", sandbox().mgmtRemote());
      expect(stdout).toMatch(/meter=3 kbps burst stats bands=\s*type=drop rate=1000 burst_size=200/);
    });
  }, 30_000);

  it("role request, set_config/get_config and barrier round trips", async () => {
    await withConn(async (conn) => {
      expect(await conn.role("primary", 5n)).toEqual({ role: 2, generationId: 5n });
      expect(await conn.role("nochange")).toEqual({ role: 2, generationId: 5n });
      const stale = await conn.role("primary", 4n).catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(OpenFlowError);
      expect((stale as OpenFlowError).errorName).toMatch(/^OFPET_ROLE_REQUEST_FAILED\/OFPRRFC_STALE/);
      expect((await conn.role("equal")).role).toBe(1);

      await conn.send({ type: "set_config", flags: 0, missSendLen: 200 });
      await conn.barrier();
      expect(await conn.request({ type: "get_config_request" })).toMatchObject({
        type: "get_config_reply",
        flags: 0,
        missSendLen: 200,
      });
      await conn.send({ type: "set_config", flags: 0, missSendLen: 0xffe5 });
      await conn.barrier();
      expect(await conn.request({ type: "get_config_request" })).toMatchObject({ missSendLen: 0xffe5 });

      // A barrier orders: a fire-and-forget flow_mod is visible once the barrier reply arrived.
      await conn.send(flowMod({ tableId: 11, match: [{ field: "reg3", value: 3 }], instructions: [] }));
      await conn.barrier();
      expect((await conn.flowStats({ tableId: 11 })).length).toBe(1);
    });
  }, 30_000);
});
