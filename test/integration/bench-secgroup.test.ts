/**
 * The security-group benchmark's own instruments (bench/secgroup-flows.ts,
 * bench/secgroup.ts, bench/secgroup-tcp.py), against the real programs whose
 * output they read — not the benchmark's speed:
 *
 *   - flow attribution on a real switch's dump: flows whose cookie names the
 *     secgroup app are counted, others (another app's, or a cookie-less flow
 *     in a secgroup table) are not; the difference of two dumps counts
 *     added, removed and changed flows and ignores a cookie-only change;
 *   - OVN's flows map to their logical stage by cookie: the flows of an ACL
 *     land in ls_out_acl;
 *   - the userspace datapath's counters: three packets of one flow are one
 *     upcall and two cache hits, and one megaflow;
 *   - comparisons pair the runs of the same round and concurrency, whatever
 *     order they were recorded in;
 *   - the TCP tool: every connection to a listening port counts as ok; a
 *     refused one and one whose SYN vanishes (the deny case) count as failed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OvnSandbox } from "../../bench/control-plane-ovn.js";
import {
  type ConnRun,
  countMegaflows,
  crr,
  pairedRatios,
  parsePmdStats,
  TcpServer,
} from "../../bench/secgroup.js";
import {
  countByStage,
  countByTable,
  dumpBridgeFlows,
  flowDelta,
  parseLflowStages,
  secgroupOwned,
} from "../../bench/secgroup-flows.js";
import { cookieFor } from "../../src/datapath/cookies.js";
import { createNetns } from "../../src/sandbox/netns.js";
import { OvsSandbox } from "../../src/sandbox/ovs.js";
import { Cleanup } from "../../src/sandbox/rundir.js";
import { run } from "../../src/util/exec.js";
import { waitFor } from "../harness/index.js";

const hex = (c: bigint) => `0x${c.toString(16)}`;

describe("flow attribution on a real switch", () => {
  let ovs: OvsSandbox | undefined;
  beforeAll(async () => {
    ovs = await OvsSandbox.start({ label: "bsgfl", datapath: "dummy", hostNetwork: true });
  });
  afterAll(async () => {
    await ovs?.stop();
  });

  it("counts the secgroup app's flows by cookie and diffs two dumps", async () => {
    const o = ovs!;
    const sg = cookieFor("secgroup", "port/p0");
    const l2 = cookieFor("l2", "port/p0");
    const flows = [
      `cookie=${hex(sg)},table=10,priority=100,ip,in_port=1,actions=ct(zone=1,table=11)`,
      `cookie=${hex(sg)},table=56,priority=1001,tcp,reg7=1,tp_dst=1000,actions=goto_table:60`,
      `cookie=${hex(l2)},table=40,priority=100,dl_dst=fa:16:3e:00:00:01,actions=load:1->NXM_NX_REG7[],goto_table:55`,
      `table=56,priority=5,ip,actions=drop`,
    ];
    await run(["ovs-ofctl", "-O", "OpenFlow13", "add-flows", o.mgmtRemote(), "-"], {
      env: o.env,
      input: `${flows.join("\n")}\n`,
    });
    const before = await dumpBridgeFlows(o);
    expect(before).toHaveLength(4);
    const owned = secgroupOwned(before);
    expect(owned.map((f) => [f.table, f.priority])).toEqual([
      [10, 100],
      [56, 1001],
    ]);
    expect(countByTable(before)).toEqual({ "10": 1, "40": 1, "56": 2 });
    expect(before.find((f) => f.table === 56 && f.priority === 5)!.cookie).toBe(0n);

    // the l2 flow only changes its cookie; the priority-5 flow changes its actions; two new, one gone
    await o.ofctl("mod-flows", o.mgmtRemote(), "table=56,priority=5,ip,actions=goto_table:60");
    await o.ofctl(
      "mod-flows",
      "--strict",
      o.mgmtRemote(),
      `cookie=${hex(cookieFor("l2", "other"))},table=40,priority=100,dl_dst=fa:16:3e:00:00:01,actions=load:1->NXM_NX_REG7[],goto_table:55`,
    );
    await o.ofctl("del-flows", "--strict", o.mgmtRemote(), "table=10,priority=100,ip,in_port=1");
    await o.ofctl(
      "add-flow",
      o.mgmtRemote(),
      `cookie=${hex(sg)},table=11,priority=65000,ct_state=+inv+trk,actions=drop`,
    );
    await o.ofctl("add-flow", o.mgmtRemote(), `cookie=${hex(sg)},table=11,priority=10,ip,actions=drop`);
    const after = await dumpBridgeFlows(o);
    const d = flowDelta(before, after);
    expect(d.net).toBe(1);
    expect(d.added.map((f) => `${f.table}/${f.priority}`).sort()).toEqual(["11/10", "11/65000", "56/5"]);
    expect(d.removed.map((f) => `${f.table}/${f.priority}`).sort()).toEqual(["10/100", "56/5"]);
    expect(secgroupOwned(after)).toHaveLength(3);
  });

  it("reads the userspace datapath's counters: one upcall, then cache hits", async () => {
    const o = ovs!;
    for (const [name, ofport] of [
      ["pa", 1],
      ["pb", 2],
    ] as const) {
      await o.addDummyPort(name, ofport);
    }
    await o.ofctl("add-flow", o.mgmtRemote(), "table=0,priority=1,in_port=1,actions=output:2");
    await o.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-clear");
    const pkt =
      "in_port(1),eth(src=fa:16:3e:00:00:01,dst=fa:16:3e:00:00:02),eth_type(0x0800)," +
      "ipv4(src=10.0.0.1,dst=10.0.0.2,proto=6,tos=0,ttl=64,frag=no),tcp(src=4000,dst=1000)";
    for (let i = 0; i < 3; i++) await o.appctl("ovs-vswitchd", "netdev-dummy/receive", "pa", pkt);
    let stats = parsePmdStats("");
    await waitFor(
      async () => {
        stats = parsePmdStats((await o.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-show")).stdout);
        return stats.packets >= 3;
      },
      10_000,
      "three packets counted",
    );
    expect(stats).toEqual({ packets: 3, recirculations: 0, cacheHits: 2, upcalls: 1, failedUpcalls: 0 });
    expect(countMegaflows((await o.appctl("ovs-vswitchd", "dpctl/dump-flows")).stdout)).toBe(1);
  });
});

describe("OVN flows by logical stage", () => {
  let ovn: OvnSandbox | undefined;
  beforeAll(async () => {
    ovn = await OvnSandbox.start({ waitTimeoutS: 120 });
  });
  afterAll(async () => {
    await ovn?.stop();
  });

  it("attributes an ACL's flows to ls_out_acl through the lflow cookies", async () => {
    const o = ovn!;
    await o.nbctl(
      "ls-add",
      "ls0",
      "--",
      "lsp-add",
      "ls0",
      "lp0",
      "--",
      "lsp-set-addresses",
      "lp0",
      "fa:16:3e:00:00:01 10.0.0.5",
    );
    await o.plug([{ port: "vif0", ifaceId: "lp0" }]);
    await o.waitHv();
    const before = await dumpBridgeFlows(o.ovs);
    await o.nbctl(
      "acl-add",
      "ls0",
      "to-lport",
      "1002",
      'outport == "lp0" && tcp.dst == 4242',
      "allow-related",
    );
    await o.waitHv();
    const after = await dumpBridgeFlows(o.ovs);
    const stages = parseLflowStages((await o.sbctl("--uuid", "lflow-list")).stdout);
    expect([...stages.values()]).toContain("ls_out_acl");
    const acl = after.filter((f) => f.key.includes("tp_dst=4242"));
    expect(acl.length).toBeGreaterThan(0);
    expect(countByStage(acl, stages)).toEqual({ ls_out_acl: acl.length });
    const d = flowDelta(before, after);
    expect(d.net).toBeGreaterThanOrEqual(acl.length);
    expect(countByStage(d.added, stages).ls_out_acl).toBeGreaterThanOrEqual(acl.length);
  });
});

describe("paired ratios", () => {
  const runOf = (round: number, concurrency: number, rate: number): ConnRun => ({
    round,
    concurrency,
    ok: 1,
    failed: 0,
    seconds: 1,
    rate,
    p50Ms: null,
    p99Ms: null,
    vswitchdCpuUsPerConn: rate / 10,
    controllerCpuMs: 0,
    perConn: { packets: 10, passes: 30, upcalls: 0 },
    megaflows: 9,
    loadavg: [0, 0, 0],
  });

  it("divides runs of the same round and concurrency, in round order", () => {
    const a = [runOf(1, 16, 300), runOf(0, 16, 100), runOf(0, 1, 50), runOf(2, 16, 900)];
    const b = [runOf(0, 1, 25), runOf(0, 16, 200), runOf(1, 16, 100)];
    expect(pairedRatios(a, b, 16, (r) => r.rate)).toEqual([0.5, 3]);
    expect(pairedRatios(a, b, 1, (r) => r.rate)).toEqual([2]);
    expect(pairedRatios(a, b, 16, (r) => r.vswitchdCpuUsPerConn)).toEqual([0.5, 3]);
  });
});

describe("secgroup-tcp.py", () => {
  const cleanup = new Cleanup();
  let ns = "";
  let server: TcpServer | undefined;
  beforeAll(async () => {
    ns = await createNetns("bsgtcp", cleanup);
    await run(["ip", "link", "set", "lo", "up"], { netns: ns });
    // a neighbour that never answers: SYNs to it vanish, like a drop in a switch (they arrive
    // on the other end of a veth that has no address, and this host does not forward)
    for (const cmd of [
      "link add v0 type veth peer name v1",
      "addr add 198.51.100.2/24 dev v0",
      "link set v0 up",
      "link set v1 up",
      "neigh add 198.51.100.1 lladdr 02:00:00:00:00:01 dev v0",
    ]) {
      await run(["ip", ...cmd.split(" ")], { netns: ns });
    }
    server = await TcpServer.start(ns, [7000, 7001]);
  });
  afterAll(async () => {
    await server?.stop();
    await cleanup.run();
  });

  it("counts completed connections on every listening port, in flight or one by one", async () => {
    for (const [port, c] of [
      [7000, 8],
      [7001, 1],
    ] as const) {
      const r = await crr(ns, "127.0.0.1", port, 300, c);
      expect(r).toMatchObject({ count: 300, ok: 300, failed: 0 });
      expect(r.rate).toBeGreaterThan(0);
      expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms!);
    }
  });

  it("counts refused connections and vanished SYNs as failed", async () => {
    expect(await crr(ns, "127.0.0.1", 7002, 5, 5)).toMatchObject({ ok: 0, failed: 5 });
    const t0 = performance.now();
    expect(await crr(ns, "198.51.100.1", 7000, 3, 3, 0.5)).toMatchObject({ ok: 0, failed: 3 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(500);
  });
});
