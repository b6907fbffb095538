/**
 * `npm run bench -- tc`: how fast flower rules get into the kernel, inside the
 * kernel lane (Debian's 6.1 kernel under qemu TCG: the host kernel has no
 * cls_flower), side by side in ONE guest boot:
 *
 *   tc -b FILE              iproute2 6.1 batch mode (process start to exit)
 *   flowdrake tc batch FILE the same file through flowdrake's CLI (process
 *                           start to exit, so node's start-up is included)
 *   flowdrake API           TcClient.installFlowerRules on prebuilt FlowerRule
 *                           objects (what the offload planner holds): 512
 *                           messages per sendto(2), an ack per chunk; timed
 *                           inside the process, from socket open to last ack
 *   OVS tc offload          ovs-vswitchd (kernel datapath, hw-offload=true,
 *                           tc-policy=skip_hw) inserting the same number of
 *                           datapath flows fed by `ovs-appctl dpctl/add-flows`;
 *                           each becomes a flower rule through OVS's
 *                           netdev-offload-tc (checked by counting them)
 *
 * The rules: N (10,000 and 100,000) flower filters with skip_hw on a fresh
 * veth's clsact ingress, each `protocol ip prio 1 flower skip_hw dst_mac M
 * dst_ip A action drop` with distinct M and A. flowdrake's prebuilt rules are
 * checked to encode to the bytes its parser makes of tc's lines before the
 * boot. After each run flowdrake dumps the device and the count must be N.
 * Under TCG absolute rates are low; compare the ratios (one guest, one boot).
 * OVS runs at 10,000 flows only (each dpctl flow costs it milliseconds; 100k
 * would take minutes). Results: bench/results/tc.json.
 *
 * Inside the guest this file also runs as `node dist/bench/tc.js guest
 * install|count DEV [N]` (the API side and the counter).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  commandMessage,
  encodeRequest,
  filterAddMessage,
  TcClient,
} from "../src/offload/netlink/tc/client.js";
import type { FlowerRule } from "../src/offload/netlink/tc/rule.js";
import { TC_ACT } from "../src/offload/netlink/tc/schema.js";
import { parseTcCommand } from "../src/offload/netlink/tc/syntax.js";
import { bootLane, laneAssets, repoRoot, scenarioScript, sections } from "../test/kernel/lane.js";
import { machineFacts, printTable, writeResult } from "./report.js";

const SIZES = [10_000, 100_000];
const OVS_FLOWS = 10_000;

const octets = (i: number) => [(i >> 16) & 255, (i >> 8) & 255, i & 255];
const hex2 = (n: number) => n.toString(16).padStart(2, "0");
const macOf = (i: number) => `02:00:00:${octets(i).map(hex2).join(":")}`;
const ipOf = (i: number) => `10.${octets(i).join(".")}`;

export function tcLine(dev: string, i: number): string {
  return `filter add dev ${dev} ingress prio 1 protocol ip flower skip_hw dst_mac ${macOf(i)} dst_ip ${ipOf(i)} action drop`;
}

export function flowerRuleFor(i: number): FlowerRule {
  return {
    prio: 1,
    protocol: 0x0800,
    match: {
      dstMac: { value: macOf(i), mask: "ff:ff:ff:ff:ff:ff" },
      dstIp: { value: ipOf(i), mask: "255.255.255.255" },
    },
    flags: { skipHw: true },
    actions: [{ kind: "gact", control: TC_ACT.SHOT }],
  };
}

function ovsLine(i: number): string {
  return (
    `add in_port(@IN@),eth(src=02:00:00:ff:ff:01,dst=${macOf(i)}),eth_type(0x0800),` +
    `ipv4(src=10.255.0.1,dst=${ipOf(i)},proto=17,tos=0,ttl=64,frag=no),udp(src=4000,dst=4001) @OUT@`
  );
}

/** The prebuilt rules must be exactly what flowdrake's parser makes of tc's lines. */
function checkSameRules(): void {
  for (const i of [0, 1, 255, 256, 65_535, 65_536, 99_999]) {
    const fromText = encodeRequest(commandMessage(parseTcCommand(tcLine("bt0", i).split(" "), () => 7)));
    const prebuilt = encodeRequest(filterAddMessage({ ifindex: 7, hook: "ingress" }, flowerRuleFor(i)));
    if (!fromText.equals(prebuilt)) throw new Error(`bench tc: rule ${i} differs between text and prebuilt`);
  }
}

// ---------------------------------------------------------------- guest side

async function guest(argv: string[]): Promise<void> {
  const [op, dev, n] = argv;
  const t0 = process.hrtime.bigint();
  const tc = TcClient.open();
  try {
    const ifindex = await tc.ifindex(dev!);
    if (op === "install") {
      const count = Number(n);
      const rules = Array.from({ length: count }, (_, i) => flowerRuleFor(i));
      const t1 = process.hrtime.bigint();
      const res = await tc.installFlowerRules({ ifindex, hook: "ingress" }, rules);
      const t2 = process.hrtime.bigint();
      const out = {
        s: Number(t2 - t1) / 1e9,
        buildS: Number(t1 - t0) / 1e9,
        failed: res.failed.length,
        firstError: res.failed[0]?.error.message,
      };
      process.stdout.write(`${JSON.stringify(out)}\n`);
    } else if (op === "count") {
      const filters = await tc.dumpFilters({ ifindex, hook: "ingress" });
      const rules = filters.filter((f) => f.rule !== undefined).length;
      process.stdout.write(`${JSON.stringify({ rules, s: Number(process.hrtime.bigint() - t0) / 1e9 })}\n`);
    } else throw new Error(`bench tc guest: unknown op ${op}`);
  } finally {
    tc.close();
  }
}

// ---------------------------------------------------------------- host side

/**
 * \`flowdrake tc\` without the rest of the CLI (main.js also loads etcd3/grpc,
 * zeromq … for the other commands, tens of seconds over 9p under TCG): the
 * same runTcLive, main.js's exit codes.
 */
const launcher = [
  'const { runTcLive } = await import(process.env.LANE_REPO + "/dist/src/cli/tc.js");',
  "try { await runTcLive(process.argv.slice(1), { out: (s) => process.stdout.write(s) }); }",
  'catch (e) { process.stderr.write("flowdrake: " + e.message + "\\n"); process.exitCode = e.code === "USAGE" ? 2 : 1; }',
].join("\n");

function guestScript(dir: string): string {
  const runs = SIZES.map(
    (n) => `
run_size ${n}`,
  ).join("");
  return `
BENCH_DIR='${dir}'
FDB() { node "$LANE_REPO/dist/bench/tc.js" guest "$@"; }
FD() {
  node --input-type=module -e '${launcher}' -- "$@"
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
fresh_dev() {
  if ip link show bt0 >/dev/null 2>&1; then
    t=$(now); ip link del bt0; echo "teardown of $1: $(elapsed $t) s"
  fi
  ip link add bt0 type veth peer name bt1
  ip link set bt0 up
  ip link set bt1 up
  tc qdisc add dev bt0 clsact
}
# Flower numbers filters from handle 1 up when none is given, so handle N present
# and N+1 absent means exactly N rules (cheap: a dump of 100k rules under TCG
# takes minutes, so flowdrake's own dump counts only the 10k API run).
count() {
  local n=$1 have=0 over=0
  tc filter get dev bt0 ingress protocol ip pref 1 handle "$n" flower >/dev/null 2>&1 && have=1
  tc filter get dev bt0 ingress protocol ip pref 1 handle $((n + 1)) flower >/dev/null 2>&1 && over=1
  if [ $have = 1 ] && [ $over = 0 ]; then echo "{\\"rules\\": $n}"; else echo "{\\"rules\\": -1}"; fi
}
t=$(now); node -e 0; lane_result node_start "{\\"s\\": $(elapsed $t)}"
t=$(now); FD batch /dev/null; lane_result fd_start "{\\"s\\": $(elapsed $t)}"
run_size() {
  local n=$1 f="$BENCH_DIR/tc-$1.txt" t s rc out
  fresh_dev "previous run"
  t=$(now); tc -b "$f" && rc=0 || rc=$?; s=$(elapsed $t)
  lane_result "tcb_$n" "{\\"rc\\": $rc, \\"s\\": $s, \\"count\\": $(count $n)}"
  fresh_dev "tc -b $n"
  t=$(now); FD batch "$f" && rc=0 || rc=$?; s=$(elapsed $t)
  lane_result "fdcli_$n" "{\\"rc\\": $rc, \\"s\\": $s, \\"count\\": $(count $n)}"
  fresh_dev "flowdrake tc batch $n"
  t=$(now); out=$(FDB install bt0 "$n") && rc=0 || rc=$?; s=$(elapsed $t)
  lane_result "fdapi_$n" "{\\"rc\\": $rc, \\"wallS\\": $s, \\"api\\": \${out:-null}, \\"count\\": $(count $n)}"
  if [ "$n" = ${SIZES[0]} ]; then lane_result "fddump_$n" "$(FDB count bt0 || echo null)"; fi
}
${runs}
fresh_dev "flowdrake API"
ip link del bt0

# OVS's own tc offload (a function, so that a failure here is recorded, not fatal)
ovs_part() {
export OVS_RUNDIR=/tmp/ovs3 OVS_DBDIR=/tmp/ovs3 OVS_LOGDIR=/tmp/ovs3 OVS_SYSCONFDIR=/tmp/ovs3
export OVS_PKGDATADIR=/usr/share/openvswitch
mkdir -p /tmp/ovs3
ovsdb-tool create /tmp/ovs3/conf.db /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server /tmp/ovs3/conf.db --remote=punix:/tmp/ovs3/db.sock --pidfile=/tmp/ovs3/ovsdb-server.pid \\
  --unixctl=/tmp/ovs3/ovsdb-server.ctl --log-file=/tmp/ovs3/ovsdb-server.log --detach
vsctl() { ovs-vsctl --db=unix:/tmp/ovs3/db.sock --timeout=30 "$@"; }
appctl() { ovs-appctl -t /tmp/ovs3/ovs-vswitchd.ctl "$@"; }
vsctl --no-wait init
vsctl --no-wait set Open_vSwitch . other_config:hw-offload=true other_config:tc-policy=skip_hw \\
  other_config:max-idle=3600000 other_config:max-revalidator=3600000 other_config:flow-limit=400000
lane_vswitchd /tmp/ovs3
trap 'ovs-appctl -t /tmp/ovs3/ovs-vswitchd.ctl exit --cleanup || true; ovs-appctl -t /tmp/ovs3/ovsdb-server.ctl exit || true' EXIT
vsctl add-br br3 -- set bridge br3 datapath_type=system fail-mode=secure
for p in bo0 bo1; do
  ip link add $p type veth peer name \${p}p
  ip link set $p up
  ip link set \${p}p up
done
vsctl add-port br3 bo0 -- set interface bo0 ofport_request=1
vsctl add-port br3 bo1 -- set interface bo1 ofport_request=2
ovs-ofctl add-flow br3 "table=0,priority=10,in_port=1,actions=output:2"
inp=$(appctl dpctl/show | awk '$NF == "bo0" { sub(":", "", $2); print $2 }')
outp=$(appctl dpctl/show | awk '$NF == "bo1" { sub(":", "", $2); print $2 }')
sed "s/@IN@/$inp/; s/@OUT@/$outp/" "$BENCH_DIR/ovs-${OVS_FLOWS}.txt" > /tmp/ovs3/flows.txt
t=$(now); appctl dpctl/add-flows /tmp/ovs3/flows.txt && rc=0 || rc=$?; s=$(elapsed $t)
tcflows=$(appctl dpctl/dump-flows type=tc | grep -c 'udp(' || true)
ovsflows=$(appctl dpctl/dump-flows type=ovs | grep -c 'udp(' || true)
lane_result "ovs_${OVS_FLOWS}" "{\\"rc\\": $rc, \\"s\\": $s, \\"tcFlows\\": $tcflows, \\"ovsFlows\\": $ovsflows}"
grep -E 'WARN|ERR' /tmp/ovs3/ovs-vswitchd.log | tail -5 || true
}
ovs_part || lane_result ovs_error "{\\"rc\\": $?}"
`;
}

interface Run {
  tool: string;
  rules: number;
  seconds: number;
  rulesPerSec: number;
  installed: number;
  note?: string;
}

export async function tcBench(): Promise<void> {
  checkSameRules();
  const root = repoRoot();
  const assets = laneAssets(root);
  const dir = join(root, ".cache", "bench-tc");
  mkdirSync(dir, { recursive: true });
  for (const n of SIZES) {
    writeFileSync(
      join(dir, `tc-${n}.txt`),
      `${Array.from({ length: n }, (_, i) => tcLine("bt0", i)).join("\n")}\n`,
    );
  }
  writeFileSync(
    join(dir, `ovs-${OVS_FLOWS}.txt`),
    `${Array.from({ length: OVS_FLOWS }, (_, i) => ovsLine(i)).join("\n")}\n`,
  );
  process.stdout.write(`booting the kernel lane (${assets.version}, qemu -accel tcg) …\n`);
  const lane = await bootLane({
    script: scenarioScript([{ name: "bench-tc", script: guestScript(dir), timeoutS: 1500 }]),
    timeoutMs: 1_600_000,
    memoryMb: 3072,
    onLine: (l) => {
      if (/^@@|teardown|^flowdrake:|rc=|Error/.test(l)) process.stdout.write(`  guest: ${l}\n`);
    },
  });
  try {
    const sec = sections(lane).get("bench-tc");
    if (!sec || sec.exitCode !== 0) {
      throw new Error(
        `bench tc: the guest script failed (exit ${sec?.exitCode}):\n${lane.output.slice(-4000)}`,
      );
    }
    const r = (k: string) => sec.results.get(k) as Record<string, unknown> | undefined;
    const runs: Run[] = [];
    const add = (tool: string, n: number, seconds: number, installed: number, note?: string) =>
      runs.push({
        tool,
        rules: n,
        seconds: Math.round(seconds * 1000) / 1000,
        rulesPerSec: Math.round(n / seconds),
        installed,
        ...(note ? { note } : {}),
      });
    const counted = (v: Record<string, unknown> | undefined) =>
      Number((v?.count as { rules?: number } | undefined)?.rules ?? -1);
    for (const n of SIZES) {
      const tcb = r(`tcb_${n}`);
      const cli = r(`fdcli_${n}`);
      const api = r(`fdapi_${n}`);
      if (tcb) add("tc -b", n, Number(tcb.s), counted(tcb), tcb.rc ? `exit ${String(tcb.rc)}` : undefined);
      if (cli)
        add(
          "flowdrake tc batch",
          n,
          Number(cli.s),
          counted(cli),
          cli.rc ? `exit ${String(cli.rc)}` : undefined,
        );
      const a = api?.api as { s?: number; failed?: number } | null | undefined;
      if (a?.s !== undefined) {
        const wall = Number(api?.wallS);
        const note = `process wall ${wall} s (start-up + building ${n} rule objects included)`;
        add("flowdrake API", n, a.s, counted(api), a.failed ? `${a.failed} failed; ${note}` : note);
      }
    }
    const ovs = r(`ovs_${OVS_FLOWS}`);
    if (ovs) {
      add(
        "OVS tc offload (dpctl/add-flows)",
        OVS_FLOWS,
        Number(ovs.s),
        Number(ovs.tcFlows),
        `flows in tc (dpctl type=tc): ${String(ovs.tcFlows)}; in the kernel datapath: ${String(ovs.ovsFlows)}`,
      );
    }
    const base = (n: number) => runs.find((x) => x.tool === "tc -b" && x.rules === n)?.rulesPerSec;
    const table = runs.map((x) => {
      const b = base(x.rules);
      return {
        tool: x.tool,
        rules: x.rules,
        seconds: x.seconds,
        "rules/s": x.rulesPerSec,
        "vs tc -b": b ? `${(x.rulesPerSec / b).toFixed(2)}x` : "",
        installed: x.installed,
        note: x.note ?? "",
      };
    });
    const nodeStart = Number((r("node_start") as { s?: number } | undefined)?.s ?? NaN);
    const fdStart = Number((r("fd_start") as { s?: number } | undefined)?.s ?? NaN);
    const path = writeResult("tc", {
      command: "npm run bench -- tc",
      guest: {
        kernel: assets.version,
        qemu: "qemu-system-x86_64 -accel tcg -smp 2 -m 3072",
        nodeStartSeconds: nodeStart,
        flowdrakeTcStartSeconds: fdStart,
        bootSeconds: lane.bootMs / 1000,
        totalSeconds: lane.durationMs / 1000,
      },
      host: machineFacts(),
      rule: tcLine("bt0", 0),
      flowdrakeDump: { rules: SIZES[0], result: r(`fddump_${SIZES[0]}`) ?? null },
      runs: runs.map((x) => ({ ...x, vsTcB: base(x.rules) ? x.rulesPerSec / base(x.rules)! : null })),
    });
    printTable(table);
    process.stdout.write(
      `guest start-up: node ${nodeStart} s, flowdrake tc (empty batch) ${fdStart} s, included in "flowdrake tc batch"; ` +
        `lane ${Math.round(lane.durationMs / 1000)} s\n${path}\n`,
    );
  } finally {
    lane.cleanup();
  }
}

if (
  process.argv[1] &&
  import.meta.url === pathToFileURL(process.argv[1]).href &&
  process.argv[2] === "guest"
) {
  await guest(process.argv.slice(3));
}
