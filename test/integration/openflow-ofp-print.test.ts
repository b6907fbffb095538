/**
 * OpenFlow against an independent oracle, Open vSwitch's own decoder
 * (`ovs-ofctl ofp-print` / `ofp-parse`), both ways:
 *
 *   flowdrake → OVS   every message flowdrake models (test/fixtures/openflow/
 *                     samples.ts, one of each) is encoded by flowdrake and
 *                     printed by ovs-ofctl, which must read what the sample
 *                     means — stated below in OVS's words, field by field;
 *   OVS → flowdrake   what OVS itself encodes — ovs-ofctl's requests and a
 *                     real ovs-vswitchd's replies, errors and asynchronous
 *                     messages, recorded by a relay while ovs-ofctl drives
 *                     the switch — is decoded by flowdrake and encoded again,
 *                     and ovs-ofctl must print the two the same. Messages
 *                     flowdrake keeps raw (types it does not model) are
 *                     listed, so a new one shows up.
 *
 * This replaces byte fixtures that held the encoder's own output (and that no
 * test read): the hex is made at test time, and OVS says what it means.
 */
import { writeFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OfFramer } from "../../src/openflow/framing.js";
import { decodeMessage, encodeMessage, type OfMessage } from "../../src/openflow/index.js";
import { run } from "../../src/util/exec.js";
import { SAMPLES } from "../fixtures/openflow/samples.js";
import { OvsSandbox } from "../harness/index.js";

/** A sample's name: its type, the body type of a multipart, "-experimenter" for an experimenter error. */
function sampleName(m: OfMessage): string {
  if (m.type === "error") return m.experimenter === undefined ? "error" : "error-experimenter";
  if (m.type === "multipart_request" || m.type === "multipart_reply") return `${m.type}-${m.body.mpType}`;
  return m.type;
}

/** What each sample means, as `ovs-ofctl ofp-print` says it (checked against samples.ts by hand). */
const MEANING: Record<string, string[]> = {
  barrier_reply: ["OFPT_BARRIER_REPLY (OF1.3) (xid=0x15):"],
  barrier_request: ["OFPT_BARRIER_REQUEST (OF1.3) (xid=0x15):"],
  bundle_add_message: [
    "ONFT_BUNDLE_ADD_MESSAGE (OF1.3) (xid=0x1b):",
    " bundle_id=0x1 flags=atomic",
    "OFPT_FLOW_MOD (OF1.3) (xid=0x1b): ADD priority=1 actions=drop",
  ],
  bundle_control: [
    "ONFT_BUNDLE_CONTROL (OF1.3) (xid=0x1a):",
    " bundle_id=0x1 type=OPEN_REQUEST flags=atomic",
  ],
  echo_reply: [
    "OFPT_ECHO_REPLY (OF1.3) (xid=0x3): 4 bytes of payload",
    "00000000  70 69 6e 67                                     |ping            |",
  ],
  echo_request: [
    "OFPT_ECHO_REQUEST (OF1.3) (xid=0x3): 4 bytes of payload",
    "00000000  70 69 6e 67                                     |ping            |",
  ],
  error: ["OFPT_ERROR (OF1.3) (xid=0x2): OFPBMC_BAD_PREREQ", "OFPT_BARRIER_REQUEST (OF1.3) (xid=0x1):"],
  "error-experimenter": ["OFPT_ERROR (OF1.3) (xid=0x2): OFPBFC_UNKNOWN", "OpenFlow message is empty"],
  experimenter: [
    "***decode error: OFPBRC_BAD_VENDOR***",
    "00000000  04 04 00 14 00 00 00 04-00 00 12 34 00 00 00 07 |...........4....|",
    "00000010  01 02 03 04                                     |....            |",
  ],
  features_reply: [
    "OFPT_FEATURES_REPLY (OF1.3) (xid=0x5): dpid:1122334455667788",
    "n_tables:254, n_buffers:0",
    "capabilities: FLOW_STATS TABLE_STATS PORT_STATS GROUP_STATS QUEUE_STATS",
  ],
  features_request: ["OFPT_FEATURES_REQUEST (OF1.3) (xid=0x5):"],
  flow_mod: [
    "OFPT_FLOW_MOD (OF1.3) (xid=0x9): ADD table:3 priority=100,ct_label=0x1/0x1,ip,reg0=0x5/0xff,tun_id=0x5,in_port=1,nw_src=10.0.0.0/24 cookie:0x12 idle:10 hard:20 send_flow_rem actions=meter:2,set_field:aa:bb:cc:dd:ee:ff->eth_dst,load:0x1->NXM_NX_REG0[],move:NXM_NX_REG0[0..7]->NXM_NX_REG1[8..15],ct(commit,table=10,zone=NXM_NX_REG6[0..15],nat(src=1.2.3.4-1.2.3.5:100-200)),resubmit(,5),resubmit:3,dec_ttl,controller(reason=no_match,id=3,userdata=01.02.03,pause),ct_clear,push_vlan:0x8100,pop_vlan,set_queue:3,set_field:0x1/0x1->reg3,output:2,clear_actions,write_actions(group:4),write_metadata:0x1/0xff,goto_table:5",
  ],
  flow_removed: [
    "OFPT_FLOW_REMOVED (OF1.3) (xid=0x0): priority=10,dl_dst=00:11:22:33:44:55 reason=idle table_id=2 cookie:0x1 duration3.000000004s idle5 hard6 pkts7 bytes8",
  ],
  get_async_request: ["OFPT_GET_ASYNC_REQUEST (OF1.3) (xid=0x17):"],
  get_config_reply: ["OFPT_GET_CONFIG_REPLY (OF1.3) (xid=0x6): frags=normal miss_send_len=128"],
  get_config_request: ["OFPT_GET_CONFIG_REQUEST (OF1.3) (xid=0x6):"],
  group_mod: [
    "OFPT_GROUP_MOD (OF1.3) (xid=0xa):",
    " ADD group_id=7,type=select,bucket=weight:50,actions=output:1,bucket=weight:50,actions=output:2",
  ],
  hello: ["OFPT_HELLO (OF1.3) (xid=0x1):", " version bitmap: 0x01, 0x04, 0x06"],
  meter_mod: [
    "OFPT_METER_MOD (OF1.3) (xid=0x19): ADD meter=1 kbps bands=",
    "type=drop rate=1000",
    "type=dscp_remark rate=500 prec_level=1",
  ],
  "multipart_reply-aggregate": [
    "OFPST_AGGREGATE reply (OF1.3) (xid=0x11): packet_count=1 byte_count=2 flow_count=3",
  ],
  "multipart_reply-flow": [
    "OFPST_FLOW reply (OF1.3) (xid=0x10): flags=[more]",
    " cookie=0x4, duration=1.000000002s, table=0, n_packets=5, n_bytes=6, priority=3,in_port=1 actions=goto_table:1",
  ],
  "multipart_reply-group_desc": [
    "OFPST_GROUP_DESC reply (OF1.3) (xid=0x14):",
    " group_id=1,type=all,bucket=actions=drop",
  ],
  "multipart_reply-meter_config": [
    "OFPST_METER_CONFIG reply (OF1.3) (xid=0x13):",
    "meter=1 kbps bands=",
    "type=drop rate=1000",
  ],
  "multipart_reply-table": [
    "OFPST_TABLE reply (OF1.3) (xid=0x12):",
    "  table 0:",
    "    active=1, lookup=2, matched=3",
  ],
  "multipart_request-desc": ["OFPST_DESC request (OF1.3) (xid=0xd):"],
  "multipart_request-flow": ["OFPST_FLOW request (OF1.3) (xid=0xe):"],
  "multipart_request-meter_config": ["OFPST_METER_CONFIG request (OF1.3) (xid=0xf): meter=all"],
  "multipart_request-port_stats": ["OFPST_PORT request (OF1.3) (xid=0xf): port_no=ANY"],
  nx_ct_flush_zone: ["NXT_CT_FLUSH_ZONE (OF1.3) (xid=0x1d): zone_id=4660"],
  nx_packet_in2: [
    "NXT_PACKET_IN2 (OF1.3) (xid=0x0): table_id=3 cookie=0x9 total_len=6 in_port=2 (via action) data_len=6 (unbuffered)",
    " userdata=09",
    "vlan_tci=0x0000,dl_src=00:00:00:00:00:00,dl_dst=00:00:00:00:00:00,dl_type=0x0000",
  ],
  nx_set_controller_id: ["NXT_SET_CONTROLLER_ID (OF1.3) (xid=0x1d): id=7"],
  nx_set_packet_in_format: ["NXT_SET_PACKET_IN_FORMAT (OF1.3) (xid=0x1c): format=nxt_packet_in2"],
  nx_tlv_table_mod: [
    "NXT_TLV_TABLE_MOD (OF1.3) (xid=0x1e):",
    " ADD mapping table:",
    "  class  type  length  match field",
    " ------  ----  ------  --------------",
    " 0xffff   0x1       4  tun_metadata0",
  ],
  packet_in: [
    "OFPT_PACKET_IN (OF1.3) (xid=0x0): table_id=7 cookie=0xab total_len=4 reg0=0x9,in_port=3 (via action) data_len=4 (unbuffered)",
    "vlan_tci=0x0000,dl_src=00:00:00:00:00:00,dl_dst=00:00:00:00:00:00,dl_type=0x0000",
  ],
  packet_out: [
    "OFPT_PACKET_OUT (OF1.3) (xid=0x8): in_port=CONTROLLER actions=output:1 data_len=60",
    "vlan_tci=0x0000,dl_src=ab:ab:ab:ab:ab:ab,dl_dst=ab:ab:ab:ab:ab:ab,dl_type=0xabab",
  ],
  port_mod: [
    "OFPT_PORT_MOD (OF1.3) (xid=0xb): port: 1: addr:aa:bb:cc:00:00:01",
    "     config: PORT_DOWN",
    "     mask:   PORT_DOWN",
    "     advertise: UNCHANGED",
  ],
  port_status: [
    "OFPT_PORT_STATUS (OF1.3) (xid=0x0): MOD: 1(vm1): addr:aa:bb:cc:00:00:01",
    "     config:     0",
    "     state:      LIVE",
    "     current:    10MB-FD COPPER",
    "     speed: 10000 Mbps now, 0 Mbps max",
  ],
  role_reply: ["OFPT_ROLE_REPLY (OF1.3) (xid=0x16): role=primary generation_id=5"],
  role_request: ["OFPT_ROLE_REQUEST (OF1.3) (xid=0x16): role=primary generation_id=5"],
  set_async: [
    "OFPT_SET_ASYNC (OF1.3) (xid=0x18):",
    " primary:",
    "       PACKET_IN: no_match action",
    "     PORT_STATUS: add delete modify",
    "    FLOW_REMOVED: idle hard delete group_delete",
    "     ROLE_STATUS: (off)",
    "    TABLE_STATUS: (off)",
    "  REQUESTFORWARD: (off)",
    "",
    " secondary:",
    "       PACKET_IN: no_match",
    "     PORT_STATUS: add delete modify",
    "    FLOW_REMOVED: (off)",
    "     ROLE_STATUS: (off)",
    "    TABLE_STATUS: (off)",
    "  REQUESTFORWARD: (off)",
  ],
  set_config: ["OFPT_SET_CONFIG (OF1.3) (xid=0x7): frags=normal miss_send_len=65535"],
  table_mod: ["OFPT_TABLE_MOD (OF1.3) (xid=0xc): table_id=1"],
};

async function ofpPrint(msg: Buffer): Promise<string> {
  const r = await run(["ovs-ofctl", "ofp-print", msg.toString("hex")], { timeoutMs: 20_000 });
  return r.stdout.trimEnd();
}

describe("flowdrake's encoding, decoded by ovs-ofctl ofp-print", () => {
  it("there is one sample of each message, and a meaning for each", () => {
    const names = SAMPLES.map(sampleName);
    expect(new Set(names).size).toBe(names.length);
    expect(names.sort()).toEqual(Object.keys(MEANING).sort());
  });

  for (const sample of SAMPLES) {
    const name = sampleName(sample);
    it(`${name}`, async () => {
      expect(await ofpPrint(encodeMessage(sample))).toBe(MEANING[name]!.join("\n"));
    });
  }
});

/** A unix-socket relay between ovs-ofctl and the switch that keeps every message, both ways. */
class Recorder {
  readonly messages: { from: "ovs-ofctl" | "ovs-vswitchd"; bytes: Buffer }[] = [];
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly server: Server) {}

  static async start(path: string, upstream: string): Promise<Recorder> {
    const server = createServer();
    const rec = new Recorder(server);
    server.on("connection", (down) => {
      const up = createConnection(upstream);
      const fromOfctl = new OfFramer();
      const fromSwitch = new OfFramer();
      for (const s of [down, up]) {
        rec.sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => rec.sockets.delete(s));
      }
      down.on("data", (d: Buffer) => {
        fromOfctl.push(d, (m) => rec.messages.push({ from: "ovs-ofctl", bytes: Buffer.from(m) }));
        up.write(d);
      });
      up.on("data", (d: Buffer) => {
        fromSwitch.push(d, (m) => rec.messages.push({ from: "ovs-vswitchd", bytes: Buffer.from(m) }));
        down.write(d);
      });
      down.on("close", () => up.destroy());
      up.on("close", () => down.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, resolve);
    });
    return rec;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** What a decoded message is, for the lists below; raw ones (not modelled) say so. */
function kind(m: OfMessage): string {
  if (m.type === "unknown") return `raw:ofpt-${m.ofpType}`;
  if (m.type === "experimenter") return `raw:experimenter-0x${m.experimenter.toString(16)}-${m.expType}`;
  if (m.type === "multipart_request" || m.type === "multipart_reply") {
    return m.body.mpType === "unknown" ? `raw:${m.type}-${m.body.mpTypeId}` : `${m.type}-${m.body.mpType}`;
  }
  return m.type;
}

describe("OVS's encoding (ovs-ofctl and ovs-vswitchd), decoded by flowdrake", () => {
  let sb: OvsSandbox;
  let rec: Recorder;
  let target: string;

  /** ovs-ofctl commands that make OVS encode every message flowdrake models, and a few it does not. */
  const COMMANDS: string[][] = [
    ["add-flow", "table=1,priority=10,ip,nw_src=10.0.0.0/8,actions=ct(commit,zone=5),output:1"],
    [
      "add-flow",
      "table=2,priority=5,reg0=0x5/0xff,tcp,tp_dst=80,actions=set_field:00:11:22:33:44:55->eth_dst,goto_table:3",
    ],
    ["--bundle", "add-flow", "table=3,priority=1,actions=controller(userdata=01.02,pause)"],
    ["add-group", "group_id=1,type=select,bucket=weight:5,output:1,bucket=weight:5,output:2"],
    ["add-meter", "meter=1,pktps,burst,stats,bands=type=drop,rate=100,burst_size=10"],
    ["add-flow", "table=4,actions=meter:1,group:1"],
    ["add-flow", "table=5,actions=meter:99,output:1"],
    ["dump-flows"],
    ["dump-aggregate"],
    ["dump-tables"],
    ["dump-ports"],
    ["dump-ports-desc"],
    ["dump-groups"],
    ["dump-group-stats"],
    ["dump-meters"],
    ["meter-stats"],
    ["dump-desc"],
    ["show"],
    ["get-frags"],
    ["set-frags", "drop"],
    ["set-frags", "normal"],
    ["mod-port", "p1", "down"],
    ["mod-port", "p1", "up"],
    ["probe"],
    ["packet-out", "in_port=controller,packet=ffffffffffff0000000000010800,actions=output:1"],
    ["del-flows", "table=1"],
  ];
  const failed: string[] = [];

  beforeAll(async () => {
    sb = await OvsSandbox.start({ datapath: "dummy", label: "ofprint" });
    await sb.addDummyPort("p1", 1);
    await sb.addDummyPort("p2", 2);
    const path = join(sb.dir, "recorder.sock");
    rec = await Recorder.start(path, sb.mgmtRemote().replace(/^unix:/, ""));
    target = `unix:${path}`;
    for (const c of COMMANDS) {
      const at = c[0] === "--bundle" ? 2 : 1;
      const argv = [
        "ovs-ofctl",
        "-O",
        "OpenFlow13",
        "--timeout=10",
        ...c.slice(0, at),
        target,
        ...c.slice(at),
      ];
      const r = await run(argv, { env: sb.env, timeoutMs: 20_000, allowFailure: true });
      if (r.code !== 0) failed.push(`${c.join(" ")}: ${r.stderr.trim()}`);
    }
  }, 120_000);
  afterAll(async () => {
    await rec?.close();
    await sb?.stop();
  });

  it("ovs-ofctl ran every command (the meter:99 flow is refused by the switch, as it must be)", () => {
    expect(failed).toEqual([
      expect.stringMatching(/^add-flow table=5,actions=meter:99,output:1: .*OFPMMFC_INVALID_METER/),
    ]);
  });

  it("decodes every message, and covers the messages flowdrake models", () => {
    const kinds = new Set(rec.messages.map((m) => kind(decodeMessage(m.bytes))));
    for (const k of [
      "hello",
      "error",
      "echo_request",
      "echo_reply",
      "features_request",
      "features_reply",
      "get_config_request",
      "get_config_reply",
      "set_config",
      "packet_out",
      "flow_mod",
      "group_mod",
      "port_mod",
      "meter_mod",
      "barrier_request",
      "barrier_reply",
      "bundle_control",
      "bundle_add_message",
      "multipart_request-desc",
      "multipart_reply-desc",
      "multipart_request-flow",
      "multipart_reply-flow",
      "multipart_request-aggregate",
      "multipart_reply-aggregate",
      "multipart_request-table",
      "multipart_reply-table",
      "multipart_request-port_stats",
      "multipart_reply-port_stats",
      "multipart_request-port_desc",
      "multipart_reply-port_desc",
      "multipart_request-group",
      "multipart_reply-group",
      "multipart_request-group_desc",
      "multipart_reply-group_desc",
      "multipart_request-meter",
      "multipart_reply-meter",
      "multipart_request-meter_config",
      "multipart_reply-meter_config",
    ])
      expect(kinds, k).toContain(k);
    // what flowdrake keeps raw: message types it does not model, carried as bytes
    // (OFPMP_TABLE_FEATURES, 12: ovs-ofctl asks for them before it sends a flow_mod)
    expect([...kinds].filter((k) => k.startsWith("raw:")).sort()).toEqual([
      "raw:multipart_reply-12",
      "raw:multipart_request-12",
    ]);
  });

  it("decoded and encoded again, every message reads the same to ovs-ofctl", async () => {
    const marker = encodeMessage({ type: "echo_request", xid: 0xfeedf00d, data: Buffer.from("----8<----") });
    const original = Buffer.concat(rec.messages.flatMap((m) => [m.bytes, marker]));
    const again = Buffer.concat(rec.messages.flatMap((m) => [encodeMessage(decodeMessage(m.bytes)), marker]));
    const blocks = async (bytes: Buffer, name: string): Promise<string[]> => {
      const file = join(sb.dir, name);
      writeFileSync(file, bytes);
      const out = (await run(["ovs-ofctl", "ofp-parse", file], { timeoutMs: 30_000 })).stdout.split("\n");
      const result: string[] = [];
      let cur: string[] = [];
      for (let i = 0; i < out.length; i++) {
        if (out[i]!.startsWith("OFPT_ECHO_REQUEST (OF1.3) (xid=0xfeedf00d)")) {
          result.push(cur.join("\n"));
          cur = [];
          i++; // the marker's payload line
        } else if (out[i] !== "") cur.push(out[i]!);
      }
      return result;
    };
    const a = await blocks(original, "original.bin");
    const b = await blocks(again, "again.bin");
    expect(a).toHaveLength(rec.messages.length);
    // ofp-print marks what it cannot decode, or finds truncated, with ***
    expect(a.filter((t) => t.includes("***"))).toEqual([]);
    // The one expected difference: a hello's header carries the sender's highest version (the switch
    // says OF1.5); flowdrake reads the version bitmap, which negotiation needs, and its own hello
    // always says 1.3, the one version it speaks.
    const same = (i: number): string => a[i]!.replace(/^OFPT_HELLO \(OF1\.\d\)/, "OFPT_HELLO (OF1.3)");
    const differ = a.flatMap((_, i) =>
      b[i] === same(i) ? [] : [`${rec.messages[i]!.from}: ${a[i]}\n  !=\n${b[i]}`],
    );
    expect(a.filter((t) => t.startsWith("OFPT_HELLO (OF1.5)")).length).toBeGreaterThan(0);
    expect(differ).toEqual([]);
  });
});
