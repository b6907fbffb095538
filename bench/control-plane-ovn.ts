/**
 * The OVN side of the control-plane benchmark: a private OVN deployment on
 * this machine and the scenarios that time it, exported so that the
 * flowdrake-vs-OVN suite can run both sides on the same logical topology.
 * Alone, `npm run bench -- control-plane-ovn` runs them and writes
 * bench/results/control-plane-ovn.json.
 *
 *   NB ovsdb-server   unix:<dir>/nb.sock   (ovn-nb.ovsschema from ovn-central)
 *   SB ovsdb-server   unix:<dir>/sb.sock   (ovn-sb.ovsschema)
 *   ovn-northd        between the two
 *   chassis "hv0"     an OvsSandbox (dummy datapath, host network, br-int) and
 *                     ovn-controller on its db.sock, with external_ids
 *                     system-id=hv0, ovn-remote=unix:<dir>/sb.sock,
 *                     ovn-encap-type=geneve, ovn-encap-ip=127.0.0.1; its
 *                     ovs-vswitchd keeps idle OpenFlow bundles for an hour
 *                     instead of 10 s (see BUNDLE_IDLE_TIMEOUT_S)
 *
 * Every daemon has its pidfile, log and control socket in the run dir
 * (a sandbox dir from src/sandbox/rundir.ts, so a crashed run is swept by the
 * next one); `stop()` kills them and removes the dirs, and `start()` does so
 * itself when it fails half-way.
 *
 * The topology (flowdrake's side mirrors it):
 *   - switch `ls0`, subnet 10.1.0.0/16, gateway 10.1.0.1; port i (0-based) is
 *     `lsp<i>` with the MAC and IP of `portAddress(i)`, addresses and port
 *     security both "MAC IP", and the switch's one DHCP_Options row
 *     (cidr=10.1.0.0/16, server_id=router=10.1.0.1, server_mac
 *     fa:16:3e:ff:ff:fe, lease_time=3600). OVN has no subnet column on a
 *     switch outside its IPAM, so the subnet lives in the DHCP_Options cidr.
 *   - lsp<i>'s "VM" on hv0 is the OVS interface `vif<i>` on br-int, type
 *     dummy, external_ids:iface-id=lsp<i>.
 *
 * Scenarios (each returns a typed result; times are wall-clock):
 *   - bulk(n): plug vif0..vif<n-1> and wait (`--wait=hv sync`), untimed; then
 *     write the n ports with ovn-nbctl, BULK_PORTS_PER_INVOCATION ports (four
 *     `--`-joined commands each) per invocation and so per NB transaction, and
 *     `ovn-nbctl --wait=hv sync`. `seconds` runs from the first write until
 *     the wait has returned and br-int's flow count has settled (see
 *     `waitSettled`); `waitHvSeconds` until the wait alone returned. Reports
 *     br-int's flow count and ovn-controller's VmRSS before and after, and
 *     checks that every port was bound to hv0 in the SB. A `--wait=hv` that
 *     OVN 23.03 leaves hanging after an OpenFlow reconnect is recognised,
 *     nudged and counted (see OvnSandbox.waitHv).
 *   - churn(n, samples): on ls0 holding lsp0..lsp<n-1> (written untimed when
 *     ls0 is empty), each sample plugs vif<n+k> (untimed, waited for), times
 *     `ovn-nbctl --wait=hv lsp-add … -- lsp-set-addresses … --
 *     lsp-set-port-security … -- lsp-set-dhcpv4-options …`, then times
 *     `ovn-nbctl --wait=hv lsp-del`, then unplugs. Outside the timed windows it
 *     counts samples whose add did not grow br-int's flow count or whose
 *     delete did not bring it back; with `verifyFlows` the port's MAC must
 *     appear in br-int's flows after the add and be gone after the delete.
 *   - coldStart(): the layout of `coldSwitch`/`coldPort` — 100 switches of 100
 *     ports bound to 100 fake chassis, plus 50 ports of hv0 — is written with
 *     no ovn-controller running; then ovn-controller starts, and the time runs
 *     until its Chassis_Private.nb_cfg has reached the nb_cfg of an
 *     `ovn-nbctl --wait=sb sync` issued right after the start and br-int's flow
 *     count has settled (see `waitSettled`).
 *
 * Fake chassis are SB rows only (`ovn-sbctl chassis-add`: a Chassis and its
 * Encap, no Chassis_Private), so northd's hv_cfg, the minimum over
 * Chassis_Private rows, waits for hv0 alone. Their encap IPs are loopback
 * addresses (127.1.0.k+1): hv0 builds a Geneve port to each, and a dummy
 * datapath sends nothing anywhere, but should anything ever leave it would
 * stay on this machine.
 */
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { OvsSandbox } from "../src/sandbox/ovs.js";
import { Cleanup, makeRunDir } from "../src/sandbox/rundir.js";
import { FlowdrakeError, UsageError } from "../src/util/errors.js";
import { CommandError, type RunResult, run } from "../src/util/exec.js";
import { logger } from "../src/util/log.js";
import { printTable, writeResult } from "./report.js";

const log = logger("ovn-peer");

export const CHASSIS = "hv0";
export const SWITCH = "ls0";
export const SUBNET = "10.1.0.0/16";
export const GATEWAY = "10.1.0.1";
export const DHCP_SERVER_MAC = "fa:16:3e:ff:ff:fe";
export const LEASE_TIME = 3600;
/** Ports that fit ls0's /16 after skipping .0.0 and the gateway, before the broadcast. */
export const MAX_PORTS = 65533;
/** Ports per ovn-nbctl invocation when writing many (measured: see the report). */
export const BULK_PORTS_PER_INVOCATION = 1000;
/** Interfaces per ovs-vsctl invocation when plugging many. */
const PLUG_PER_INVOCATION = 1000;
/** SB Port_Binding updates per ovn-sbctl invocation (cold start set-up). */
const BIND_PER_INVOCATION = 2000;
/** Default upper bound for one `--wait=hv` (5000 ports on one switch takes minutes). */
const WAIT_TIMEOUT_S = 3600;
/**
 * ovs-vswitchd's other_config:bundle-idle-timeout (default 10 s). ovn-controller
 * opens an OpenFlow bundle, then may spend longer than 10 s in one
 * incremental-processing handler before it commits (seen at 1000 ports on a
 * busy 2-core machine); OVS then expires the bundle, ovn-controller reconnects
 * and reinstalls every flow, but 23.03 does not advance Chassis_Private.nb_cfg
 * for the lost update, so `--wait=hv` hangs until the next NB change.
 */
const BUNDLE_IDLE_TIMEOUT_S = 3600;
const SCHEMA_DIR = "/usr/share/ovn";
/** Idle time (all OVN daemons and ovs-vswitchd) after which a `--wait=hv` with nb_cfg behind is a stall. */
const STALL_IDLE_MS = 20_000;

const hex2 = (n: number) => n.toString(16).padStart(2, "0");
const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
const seconds = (fromMs: number, toMs = performance.now()) => Math.round(toMs - fromMs) / 1000;

export interface PortAddress {
  /** Logical_Switch_Port name. */
  name: string;
  mac: string;
  ip: string;
}

/**
 * ls0's port i: name `lsp<i>`, MAC fa:16:3e + the 24 bits of i
 * (fa:16:3e:XX:XX:XX, big-endian), IP 10.1.(h >> 8).(h & 255) with h = i + 2,
 * so port 0 is 10.1.0.2 (10.1.0.0 and the gateway 10.1.0.1 are skipped) and
 * port 65532 is 10.1.255.254.
 */
export function portAddress(i: number): PortAddress {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_PORTS) {
    throw new UsageError(`port index ${i} is outside 0..${MAX_PORTS - 1}`, { i });
  }
  const h = i + 2;
  return {
    name: `lsp${i}`,
    mac: `fa:16:3e:${hex2((i >> 16) & 255)}:${hex2((i >> 8) & 255)}:${hex2(i & 255)}`,
    ip: `10.1.${h >> 8}.${h & 255}`,
  };
}

/** The OVS interface on hv0's br-int that stands for the VM of ls0's port i. */
export function vifName(i: number): string {
  return `vif${i}`;
}

export interface ColdStartLayout {
  switches: number;
  portsPerSwitch: number;
  fakeChassis: number;
  /** Ports bound to hv0: one on each of switches 0..localPorts-1. */
  localPorts: number;
}

export const COLD_START: ColdStartLayout = {
  switches: 100,
  portsPerSwitch: 100,
  fakeChassis: 100,
  localPorts: 50,
};

export interface SwitchSpec {
  name: string;
  cidr: string;
  gateway: string;
}

/** Cold-start switch s: `cls<s>`, subnet 10.(100+s).0.0/16, gateway 10.(100+s).0.1. */
export function coldSwitch(s: number): SwitchSpec {
  if (!Number.isInteger(s) || s < 0 || s > 155) throw new UsageError(`switch index ${s} is outside 0..155`);
  return { name: `cls${s}`, cidr: `10.${100 + s}.0.0/16`, gateway: `10.${100 + s}.0.1` };
}

export interface ColdPort extends PortAddress {
  /** The chassis the port is bound to. */
  chassis: string;
}

/**
 * Cold-start port j of switch s: `cls<s>p<j>`, MAC fa:16:3e:01:<s>:<j>, IP
 * 10.(100+s).0.(j+2). Ports j < portsPerSwitch are remote, bound to fake
 * chassis `fake<j mod fakeChassis>` (with the default 100/100 every switch has
 * exactly one port on every fake chassis); j = portsPerSwitch is the switch's
 * port on hv0 (switches 0..localPorts-1 only), plugged as `cvif<s>`.
 */
export function coldPort(s: number, j: number, layout: ColdStartLayout = COLD_START): ColdPort {
  const sw = coldSwitch(s);
  if (!Number.isInteger(j) || j < 0 || j > layout.portsPerSwitch || j > 252) {
    throw new UsageError(`port index ${j} is outside 0..${Math.min(layout.portsPerSwitch, 252)}`);
  }
  return {
    name: `${sw.name}p${j}`,
    mac: `fa:16:3e:01:${hex2(s)}:${hex2(j)}`,
    ip: `10.${100 + s}.0.${j + 2}`,
    chassis: j === layout.portsPerSwitch ? CHASSIS : fakeChassisName(j % layout.fakeChassis),
  };
}

export function fakeChassisName(k: number): string {
  return `fake${k}`;
}

/** Fake chassis k's Geneve endpoint: 127.1.0.(k+1) (loopback; see the module comment). */
export function fakeChassisIp(k: number): string {
  return `127.1.${(k + 1) >> 8}.${(k + 1) & 255}`;
}

/** OVN's version as `ovn-controller --version` reports it, e.g. "23.03.1". */
export async function ovnVersion(): Promise<string> {
  const { stdout } = await run(["ovn-controller", "--version"]);
  const m = /ovn-controller\s+(\S+)/.exec(stdout);
  if (!m) throw new FlowdrakeError("COMMAND", `unexpected ovn-controller --version output: ${stdout}`);
  return m[1]!;
}

/** Ids of live (non-zombie) processes whose command line mentions `dir`. */
export function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (cmdline.includes(dir) && alive(Number(entry))) pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** utime + stime of a process, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

type Daemon = "nb" | "sb" | "northd" | "ovn-controller";

/** How a `--wait=hv` went (see OvnSandbox.waitHv). */
export interface HvWait {
  seconds: number;
  /** nb_cfg stalls detected and nudged. */
  stalls: number;
  /** Idle time spent before each stall was recognised (part of `seconds`). */
  stalledSeconds: number;
}

export interface OvnSandboxOptions {
  /** Start ovn-controller at once (default true); coldStart starts it later. */
  controller?: boolean;
  /** Give up on one `--wait=hv` (or on convergence) after this long (default 3600 s). */
  waitTimeoutS?: number;
}

export class OvnSandbox {
  readonly cleanup = new Cleanup();
  readonly env: NodeJS.ProcessEnv;
  private dhcpUuid?: string;

  private constructor(
    readonly dir: string,
    readonly ovs: OvsSandbox,
    readonly waitTimeoutS: number,
  ) {
    this.env = { ...process.env, OVN_RUNDIR: dir, OVN_LOGDIR: dir, OVN_DBDIR: dir, OVS_RUNDIR: ovs.dir };
  }

  static async start(opts: OvnSandboxOptions = {}): Promise<OvnSandbox> {
    for (const bin of ["ovn-northd", "ovn-controller", "ovn-nbctl", "ovn-sbctl"]) {
      if (!(await run(["which", bin], { allowFailure: true })).code) continue;
      throw new FlowdrakeError(
        "MISSING_COMPONENT",
        `${bin} not found: run 'bash scripts/setup' (installs Debian's ovn-central, ovn-host, ovn-common)`,
      );
    }
    const ovs = await OvsSandbox.start({
      label: "ovnhv",
      datapath: "dummy",
      hostNetwork: true,
      bridges: ["br-int"],
      otherConfig: { "bundle-idle-timeout": String(BUNDLE_IDLE_TIMEOUT_S) },
    });
    let sb: OvnSandbox;
    try {
      sb = new OvnSandbox(makeRunDir("ovn"), ovs, opts.waitTimeoutS ?? WAIT_TIMEOUT_S);
    } catch (err) {
      await ovs.stop();
      throw err;
    }
    sb.cleanup.add("run dir", () => {
      if (!process.env.FLOWDRAKE_KEEP_SANDBOX) rmSync(sb.dir, { recursive: true, force: true });
    });
    sb.cleanup.add("ovs sandbox", () => ovs.stop());
    try {
      await sb.startDb("nb", "ovn-nb.ovsschema");
      await sb.startDb("sb", "ovn-sb.ovsschema");
      await sb.nbctl("init");
      await sb.sbctl("init");
      await sb.daemon("northd", [
        "ovn-northd",
        `--ovnnb-db=${sb.nbRemote}`,
        `--ovnsb-db=${sb.sbRemote}`,
        `--unixctl=${join(sb.dir, "northd.ctl")}`,
      ]);
      await ovs.vsctl(
        "set",
        "Open_vSwitch",
        ".",
        `external_ids:system-id=${CHASSIS}`,
        `external_ids:ovn-remote=${sb.sbRemote}`,
        "external_ids:ovn-encap-type=geneve",
        "external_ids:ovn-encap-ip=127.0.0.1",
      );
      if (opts.controller ?? true) {
        await sb.startController();
        await sb.sbctl(`--timeout=60`, "wait-until", "Chassis_Private", CHASSIS);
        await sb.waitHv();
      }
      return sb;
    } catch (err) {
      await sb.stop();
      throw err;
    }
  }

  get nbRemote(): string {
    return `unix:${join(this.dir, "nb.sock")}`;
  }
  get sbRemote(): string {
    return `unix:${join(this.dir, "sb.sock")}`;
  }
  logFile(daemon: Daemon): string {
    return join(this.dir, `${daemon}.log`);
  }
  private pidFile(daemon: Daemon): string {
    return join(this.dir, `${daemon}.pid`);
  }

  private async startDb(name: "nb" | "sb", schema: string): Promise<void> {
    const db = join(this.dir, `${name}.db`);
    await run(["ovsdb-tool", "create", db, join(SCHEMA_DIR, schema)], { env: this.env });
    await this.daemon(name, [
      "ovsdb-server",
      db,
      `--remote=punix:${join(this.dir, `${name}.sock`)}`,
      `--unixctl=${join(this.dir, `${name}.ctl`)}`,
    ]);
  }

  /** Start a daemon with --detach, its pidfile and log in the run dir, and register its kill. */
  private async daemon(name: Daemon, argv: string[]): Promise<void> {
    this.cleanup.add(name, () => this.kill(name));
    await run([...argv, `--pidfile=${this.pidFile(name)}`, `--log-file=${this.logFile(name)}`, "--detach"], {
      env: this.env,
    });
  }

  /** Start ovn-controller on the chassis (it finds br-int.mgmt through OVS_RUNDIR). */
  async startController(): Promise<void> {
    if (this.controllerPid() !== undefined) throw new UsageError("ovn-controller is already running");
    await this.daemon("ovn-controller", ["ovn-controller", this.ovs.dbRemote]);
  }

  /** ovn-controller's pid, when it runs. */
  controllerPid(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(this.pidFile("ovn-controller"), "utf8").trim(), 10);
      return alive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  private runningController(): number {
    const pid = this.controllerPid();
    if (pid === undefined) {
      throw new FlowdrakeError("OVN_CONTROLLER_DOWN", "ovn-controller is not running", {
        log: this.logFile("ovn-controller"),
      });
    }
    return pid;
  }

  /** ovn-controller's VmRSS in KiB. */
  controllerRssKiB(): number {
    const pid = this.runningController();
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    if (!m) throw new FlowdrakeError("COMMAND", `no VmRSS in /proc/${pid}/status`);
    return Number(m[1]);
  }

  private async kill(daemon: Daemon): Promise<void> {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(this.pidFile(daemon), "utf8").trim(), 10);
    } catch {
      return;
    }
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(pid, sig);
      } catch {
        // already gone
      }
    };
    if (!alive(pid)) return;
    signal("SIGTERM");
    const deadline = Date.now() + 5000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (alive(pid)) signal("SIGKILL");
  }

  nbctl(...args: string[]): Promise<RunResult> {
    return this.ctl("ovn-nbctl", this.nbRemote, args);
  }
  sbctl(...args: string[]): Promise<RunResult> {
    return this.ctl("ovn-sbctl", this.sbRemote, args);
  }
  private ctl(tool: string, db: string, args: string[]): Promise<RunResult> {
    const timeout = args.find((a) => a.startsWith("--timeout="));
    const timeoutS = timeout ? Number(timeout.slice("--timeout=".length)) : 120;
    return run([tool, `--db=${db}`, ...(timeout ? [] : [`--timeout=${timeoutS}`]), ...args], {
      env: this.env,
      timeoutMs: (timeoutS + 10) * 1000,
    });
  }

  /**
   * `ovn-nbctl --wait=hv sync`: returns once every chassis has caught up with
   * the NB. While it waits, it watches for the nb_cfg stall of OVN 23.03: when
   * ovn-controller loses its OpenFlow connection mid-update (ovs-vswitchd
   * drops a controller that has not answered its echo for 60 s, which a
   * multi-minute incremental-processing handler causes at 5000 ports), it
   * reinstalls every flow but never reports the nb_cfg of the lost update, and
   * the wait would last until the next NB change. When ovn-controller,
   * ovs-vswitchd and ovn-northd together have used under a tenth of a core
   * for STALL_IDLE_MS while
   * hv0's Chassis_Private.nb_cfg is behind SB_Global's, this counts a stall
   * and bumps nb_cfg once more (`ovn-nbctl --wait=sb sync`), which makes
   * ovn-controller report again; the original wait then returns.
   */
  async waitHv(): Promise<HvWait> {
    const t0 = performance.now();
    let done = false;
    let failed: unknown;
    const sync = this.nbctl(`--timeout=${this.waitTimeoutS}`, "--wait=hv", "sync").then(
      () => void (done = true),
      (err: unknown) => void (failed = err),
    );
    const result: HvWait = { seconds: 0, stalls: 0, stalledSeconds: 0 };
    const busyTicks = () => this.daemonPids().reduce((sum, pid) => sum + cpuTicks(pid), 0);
    let quiet = { since: performance.now(), ticks: busyTicks() };
    while (!done) {
      await Promise.race([sync, new Promise((r) => setTimeout(r, 1000))]);
      if (failed) throw failed;
      if (done) break;
      const now = performance.now();
      const ticks = busyTicks();
      if (((ticks - quiet.ticks) * 1000) / 100 > (now - quiet.since) / 10) {
        quiet = { since: now, ticks };
        continue;
      }
      if (now - quiet.since < STALL_IDLE_MS) continue;
      const reported = Number((await this.sbctl("get", "Chassis_Private", CHASSIS, "nb_cfg")).stdout.trim());
      const wanted = Number((await this.sbctl("get", "SB_Global", ".", "nb_cfg")).stdout.trim());
      if (reported < wanted) {
        result.stalls++;
        result.stalledSeconds += (now - quiet.since) / 1000;
        log.warn({ reported, wanted }, "ovn-controller idle with nb_cfg behind: bumping nb_cfg");
        await this.nbctl(`--timeout=${this.waitTimeoutS}`, "--wait=sb", "sync");
      }
      quiet = { since: performance.now(), ticks: busyTicks() };
    }
    result.seconds = seconds(t0);
    result.stalledSeconds = Math.round(result.stalledSeconds * 1000) / 1000;
    return result;
  }

  /** Pids of the daemons whose work a `--wait=hv` waits for. */
  private daemonPids(): number[] {
    const files = [
      this.pidFile("ovn-controller"),
      this.pidFile("northd"),
      join(this.ovs.dir, "ovs-vswitchd.pid"),
    ];
    return files.flatMap((f) => {
      try {
        const pid = Number.parseInt(readFileSync(f, "utf8").trim(), 10);
        return alive(pid) ? [pid] : [];
      } catch {
        return [];
      }
    });
  }

  /** br-int's flow count, from `ovs-ofctl dump-aggregate`. */
  async flowCount(): Promise<number> {
    const { stdout } = await run(
      ["ovs-ofctl", "-O", "OpenFlow15", "dump-aggregate", this.ovs.mgmtRemote("br-int")],
      { env: this.ovs.env },
    );
    const m = /flow_count=(\d+)/.exec(stdout);
    if (!m) throw new FlowdrakeError("COMMAND", `no flow_count in dump-aggregate output: ${stdout}`);
    return Number(m[1]);
  }

  /** br-int's flows as `ovs-ofctl dump-flows --no-stats` lines. */
  async dumpFlows(): Promise<string[]> {
    const { stdout } = await run(
      ["ovs-ofctl", "-O", "OpenFlow15", "--no-stats", "dump-flows", this.ovs.mgmtRemote("br-int")],
      { env: this.ovs.env },
    );
    return stdout
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("OFPST_FLOW") && !l.startsWith("NXST_FLOW"));
  }

  /**
   * Plug VM interfaces into br-int: dummy ports with external_ids:iface-id.
   * ovs-vsctl waits for ovs-vswitchd to have configured them (ofports
   * assigned), which takes tens of seconds per thousand once br-int holds
   * thousands of ports.
   */
  async plug(vifs: { port: string; ifaceId: string }[]): Promise<void> {
    for (let i = 0; i < vifs.length; i += PLUG_PER_INVOCATION) {
      const chunk = vifs.slice(i, i + PLUG_PER_INVOCATION);
      const args = chunk.flatMap((v) => [
        "--",
        "add-port",
        "br-int",
        v.port,
        "--",
        "set",
        "Interface",
        v.port,
        "type=dummy",
        `external_ids:iface-id=${v.ifaceId}`,
      ]);
      await batch(`plugging ${chunk[0]!.port}..${chunk.at(-1)!.port}`, () =>
        run(["ovs-vsctl", `--db=${this.ovs.dbRemote}`, `--timeout=${this.waitTimeoutS}`, ...args.slice(1)], {
          env: this.ovs.env,
          timeoutMs: (this.waitTimeoutS + 10) * 1000,
        }),
      );
    }
  }

  async unplug(port: string): Promise<void> {
    await this.ovs.vsctl("del-port", "br-int", port);
  }

  /** ls0 and its DHCP_Options row, created when missing; the row's uuid. */
  async ensureSwitch(): Promise<string> {
    if (this.dhcpUuid) return this.dhcpUuid;
    await this.nbctl("--may-exist", "ls-add", SWITCH);
    const found = (
      await this.nbctl("--bare", "--columns=_uuid", "find", "DHCP_Options", `cidr="${SUBNET}"`)
    ).stdout
      .trim()
      .split("\n")[0];
    this.dhcpUuid = found || (await this.createDhcp(SUBNET, GATEWAY));
    return this.dhcpUuid;
  }

  private async createDhcp(cidr: string, gateway: string): Promise<string> {
    const { stdout } = await this.nbctl("create", "DHCP_Options", ...dhcpColumns(cidr, gateway));
    return stdout.trim();
  }

  /** Names of ls0's ports. */
  async switchPorts(): Promise<string[]> {
    const { stdout } = await this.nbctl("lsp-list", SWITCH);
    return stdout
      .split("\n")
      .map((l) => /\((.*)\)\s*$/.exec(l)?.[1])
      .filter((n): n is string => !!n);
  }

  /** Write ports with as few ovn-nbctl invocations as the chunk size allows; the invocation count. */
  async addPorts(ports: NewPort[], perInvocation: number): Promise<number> {
    let invocations = 0;
    for (let i = 0; i < ports.length; i += perInvocation) {
      const chunk = ports.slice(i, i + perInvocation);
      const args = chunk.flatMap((p) => ["--", ...lspCommands(p)]);
      await batch(`writing ${chunk[0]!.port.name}..${chunk.at(-1)!.port.name}`, () =>
        this.nbctl(`--timeout=${this.waitTimeoutS}`, ...args.slice(1)),
      );
      invocations++;
    }
    return invocations;
  }

  /** Logical ports bound to `chassis` in the SB. */
  async boundPorts(chassis = CHASSIS): Promise<string[]> {
    const uuid = (
      await this.sbctl("--bare", "--columns=_uuid", "find", "Chassis", `name=${chassis}`)
    ).stdout.trim();
    if (!uuid) return [];
    const { stdout } = await this.sbctl(
      "--bare",
      "--columns=logical_port",
      "find",
      "Port_Binding",
      `chassis=${uuid}`,
    );
    return stdout.split("\n").filter(Boolean);
  }

  async stop(): Promise<void> {
    await this.cleanup.run();
  }
}

/**
 * Run one many-command invocation; on failure, a FlowdrakeError naming the
 * batch and carrying the tool's stderr instead of its thousands of arguments.
 */
async function batch(what: string, fn: () => Promise<RunResult>): Promise<RunResult> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    const argv = (err.context.argv as string[] | undefined) ?? [];
    throw new FlowdrakeError(
      "COMMAND",
      `${argv[0] ?? "command"} failed while ${what}: ${String(err.context.stderr ?? "").trim()}`,
      { code: err.context.code },
    );
  }
}

function dhcpColumns(cidr: string, gateway: string): string[] {
  return [
    `cidr="${cidr}"`,
    `options:server_id="${gateway}"`,
    `options:server_mac="${DHCP_SERVER_MAC}"`,
    `options:lease_time="${LEASE_TIME}"`,
    `options:router="${gateway}"`,
  ];
}

/** A port to create: its switch, address and DHCP_Options row. */
export interface NewPort {
  sw: string;
  port: PortAddress;
  dhcp: string;
}

/** The four ovn-nbctl commands that create one port, `--`-joined. */
function lspCommands({ sw, port: p, dhcp }: NewPort): string[] {
  const addr = `${p.mac} ${p.ip}`;
  return [
    "lsp-add",
    sw,
    p.name,
    "--",
    "lsp-set-addresses",
    p.name,
    addr,
    "--",
    "lsp-set-port-security",
    p.name,
    addr,
    "--",
    "lsp-set-dhcpv4-options",
    p.name,
    dhcp,
  ];
}

function checkSize(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n >= MAX_PORTS) {
    throw new UsageError(`port count ${n} is outside 1..${MAX_PORTS - 1}`, { n });
  }
}

const ls0Ports = (indices: number[], dhcp: string): NewPort[] =>
  indices.map((i) => ({ sw: SWITCH, port: portAddress(i), dhcp }));

const lsVifs = (indices: number[]) =>
  indices.map((i) => ({ port: vifName(i), ifaceId: portAddress(i).name }));

export interface BulkResult {
  ports: number;
  /** NB write start → realised: `--wait=hv sync` returned and br-int's flows settled. */
  seconds: number;
  /** NB write start → `--wait=hv sync` returned. */
  waitHvSeconds: number;
  /** The ovn-nbctl writes alone (part of `seconds`). */
  writeSeconds: number;
  nbctlInvocations: number;
  /** nb_cfg stalls that `waitHv` had to nudge (see OvnSandbox.waitHv); 0 when none. */
  nbCfgStalls: number;
  /** Idle seconds spent recognising them, included in `seconds`. */
  stalledSeconds: number;
  /** br-int flows with the n interfaces plugged and no ports written. */
  flowsBefore: number;
  flows: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
}

/** Bulk scenario on an OvnSandbox with ovn-controller running and an empty ls0. */
export async function bulk(
  ovn: OvnSandbox,
  n: number,
  opts: { portsPerInvocation?: number; settleWindowMs?: number } = {},
): Promise<BulkResult> {
  checkSize(n);
  const dhcp = await ovn.ensureSwitch();
  const existing = await ovn.switchPorts();
  if (existing.length) {
    throw new UsageError(`bulk needs an empty ${SWITCH}; it holds ${existing.length} ports`);
  }
  await ovn.plug(lsVifs(range(n)));
  await ovn.waitHv();
  const flowsBefore = await ovn.flowCount();
  const rssBeforeKiB = ovn.controllerRssKiB();
  const ports = ls0Ports(range(n), dhcp);
  const t0 = performance.now();
  const nbctlInvocations = await ovn.addPorts(ports, opts.portsPerInvocation ?? BULK_PORTS_PER_INVOCATION);
  const tWrite = performance.now();
  const done = await waitSettled(ovn, t0, ovn.waitHv(), {
    windowMs: opts.settleWindowMs ?? 2000,
    minFlows: flowsBefore,
  });
  const wait = done.report;
  const result: BulkResult = {
    ports: n,
    seconds: seconds(t0, done.at),
    waitHvSeconds: seconds(t0, done.reportedAt),
    writeSeconds: seconds(t0, tWrite),
    nbctlInvocations,
    nbCfgStalls: wait.stalls,
    stalledSeconds: wait.stalledSeconds,
    flowsBefore,
    flows: done.flows,
    rssBeforeKiB,
    rssAfterKiB: ovn.controllerRssKiB(),
  };
  const bound = (await ovn.boundPorts()).length;
  if (bound !== n) {
    throw new FlowdrakeError(
      "OVN_NOT_REALISED",
      `after --wait=hv ${bound} of ${n} ports are bound to ${CHASSIS}`,
    );
  }
  log.info(result, "ovn bulk");
  return result;
}

export interface Percentiles {
  p50: number;
  p99: number;
}

/** Nearest-rank percentiles. */
export function percentiles(samples: number[]): Percentiles {
  if (!samples.length) throw new UsageError("no samples");
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { p50: rank(50), p99: rank(99) };
}

export interface ChurnResult {
  ports: number;
  samples: number;
  addSeconds: number[];
  removeSeconds: number[];
  add: Percentiles;
  remove: Percentiles;
  /** br-int flows at n ports, after the last sample. */
  flows: number;
  /** Samples whose `--wait=hv` add returned with br-int's flow count not grown. */
  addsWithoutFlows: number;
  /** Samples whose `--wait=hv` delete returned with the flow count not back to its value before the add. */
  removesLeavingFlows: number;
  /** The ports added and removed, in order (ls0 indices n..n+samples-1). */
  churned: PortAddress[];
}

/** Bring ls0 to exactly lsp0..lsp<n-1> (from empty; untimed). */
async function ensurePorts(ovn: OvnSandbox, n: number, dhcp: string): Promise<void> {
  const existing = await ovn.switchPorts();
  if (existing.length === n) return;
  if (existing.length) {
    throw new UsageError(
      `churn at ${n} ports needs ${SWITCH} empty or holding ${n}; it holds ${existing.length}`,
    );
  }
  await ovn.plug(lsVifs(range(n)));
  await ovn.addPorts(ls0Ports(range(n), dhcp), BULK_PORTS_PER_INVOCATION);
  await ovn.waitHv();
}

/** Churn scenario: one port added and one removed per sample, at n ports. */
export async function churn(
  ovn: OvnSandbox,
  n: number,
  samples = 20,
  opts: { verifyFlows?: boolean } = {},
): Promise<ChurnResult> {
  checkSize(n + samples);
  if (!Number.isInteger(samples) || samples < 1) throw new UsageError(`samples must be ≥ 1, got ${samples}`);
  const dhcp = await ovn.ensureSwitch();
  await ensurePorts(ovn, n, dhcp);
  const addSeconds: number[] = [];
  const removeSeconds: number[] = [];
  const churned: PortAddress[] = [];
  let addsWithoutFlows = 0;
  let removesLeavingFlows = 0;
  const hasMac = async (mac: string) => (await ovn.dumpFlows()).some((l) => l.includes(mac));
  for (let k = 0; k < samples; k++) {
    const i = n + k;
    const p = portAddress(i);
    churned.push(p);
    await ovn.plug(lsVifs([i]));
    await ovn.waitHv();
    const flowsBefore = await ovn.flowCount();
    let t0 = performance.now();
    await ovn.nbctl(
      `--timeout=${ovn.waitTimeoutS}`,
      "--wait=hv",
      ...lspCommands({ sw: SWITCH, port: p, dhcp }),
    );
    addSeconds.push(seconds(t0));
    if ((await ovn.flowCount()) <= flowsBefore) addsWithoutFlows++;
    if (opts.verifyFlows && !(await hasMac(p.mac))) {
      throw new FlowdrakeError("OVN_NOT_REALISED", `no flow of ${p.name} (${p.mac}) after --wait=hv lsp-add`);
    }
    t0 = performance.now();
    await ovn.nbctl(`--timeout=${ovn.waitTimeoutS}`, "--wait=hv", "lsp-del", p.name);
    removeSeconds.push(seconds(t0));
    if ((await ovn.flowCount()) !== flowsBefore) removesLeavingFlows++;
    if (opts.verifyFlows && (await hasMac(p.mac))) {
      throw new FlowdrakeError(
        "OVN_NOT_REALISED",
        `flows of ${p.name} (${p.mac}) left after --wait=hv lsp-del`,
      );
    }
    await ovn.unplug(vifName(i));
  }
  const result: ChurnResult = {
    ports: n,
    samples,
    addSeconds,
    removeSeconds,
    add: percentiles(addSeconds),
    remove: percentiles(removeSeconds),
    flows: await ovn.flowCount(),
    addsWithoutFlows,
    removesLeavingFlows,
    churned,
  };
  log.info(
    { ports: n, add: result.add, remove: result.remove, addsWithoutFlows, removesLeavingFlows },
    "ovn churn",
  );
  return result;
}

export interface ColdStartResult extends ColdStartLayout {
  remotePorts: number;
  /** ovn-controller start → converged (nb_cfg caught up and flows settled). */
  seconds: number;
  /** ovn-controller start → its Chassis_Private.nb_cfg reached the target. */
  nbCfgSeconds: number;
  /** How long br-int's flow count had to stay unchanged to count as settled. */
  settleWindowSeconds: number;
  flows: number;
  rssKiB: number;
  /** Geneve ports hv0 built on br-int (one per fake chassis). */
  tunnels: number;
  /** Time to write and bind the layout (not part of `seconds`). */
  setupSeconds: number;
}

/**
 * Wait until OVN says it is done — `reported` resolves: hv0's nb_cfg caught
 * up, or `--wait=hv` returned — and br-int's flow count (polled every
 * `pollMs` from `t0`, a performance.now() value) has stayed above `minFlows`
 * and unchanged, with ovn-controller using under a tenth of a core, for
 * `windowMs`. The settled time is the later of the report and the last poll
 * that saw the flow count change, so it is exact to one poll interval. Both
 * are needed: at 5000 ports OVN 23.03 has been seen to report while br-int
 * held none of the flows (they were reinstalled after an OpenFlow reconnect).
 */
async function waitSettled<T>(
  ovn: OvnSandbox,
  t0: number,
  reported: Promise<T>,
  opts: { windowMs: number; minFlows: number; pollMs?: number },
): Promise<{ at: number; reportedAt: number; report: T; flows: number }> {
  let done: { at: number; report: T } | undefined;
  let failed: unknown;
  reported.then(
    (report) => void (done = { at: performance.now(), report }),
    (err: unknown) => void (failed = err),
  );
  const pid = () => {
    const p = ovn.controllerPid();
    if (p === undefined) throw new FlowdrakeError("OVN_CONTROLLER_DOWN", "ovn-controller exited");
    return p;
  };
  let flows = await ovn.flowCount();
  let changedAt = t0;
  let window = { from: performance.now(), ticks: cpuTicks(pid()) };
  const deadline = performance.now() + ovn.waitTimeoutS * 1000;
  for (;;) {
    if (failed) throw failed;
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
    const now = performance.now();
    const count = await ovn.flowCount();
    const ticks = cpuTicks(pid());
    if (count !== flows) {
      flows = count;
      changedAt = now;
      window = { from: now, ticks };
      continue;
    }
    const quietMs = now - window.from;
    if (quietMs >= opts.windowMs) {
      const busy = ((ticks - window.ticks) * 1000) / 100 > quietMs / 10;
      if (done && !busy && flows > opts.minFlows) {
        return { at: Math.max(done.at, changedAt), reportedAt: done.at, report: done.report, flows };
      }
      if (busy) window = { from: now, ticks };
    }
    if (now > deadline) {
      throw new FlowdrakeError("TIMEOUT", `ovn-controller did not settle within ${ovn.waitTimeoutS} s`, {
        flows,
        reported: !!done,
      });
    }
  }
}

/** Cold-start scenario, in a sandbox of its own. */
export async function coldStart(
  layout: ColdStartLayout = COLD_START,
  opts: { settleWindowMs?: number; waitTimeoutS?: number } = {},
): Promise<ColdStartResult> {
  const { switches, portsPerSwitch, fakeChassis, localPorts } = layout;
  if (localPorts > switches) throw new UsageError(`${localPorts} local ports need as many switches`);
  const settleWindowMs = opts.settleWindowMs ?? 2000;
  const ovn = await OvnSandbox.start({ controller: false, waitTimeoutS: opts.waitTimeoutS });
  try {
    const tSetup = performance.now();
    await ovn.sbctl(
      ...range(fakeChassis)
        .flatMap((k) => ["--", "chassis-add", fakeChassisName(k), "geneve", fakeChassisIp(k)])
        .slice(1),
    );
    const create = range(switches).flatMap((s) => {
      const sw = coldSwitch(s);
      return ["--", "ls-add", sw.name, "--", "create", "DHCP_Options", ...dhcpColumns(sw.cidr, sw.gateway)];
    });
    const dhcp = (await batch("creating the switches", () => ovn.nbctl(...create.slice(1)))).stdout
      .trim()
      .split("\n");
    if (dhcp.length !== switches)
      throw new FlowdrakeError("COMMAND", `expected ${switches} DHCP_Options uuids`);
    const ports: (NewPort & { port: ColdPort })[] = [];
    for (let s = 0; s < switches; s++) {
      const last = s < localPorts ? portsPerSwitch : portsPerSwitch - 1;
      for (let j = 0; j <= last; j++)
        ports.push({ sw: coldSwitch(s).name, port: coldPort(s, j, layout), dhcp: dhcp[s]! });
    }
    await ovn.addPorts(ports, BULK_PORTS_PER_INVOCATION);
    await ovn.nbctl(`--timeout=${ovn.waitTimeoutS}`, "--wait=sb", "sync");
    const chassisUuid = new Map<string, string>();
    const listed = await ovn.sbctl(
      "--format=csv",
      "--data=bare",
      "--no-headings",
      "--columns=_uuid,name",
      "list",
      "Chassis",
    );
    for (const line of listed.stdout.split("\n").filter(Boolean)) {
      const [uuid, name] = line.split(",");
      chassisUuid.set(name!, uuid!);
    }
    const remote = ports.filter((p) => p.port.chassis !== CHASSIS);
    for (let i = 0; i < remote.length; i += BIND_PER_INVOCATION) {
      const args = remote.slice(i, i + BIND_PER_INVOCATION).flatMap(({ port }) => {
        const uuid = chassisUuid.get(port.chassis);
        if (!uuid) throw new FlowdrakeError("COMMAND", `fake chassis ${port.chassis} is not in the SB`);
        return ["--", "set", "Port_Binding", port.name, `chassis=${uuid}`, "up=true"];
      });
      await batch(`binding ${remote[i]!.port.name}..`, () =>
        ovn.sbctl(`--timeout=${ovn.waitTimeoutS}`, ...args.slice(1)),
      );
    }
    await ovn.nbctl(`--timeout=${ovn.waitTimeoutS}`, "--wait=sb", "sync");
    const local = ports.filter((p) => p.port.chassis === CHASSIS);
    await ovn.plug(local.map((p, s) => ({ port: `cvif${s}`, ifaceId: p.port.name })));
    const setupSeconds = seconds(tSetup);
    log.info({ setupSeconds, ports: ports.length }, "ovn cold start: layout written");

    const t0 = performance.now();
    await ovn.startController();
    await ovn.nbctl("--wait=sb", "sync");
    const nbCfg = Number((await ovn.nbctl("get", "NB_Global", ".", "nb_cfg")).stdout.trim());
    const nbCfgReached = ovn.sbctl(
      `--timeout=${ovn.waitTimeoutS}`,
      "wait-until",
      "Chassis_Private",
      CHASSIS,
      `nb_cfg>=${nbCfg}`,
    );
    const done = await waitSettled(ovn, t0, nbCfgReached, { windowMs: settleWindowMs, minFlows: 0 });
    const bound = new Set(await ovn.boundPorts());
    const missing = local.filter((p) => !bound.has(p.port.name)).map((p) => p.port.name);
    if (missing.length) {
      throw new FlowdrakeError("OVN_NOT_REALISED", `local ports not bound to ${CHASSIS} after convergence`, {
        missing,
      });
    }
    const tunnels = (
      await ovn.ovs.vsctl("--bare", "--columns=name", "find", "Interface", "type=geneve")
    ).stdout
      .split("\n")
      .filter(Boolean).length;
    const result: ColdStartResult = {
      ...layout,
      remotePorts: remote.length,
      seconds: seconds(t0, done.at),
      nbCfgSeconds: seconds(t0, done.reportedAt),
      settleWindowSeconds: settleWindowMs / 1000,
      flows: done.flows,
      rssKiB: ovn.controllerRssKiB(),
      tunnels,
      setupSeconds,
    };
    log.info(result, "ovn cold start");
    return result;
  } finally {
    await ovn.stop();
  }
}

export interface ControlPlaneOvnResults {
  ovn: string;
  sizes: {
    ports: number;
    bulk: BulkResult;
    churn: ChurnResult;
    /** Wall time of the size's whole run (sandbox, plugging, bulk, churn, teardown). */
    wallSeconds: { bulk: number; churn: number; total: number };
  }[];
  coldStart: ColdStartResult & { wallSeconds: number };
}

/** `npm run bench -- control-plane-ovn`: bulk and churn at 200/1000/5000 ports, then cold start. */
export async function controlPlaneOvn(
  sizes: number[] = [200, 1000, 5000],
  samples = 20,
): Promise<ControlPlaneOvnResults> {
  const results: ControlPlaneOvnResults["sizes"] = [];
  for (const n of sizes) {
    const tStart = performance.now();
    const ovn = await OvnSandbox.start();
    let b: BulkResult;
    let c: ChurnResult;
    const wall = { bulk: 0, churn: 0, total: 0 };
    try {
      let t = performance.now();
      b = await bulk(ovn, n);
      wall.bulk = seconds(t);
      t = performance.now();
      c = await churn(ovn, n, samples);
      wall.churn = seconds(t);
    } finally {
      await ovn.stop();
    }
    wall.total = seconds(tStart);
    results.push({ ports: n, bulk: b, churn: c, wallSeconds: wall });
    process.stdout.write(`ovn: ${n} ports done in ${wall.total} s\n`);
  }
  const tCold = performance.now();
  const cold = await coldStart();
  const all: ControlPlaneOvnResults = {
    ovn: await ovnVersion(),
    sizes: results,
    coldStart: { ...cold, wallSeconds: seconds(tCold) },
  };
  printTable(
    results.map((r) => ({
      ports: r.ports,
      "bulk s": r.bulk.seconds,
      "wait=hv s": r.bulk.waitHvSeconds,
      "nbctl s": r.bulk.writeSeconds,
      flows: r.bulk.flows,
      "rss MiB": +(r.bulk.rssAfterKiB / 1024).toFixed(1),
      "KiB/port": +((r.bulk.rssAfterKiB - r.bulk.rssBeforeKiB) / r.ports).toFixed(1),
      "add p50": r.churn.add.p50,
      "add p99": r.churn.add.p99,
      "del p50": r.churn.remove.p50,
      "del p99": r.churn.remove.p99,
      "wall s": r.wallSeconds.total,
    })),
  );
  process.stdout.write(
    `cold start (${cold.switches}×${cold.portsPerSwitch} remote ports on ${cold.fakeChassis} chassis + ` +
      `${cold.localPorts} local): ${cold.seconds} s (nb_cfg at ${cold.nbCfgSeconds} s), ` +
      `${cold.flows} flows, ${(cold.rssKiB / 1024).toFixed(1)} MiB RSS, ${cold.tunnels} tunnels; ` +
      `set-up ${cold.setupSeconds} s\n`,
  );
  const path = writeResult("control-plane-ovn", { ...all });
  process.stdout.write(`wrote ${path}\n`);
  return all;
}
