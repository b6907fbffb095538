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

export const CORPUS: string[] = [
  "table=0,priority=100,in_port=1,actions=output:2",
  "priority=10,dl_dst=aa:bb:cc:dd:ee:ff,actions=drop",
  "table=3,priority=100,ip,nw_src=10.0.0.1,actions=resubmit(,5)",
  "ip,nw_dst=10.0.0.0/24,actions=goto_table:5",
  "tcp,tp_dst=80,actions=CONTROLLER:65535",
  "udp,udp_src=68,udp_dst=67,actions=controller",
  "arp,arp_op=1,arp_tpa=10.0.0.1,arp_spa=10.0.0.2,arp_sha=00:00:00:00:00:01,actions=NORMAL",
  "icmp,icmp_type=8,icmp_code=0,actions=IN_PORT",
  "ipv6,ipv6_src=fe80::1,ipv6_dst=2001:db8::/64,actions=LOCAL",
  "icmp6,icmp_type=135,nd_target=fe80::1,actions=FLOOD",
  "icmp6,icmp_type=136,nd_tll=00:11:22:33:44:55,actions=ALL",
  "reg0=0x5/0xff,actions=drop",
  "reg1=5,reg15=0xffffffff,actions=drop",
  "tun_id=0x5,actions=drop",
  "tun_id=0x5/0xff,actions=drop",
  "ct_state=+trk+est,actions=drop",
  "ct_state=-new+trk,actions=drop",
  "ct_zone=5,actions=drop",
  "ct_mark=0x1/0x1,actions=drop",
  "ct_label=0x1,actions=drop",
  "metadata=0x5,actions=drop",
  "pkt_mark=0x5,actions=drop",
  "dl_vlan=5,actions=drop",
  "dl_vlan=5,dl_vlan_pcp=3,actions=drop",
  "vlan_tci=0x1000/0x1000,actions=drop",
  "dl_src=00:00:00:00:00:01/ff:ff:ff:00:00:00,dl_type=0x88cc,actions=drop",
  "tcp,tcp_flags=+syn-ack,actions=drop",
  "tcp6,tp_src=1024/0xfc00,actions=drop",
  "sctp,sctp_dst=9,actions=drop",
  "ip,nw_tos=16,nw_ecn=1,nw_ttl=3,actions=drop",
  "ipv6,ipv6_label=0x12345,actions=drop",
  "tun_src=1.1.1.1,tun_dst=2.2.2.2,actions=drop",
  "conj_id=7,actions=drop",
  "actions=load:0x1->NXM_NX_REG0[]",
  "actions=load:0x5->NXM_NX_REG0[0..7]",
  "actions=set_field:0x1->reg0",
  "actions=set_field:0x5/0xff->reg0",
  "actions=mod_dl_dst:aa:bb:cc:dd:ee:ff",
  "actions=set_field:aa:bb:cc:dd:ee:ff->eth_dst",
  "actions=move:NXM_NX_REG0[]->NXM_NX_REG1[]",
  "actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]",
  "actions=move:NXM_NX_REG0[0..7]->NXM_NX_REG1[8..15]",
  "actions=ct_clear",
  "actions=push_vlan:0x8100,set_field:4101->vlan_vid",
  "actions=set_queue:3",
  "actions=note:01.02",
  "actions=conjunction(1,1/2)",
  "actions=controller(userdata=01.02,pause)",
  "actions=controller(reason=no_match,max_len=128,id=3)",
  "actions=output:NXM_NX_REG0[]",
  "actions=resubmit:3",
  "actions=resubmit(1,2)",
  "cookie=0x1234,idle_timeout=10,hard_timeout=20,priority=5,actions=drop",
  "send_flow_rem,actions=drop",
  "actions=write_metadata:0x1/0xff",
  "actions=clear_actions,write_actions(output:1)",
  "actions=load:0x1->OXM_OF_METADATA[]",
  "actions=set_field:0x1->tun_id",
  "actions=load:0x1->NXM_NX_TUN_ID[0..31]",
  "actions=exit",
  "actions=output:1,output:2",
  "actions=group:1",
  "in_port=LOCAL,actions=drop",
  "cookie=0x1,table=2,idle_timeout=5,send_flow_rem,check_overlap,priority=7,in_port=1,actions=drop",
  "priority=1,pkt_mark=0x1,reg0=1,ct_state=+trk,ct_zone=3,ct_mark=2,ct_label=0x5/0xff,conj_id=3,tun_id=1,metadata=2,in_port=1,dl_vlan=3,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2,nw_tos=4,nw_ecn=2,nw_ttl=9,tp_src=1,tp_dst=2,tcp_flags=+syn,tun_src=1.1.1.1,actions=drop",
  "ip,nw_frag=first,actions=drop",
  "ip,actions=ct(commit,zone=5,table=10)",
  "ip,actions=ct(table=10,zone=NXM_NX_REG6[0..15])",
  "ip,actions=ct(commit,nat(src=1.2.3.4))",
  "ip,actions=ct(commit,nat(dst=10.0.0.1-10.0.0.5:80-90,random))",
  "ip,actions=ct(nat)",
  "ip,actions=ct(commit,exec(set_field:0x1->ct_mark))",
  "ipv6,actions=ct(commit,nat(src=[fe80::1]-[fe80::2]))",
  "ip,actions=dec_ttl",
  "ip,actions=mod_nw_src:1.2.3.4,mod_nw_dst:1.2.3.5,mod_nw_ttl:5",
  "tcp,actions=mod_tp_dst:80,mod_tp_src:81",
  "actions=mod_dl_src:aa:bb:cc:dd:ee:ff",
  "dl_vlan=5,actions=pop_vlan",
  "dl_vlan=5,actions=strip_vlan",
  "ip,actions=set_field:10.0.0.1->ip_dst",
  "actions=output:1,CONTROLLER:128",
  "actions=controller(reason=invalid_ttl)",
  "vlan_tci=0x1005/0xffff,actions=drop",
  "vlan_tci=0x0000/0x1fff,actions=drop",
  "vlan_tci=0x0005/0x0fff,actions=drop",
  "tcp,tcp_flags=0x002/0x0fff,actions=drop",
  "udp6,udp_dst=53,actions=drop",
  "in_port=CONTROLLER,actions=drop",
  "rarp,actions=drop",
  "ip,nw_src=10.0.0.1/255.0.255.0,actions=drop",
  "actions=move:NXM_NX_TUN_ID[0..31]->NXM_NX_REG0[]",
  "actions=move:OXM_OF_METADATA[]->NXM_NX_XXREG0[0..63]",
  "actions=push_mpls:0x8847",
  "mpls,actions=pop_mpls:0x0800",
  "actions=write_actions(group:1),goto_table:3",
  "actions=clear_actions,goto_table:3",
];

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
