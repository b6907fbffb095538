/**
 * ovs-ofctl text compatibility, against a real ovs-vswitchd (dummy datapath):
 * every corpus flow is added with `ovs-ofctl add-flow`, dumped with
 * `--no-stats dump-flows`, and then
 *  1. parseFlow(dump) → formatFlow gives the dump line back, byte for byte;
 *  2. the same flow fetched by flowdrake itself (OFPMP_FLOW over the bridge's
 *     management socket, decoded by decodeMessage) formats to the dump line
 *     and has the same flowKey as the parsed text;
 *  3. flowdrake's own flow_mod for parseFlow(dump), sent over that socket,
 *     is accepted and dumps as the identical line.
 */
import { createConnection, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeMessage,
  encodeMessage,
  errorName,
  flowFromStats,
  flowKey,
  flowToFlowMod,
  formatFlow,
  parseFlow,
  readHeader,
  type OfMessage,
} from "../../src/openflow/index.js";
import { OvsSandbox } from "../harness/index.js";
import { CORPUS } from "../fixtures/openflow/corpus.js";

/** A bare OpenFlow 1.3 session on a unix socket: enough to send requests and collect replies. */
class RawOf {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  readonly inbox: OfMessage[] = [];
  private xid = 100;
  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 8) {
        const h = readHeader(this.buf);
        if (this.buf.length < h.length) break;
        this.inbox.push(decodeMessage(this.buf.subarray(0, h.length)));
        this.buf = this.buf.subarray(h.length);
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }
  static async open(path: string): Promise<RawOf> {
    const sock = createConnection(path);
    await new Promise<void>((res, rej) => sock.once("connect", res).once("error", rej));
    const c = new RawOf(sock);
    sock.write(encodeMessage({ type: "hello", xid: 1, versions: [4] }));
    await c.until((m) => m.type === "hello");
    return c;
  }
  private async until(pred: (m: OfMessage) => boolean): Promise<OfMessage> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error("timed out waiting for an OpenFlow message");
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
  /** Send msgs then a barrier; return every reply up to the barrier reply. */
  async transact(msgs: OfMessage[]): Promise<OfMessage[]> {
    const xid = ++this.xid;
    for (const m of msgs) this.sock.write(encodeMessage({ ...m, xid }));
    this.sock.write(encodeMessage({ type: "barrier_request", xid: xid + 100000 }));
    await this.until((m) => m.type === "barrier_reply" && m.xid === xid + 100000);
    return this.inbox.splice(0).filter((m) => m.xid === xid);
  }
  close(): void {
    this.sock.destroy();
  }
}

describe("ovs-ofctl text form against a real OVS", () => {
  let sb: OvsSandbox;
  let of: RawOf;
  const dumps = new Map<string, string>();

  beforeAll(async () => {
    sb = await OvsSandbox.start({ datapath: "dummy", label: "oftext" });
    await sb.ofctl("add-group", sb.mgmtRemote(), "group_id=1,type=all,bucket=output:1");
    of = await RawOf.open(sb.mgmtRemote().replace(/^unix:/, ""));
  }, 60_000);
  afterAll(async () => {
    of?.close();
    await sb?.stop();
  });

  async function dumpOne(): Promise<string> {
    const lines = await sb.dumpFlows();
    expect(lines).toHaveLength(1);
    return lines[0]!;
  }

  it("has a corpus covering every supported field and action", () => {
    expect(CORPUS.length).toBeGreaterThanOrEqual(60);
  });

  for (const line of CORPUS) {
    it(`round-trips: ${line}`, async () => {
      await sb.ofctl("del-flows", sb.mgmtRemote());
      await sb.ofctl("add-flow", sb.mgmtRemote(), line);
      const dump = await dumpOne();
      dumps.set(line, dump);

      // 1. text → Flow → text
      const parsed = parseFlow(dump);
      expect(formatFlow(parsed)).toBe(dump);

      // 2. OVS's own flow stats, decoded by flowdrake
      const replies = await of.transact([
        {
          type: "multipart_request",
          xid: 0,
          flags: 0,
          body: {
            mpType: "flow",
            tableId: 0xff,
            outPort: 0xffffffff,
            outGroup: 0xffffffff,
            cookie: 0n,
            cookieMask: 0n,
            match: [],
          },
        },
      ]);
      const flows = replies.flatMap((m) =>
        m.type === "multipart_reply" && m.body.mpType === "flow" ? m.body.flows : [],
      );
      expect(flows).toHaveLength(1);
      const fromWire = flowFromStats(flows[0]!);
      expect(formatFlow(fromWire)).toBe(dump);
      expect(flowKey(fromWire)).toBe(flowKey(parsed));

      // 3. flowdrake's flow_mod bytes are accepted and install the same flow
      await sb.ofctl("del-flows", sb.mgmtRemote());
      const errs = (await of.transact([flowToFlowMod(parsed)])).filter((m) => m.type === "error");
      expect(errs.map((e) => (e.type === "error" ? errorName(e.errType, e.code) : ""))).toEqual([]);
      expect(await dumpOne()).toBe(dump);
    });
  }
});
