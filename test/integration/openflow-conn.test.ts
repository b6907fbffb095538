import { createServer, type Server, type Socket } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { connectOpenFlow, OfClient, parseTarget } from "../../src/openflow/client.js";
import { OfConnection, OpenFlowError } from "../../src/openflow/connection.js";
import { FramingError } from "../../src/openflow/framing.js";
import { decodeMessage, encodeMessage, type OfMessage } from "../../src/openflow/message.js";
import { flowMod, installFlows } from "../../src/controller/flow-installer.js";
import { ConnectionError, UsageError } from "../../src/util/errors.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";

const sandbox = useOvsSandbox({ label: "ofconn", datapath: "dummy" });

/** A tiny real TCP server that plays a (misbehaving) switch with `script`. */
async function fakeSwitch(
  script: (sock: Socket, first: OfMessage) => void,
): Promise<{ server: Server; target: string }> {
  const server = createServer((sock) => {
    sock.once("data", (b) => script(sock, decodeMessage(b.subarray(0, b.readUInt16BE(2)))));
    sock.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  if (!addr || typeof addr !== "object") throw new Error("no address");
  servers.push(server);
  return { server, target: `tcp:127.0.0.1:${addr.port}` };
}
const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
});

const hello = (versions: number[]): Buffer => encodeMessage({ type: "hello", xid: 1, versions });
/** A switch's answer to the handshake's features_request. */
const featuresReply = (xid: number, datapathId: bigint, nTables = 1): Buffer =>
  encodeMessage({
    type: "features_reply",
    xid,
    datapathId,
    nBuffers: 0,
    nTables,
    auxiliaryId: 0,
    capabilities: 0,
  });

describe("OfConnection against ovs-vswitchd", () => {
  it("negotiates OpenFlow 1.3 on br-int.mgmt and reads a datapath id", async () => {
    const conn = await connectOpenFlow(sandbox().mgmtRemote("br-int"));
    try {
      expect(conn.version).toBe(4);
      expect(conn.features.datapathId).toBeGreaterThan(0n);
      expect(conn.features.nTables).toBeGreaterThan(0);
      const data = await conn.echo(Buffer.from("are you there"));
      expect(data.toString()).toBe("are you there");
      await conn.barrier();
    } finally {
      conn.close();
    }
  });

  it("maps an error to the request that caused it, by xid, with the spec name", async () => {
    const conn = await connectOpenFlow(sandbox().mgmtRemote());
    try {
      // goto_table must go forward: OVS rejects goto_table:0 from table 5.
      const bad = flowMod({ tableId: 5, match: [], instructions: [{ type: "goto_table", table: 0 }] });
      const err = await conn.request(bad).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenFlowError);
      expect((err as OpenFlowError).errorName).toMatch(/^OFPET_BAD_INSTRUCTION\//);
      expect((err as OpenFlowError).requestType).toBe("flow_mod");
      // The session survives the error.
      await conn.barrier();
      // A fire-and-forget send reports its error as an of_error event with its xid.
      const seen: OpenFlowError[] = [];
      conn.on("of_error", (e) => seen.push(e));
      const xid = await conn.send(bad);
      await conn.barrier();
      expect(seen.map((e) => e.xid)).toEqual([xid]);
    } finally {
      conn.close();
    }
  });

  it("installs in a bundle and plain, then dumps every flow by multipart", async () => {
    const conn = await connectOpenFlow(sandbox().mgmtRemote());
    try {
      await installFlows(conn, [flowMod({ command: "delete", tableId: 0xff, match: [], instructions: [] })]);
      const mk = (i: number, table: number) =>
        flowMod({
          tableId: table,
          priority: 100,
          match: [{ field: "reg0", value: i }],
          instructions: [{ type: "apply_actions", actions: [{ type: "output", port: 1 }] }],
        });
      const a = Array.from({ length: 3000 }, (_, i) => mk(i, 1));
      const b = Array.from({ length: 3000 }, (_, i) => mk(i, 2));
      const r1 = await installFlows(conn, a, { bundle: true });
      const r2 = await installFlows(conn, b, { bundle: false, chunkSize: 500, window: 2 });
      expect(r1.errors).toEqual([]);
      expect(r2.errors).toEqual([]);
      const flows = await conn.flowStats();
      expect(flows.filter((f) => f.tableId === 1).length).toBe(3000);
      expect(flows.filter((f) => f.tableId === 2).length).toBe(3000);
      expect((await sandbox().dumpFlows()).length).toBe(6000);
    } finally {
      conn.close();
    }
  });

  it("a sendAll with a message that cannot be encoded rejects and its unsent messages never leave", async () => {
    const conn = await connectOpenFlow(sandbox().mgmtRemote());
    try {
      const mk = (reg: number) =>
        flowMod({ tableId: 8, match: [{ field: "reg2", value: reg }], instructions: [] });
      const unencodable = flowMod({
        tableId: 8,
        match: [{ field: "reg2", value: 2 ** 40 }],
        instructions: [],
      });
      const err = await conn.sendAll([mk(1), unencodable, mk(3)]).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      // The connection's encoder is shared by every call: the next call sends its own flow only.
      await conn.sendAll([mk(4)]);
      await conn.barrier();
      const regs = (await conn.flowStats({ tableId: 8 })).map((f) => f.match.map((m) => m.value));
      expect(regs).toEqual([[4]]);
    } finally {
      conn.close();
    }
  });

  it("an atomic bundle with one bad flow installs none of it", async () => {
    const conn = await connectOpenFlow(sandbox().mgmtRemote());
    try {
      const good = flowMod({ tableId: 7, match: [{ field: "reg1", value: 1 }], instructions: [] });
      const bad = flowMod({ tableId: 7, match: [], instructions: [{ type: "goto_table", table: 3 }] });
      const err = await installFlows(conn, [good, bad]).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "FLOW_INSTALL" });
      expect((await conn.flowStats({ tableId: 7 })).length).toBe(0);
    } finally {
      conn.close();
    }
  });

  it("a drafted bundle: nothing reaches the switch until sendDraft, then all of it; errors keep their xids", async () => {
    const conn = await connectOpenFlow(sandbox().mgmtRemote());
    try {
      const mk = (reg: number) =>
        flowMod({ tableId: 9, match: [{ field: "reg3", value: reg }], instructions: [] });
      const draft = conn.draftBundle();
      const xids = [1, 2, 3].map((i) => {
        const xid = conn.allocXid();
        draft.add(mk(i), xid);
        return xid;
      });
      expect(draft.count).toBe(3);
      await conn.barrier();
      expect(await conn.flowStats({ tableId: 9 })).toEqual([]);
      await conn.sendDraft(draft);
      const regs = (await conn.flowStats({ tableId: 9 })).map((f) => f.match[0]!.value).sort();
      expect(regs).toEqual([1, 2, 3]);

      // a message OVS rejects as it is added (goto_table backwards): its error carries its xid and
      // the commit applies the rest, as for a bundle added with bundleAdd
      const seen: number[] = [];
      conn.on("of_error", (e) => seen.push(e.xid));
      const bad = conn.draftBundle();
      bad.add(mk(4), conn.allocXid());
      const badXid = conn.allocXid();
      bad.add(flowMod({ tableId: 9, match: [], instructions: [{ type: "goto_table", table: 2 }] }), badXid);
      await conn.sendDraft(bad);
      expect(seen).toEqual([badXid]);
      expect(xids).not.toContain(badXid);
      // a message that cannot be encoded: sendDraft rejects with that error and writes nothing
      const unencodable = conn.draftBundle();
      unencodable.add(mk(5), conn.allocXid());
      unencodable.add(
        flowMod({ tableId: 9, match: [{ field: "reg3", value: 2 ** 40 }], instructions: [] }),
        conn.allocXid(),
      );
      expect(await conn.sendDraft(unencodable).catch((e: unknown) => e)).toBeInstanceOf(Error);
      await conn.barrier();
      expect((await conn.flowStats({ tableId: 9 })).map((f) => f.match[0]!.value).sort()).toEqual([
        1, 2, 3, 4,
      ]);
      // a draft past its first buffer (256 KiB: 4,000 bundle_adds of 88 bytes) grows and loses nothing
      const big = conn.draftBundle();
      for (let i = 0; i < 4000; i++)
        big.add(
          flowMod({ tableId: 10, match: [{ field: "reg3", value: i }], instructions: [] }),
          conn.allocXid(),
        );
      await conn.sendDraft(big);
      const got = (await conn.flowStats({ tableId: 10 })).map((f) => Number(f.match[0]!.value));
      expect(new Set(got).size).toBe(4000);
      // a drafted message needs its xid: the error is the caller's, at once
      expect(() => conn.draftBundle().add(mk(6))).toThrow(/xid/);
    } finally {
      conn.close();
    }
  });
});

describe("installFlows error attribution", () => {
  it("in 5000 plain flow_mods, exactly the rejected ones are reported, by xid; the rest are installed", async () => {
    const conn = await connectOpenFlow(sandbox().mgmtRemote());
    try {
      await installFlows(conn, [flowMod({ command: "delete", tableId: 0xff, match: [], instructions: [] })]);
      const badAt = new Set([0, 1234, 2500, 4999]);
      const xids = Array.from({ length: 5000 }, () => conn.allocXid());
      const msgs = xids.map((xid, i) =>
        badAt.has(i)
          ? // goto_table backwards: OFPET_BAD_INSTRUCTION
            {
              ...flowMod({
                tableId: 9,
                match: [],
                instructions: [{ type: "goto_table" as const, table: 1 }],
              }),
              xid,
            }
          : flowMod({
              tableId: 8,
              priority: 100,
              match: [{ field: "reg2", value: i }],
              instructions: [{ type: "apply_actions", actions: [{ type: "output", port: 1 }] }],
            }),
      );
      const r = await installFlows(conn, msgs, { bundle: false, chunkSize: 700, throwOnError: false });
      expect(r.errors.map((e) => e.xid).sort()).toEqual([...badAt].map((i) => xids[i]!).sort());
      expect(r.errors.every((e) => /^OFPET_BAD_INSTRUCTION\//.test(e.errorName))).toBe(true);
      expect((await conn.flowStats({ tableId: 8 })).length).toBe(5000 - badAt.size);

      // In a bundle the same rejections discard it: nothing of it is installed.
      await installFlows(conn, [flowMod({ command: "delete", tableId: 0xff, match: [], instructions: [] })]);
      const err = await installFlows(conn, msgs, { bundle: true }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "FLOW_INSTALL" });
      expect((err as { errors: OpenFlowError[] }).errors.map((e) => e.xid).sort()).toEqual(
        [...badAt].map((i) => xids[i]!).sort(),
      );
      expect((await conn.flowStats({ tableId: 8 })).length).toBe(0);
    } finally {
      conn.close();
    }
  }, 60_000);
});

describe("OfConnection against broken peers (real sockets)", () => {
  it("a peer without a common version gets OFPET_HELLO_FAILED and the handshake fails cleanly", async () => {
    let answer: Buffer | undefined;
    const { target } = await fakeSwitch((sock) => {
      sock.write(hello([1]));
      sock.on("data", (b) => (answer = Buffer.concat([answer ?? Buffer.alloc(0), b])));
    });
    const err = await connectOpenFlow(target).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenFlowError);
    expect((err as OpenFlowError).errorName).toBe("OFPET_HELLO_FAILED/OFPHFC_INCOMPATIBLE");
    await waitFor(() => answer, 2000, "the error on the wire");
    const msg = decodeMessage(answer!);
    expect(msg).toMatchObject({ type: "error", errType: 0, code: 0 });
  });

  it("a peer that disconnects mid-message is a FramingError, nothing crashes", async () => {
    const { target } = await fakeSwitch((sock) => {
      sock.write(hello([4]));
      // Half a features_reply, then close.
      sock.end(featuresReply(9, 1n).subarray(0, 13));
    });
    const err = await connectOpenFlow(target).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(((err as ConnectionError).cause as Error) ?? err).toBeInstanceOf(FramingError);
  });

  it("a peer that sends garbage with a bad length is a FramingError", async () => {
    const { target } = await fakeSwitch((sock) => {
      sock.write(Buffer.from([4, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]));
    });
    const err = await connectOpenFlow(target, { helloTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FramingError);
  });

  it("a well-framed but undecodable message is reported and the session goes on", async () => {
    const { target } = await fakeSwitch((sock, first) => {
      sock.write(hello([4]));
      sock.on("data", (b) => {
        const m = decodeMessage(b.subarray(0, b.readUInt16BE(2)));
        if (m.type === "features_request") {
          sock.write(featuresReply(m.xid, 42n, 254));
          // A flow_removed too short for its fields, then an echo reply to our echo.
        }
        if (m.type === "echo_request") {
          sock.write(Buffer.from([4, 11, 0, 12, 0, 0, 0, 0, 1, 2, 3, 4]));
          sock.write(encodeMessage({ type: "echo_reply", xid: m.xid, data: m.data }));
        }
      });
      void first;
    });
    const conn = await connectOpenFlow(target, { echoIntervalMs: 0 });
    try {
      expect(conn.features.datapathId).toBe(42n);
      const bad: unknown[] = [];
      conn.on("decode_error", (e) => bad.push(e));
      expect((await conn.echo(Buffer.from("x"))).toString()).toBe("x");
      expect(bad.length).toBe(1);
      expect(conn.isOpen).toBe(true);
    } finally {
      conn.close();
    }
  });

  it("a peer that stops answering echoes is declared dead", async () => {
    const { target } = await fakeSwitch((sock) => {
      sock.write(hello([4]));
      sock.on("data", (b) => {
        const m = decodeMessage(b.subarray(0, b.readUInt16BE(2)));
        if (m.type === "features_request") {
          sock.write(featuresReply(m.xid, 7n));
        }
      });
    });
    const conn = await connectOpenFlow(target, { echoIntervalMs: 100, deadAfterMs: 400 });
    const err = await conn.closedPromise();
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err?.message).toMatch(/silent/);
  });

  it("a peer that stops reading: a request waiting for the socket when the session dies rejects, and nothing goes unhandled", async () => {
    let peer: Socket | undefined;
    const { target } = await fakeSwitch((sock) => {
      peer = sock;
      sock.write(hello([4]));
      sock.once("data", (b) => {
        const m = decodeMessage(b.subarray(0, b.readUInt16BE(2)));
        sock.write(featuresReply(m.xid, 7n));
        // a switch too busy to read: what the agent writes from now on fills the socket
        sock.pause();
      });
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const conn = await connectOpenFlow(target, { echoIntervalMs: 200, deadAfterMs: 1500 });
      const mods = Array.from({ length: 100_000 }, (_, i) =>
        flowMod({ tableId: 1, match: [{ field: "reg0", value: i }], instructions: [] }),
      );
      const bulk = conn.sendAll(mods).catch((e: unknown) => e);
      await waitFor(() => conn.counters.txBytes > 1_000_000, 5000, "the socket filled");
      // the socket is full: this request waits for it to drain, with its reply already pending
      const reply = conn.barrier().catch((e: unknown) => e);
      expect(await reply).toBeInstanceOf(ConnectionError);
      expect(await bulk).toBeInstanceOf(ConnectionError);
      expect((await conn.closedPromise())?.message).toMatch(/silent/);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      peer?.destroy(); // paused, it would never see the end and would keep the server open
    }
  });

  it("request timeouts reject with ConnectionError and bad targets with UsageError", async () => {
    expect(() => parseTarget("udp:1.2.3.4:5")).toThrow(UsageError);
    const { target } = await fakeSwitch((sock) => {
      sock.write(hello([4]));
      sock.on("data", (b) => {
        const m = decodeMessage(b.subarray(0, b.readUInt16BE(2)));
        if (m.type === "features_request") {
          sock.write(featuresReply(m.xid, 7n));
        }
      });
    });
    const conn = await connectOpenFlow(target, { echoIntervalMs: 0 });
    try {
      await expect(conn.barrier(200)).rejects.toThrow(/no reply in 200 ms/);
    } finally {
      conn.close();
    }
  });
});

describe("OfClient", () => {
  it("reconnects after ovs-vswitchd restarts and replays flows through onConnect", async () => {
    const sb = sandbox();
    const replay = [
      flowMod({ tableId: 3, priority: 7, match: [{ field: "reg2", value: 99 }], instructions: [] }),
    ];
    const client = new OfClient(sb.mgmtRemote(), {
      minBackoffMs: 50,
      maxBackoffMs: 500,
      onConnect: async (conn) => {
        await installFlows(conn, replay);
      },
    });
    try {
      await client.start();
      expect((await sb.dumpFlows("br-int", ["table=3"])).length).toBe(1);
      await sb.restartVswitchd();
      await waitFor(() => client.connects >= 2, 20_000, "reconnect");
      const conn = await client.ready();
      expect((await conn.flowStats({ tableId: 3 })).map((f) => f.priority)).toEqual([7]);
      expect((await sb.dumpFlows("br-int", ["table=3"])).length).toBe(1);
    } finally {
      client.stop();
    }
  });
});

void OfConnection;
