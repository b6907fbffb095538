/**
 * An Open vSwitch sandbox: a private ovsdb-server and ovs-vswitchd with their
 * own run directory, database, sockets and logs, for tests, simulated hosts and
 * the demo. Nothing here touches the host's own OVS (if any) or its network
 * configuration.
 *
 *   ovsdb-server   host namespace, unix:<dir>/db.sock (+ optional ptcp on 127.0.0.1)
 *   ovs-vswitchd   the sandbox's own network namespace (a `netdev` datapath
 *                  creates the `ovs-netdev` tap, which would collide between
 *                  two sandboxes sharing a namespace); `--enable-dummy` always,
 *                  so that `dummy` bridges and ports are available too.
 *   bridges        <dir>/<bridge>.mgmt is each bridge's OpenFlow management socket
 *
 * A `dummy` datapath creates no kernel devices at all, so such a sandbox may run
 * its vswitchd in the host namespace (`hostNetwork`), which lets it reach a
 * controller listening on the host's 127.0.0.1.
 *
 * `ssl` (OVS's --private-key/--certificate/--ca-cert files) gives both daemons
 * SSL: ovsdb-server also listens on pssl:<ovsdbSslPort>:127.0.0.1 (and serves
 * `ovs-vsctl set-manager pssl:…` remotes), ovs-vswitchd can then serve
 * `ovs-vsctl set-controller BR pssl:…` listeners.
 */

import { existsSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { FlowdrakeError } from "../util/errors.js";
import { type RunResult, run } from "../util/exec.js";
import type { SslFiles } from "../util/ssl.js";
import { createNetns, createVeth } from "./netns.js";
import { Cleanup, makeRunDir, sweepStale } from "./rundir.js";

export type DatapathType = "netdev" | "dummy";

export interface OvsSandboxOptions {
  label?: string;
  /** Datapath of the bridges this sandbox creates (default netdev). */
  datapath?: DatapathType;
  /** Bridges to create at start (default ["br-int"]); fail-mode=secure, no NORMAL flow. */
  bridges?: string[];
  /** Run ovs-vswitchd in the caller's namespace; only allowed with the dummy datapath. */
  hostNetwork?: boolean;
  /** Also listen for OVSDB clients on 127.0.0.1:<port>. */
  ovsdbTcp?: boolean;
  /** Extra other_config for the Open_vSwitch row, set before ovs-vswitchd starts. */
  otherConfig?: Record<string, string>;
  /** Reuse an existing namespace instead of creating one. */
  netns?: string;
  /** SSL files for both daemons; ovsdb-server then also listens on pssl:<ovsdbSslPort>:127.0.0.1. */
  ssl?: SslFiles;
}

export interface VmPort {
  /** The VM's namespace. */
  netns: string;
  /** The OVS-side interface name (in the sandbox namespace). */
  port: string;
  /** The VM-side interface name. */
  ifname: string;
  mac: string;
  ofport: number;
  ifaceId: string;
}

const schemaPath = "/usr/share/openvswitch/vswitch.ovsschema";

export class OvsSandbox {
  readonly cleanup = new Cleanup();
  readonly env: NodeJS.ProcessEnv;
  ovsdbTcpPort?: number;
  ovsdbSslPort?: number;

  private constructor(
    readonly dir: string,
    readonly netns: string | undefined,
    readonly datapath: DatapathType,
    readonly ssl?: SslFiles,
  ) {
    this.env = {
      ...process.env,
      OVS_RUNDIR: dir,
      OVS_DBDIR: dir,
      OVS_LOGDIR: dir,
      OVS_SYSCONFDIR: dir,
      OVS_PKGDATADIR: "/usr/share/openvswitch",
    };
  }

  static async start(opts: OvsSandboxOptions = {}): Promise<OvsSandbox> {
    for (const bin of ["ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ovsdb-tool"]) {
      if (!(await run(["which", bin], { allowFailure: true })).code) continue;
      throw new FlowdrakeError(
        "MISSING_COMPONENT",
        `${bin} not found: run 'bash scripts/setup' (installs Debian's openvswitch-switch)`,
      );
    }
    await sweepStale();
    const datapath = opts.datapath ?? "netdev";
    if (opts.hostNetwork && datapath !== "dummy") {
      throw new FlowdrakeError("USAGE", "hostNetwork is only allowed with the dummy datapath");
    }
    const label = opts.label ?? "ovs";
    const dir = makeRunDir(label);
    const cleanup = new Cleanup();
    let netns = opts.netns;
    try {
      if (!netns && !opts.hostNetwork) netns = await createNetns(label.slice(0, 6), cleanup);
      const sb = new OvsSandbox(dir, netns, datapath, opts.ssl);
      sb.cleanup.add("run dir", () => {
        if (!process.env.FLOWDRAKE_KEEP_SANDBOX) rmSync(dir, { recursive: true, force: true });
      });
      sb.cleanup.add("namespaces", () => cleanup.run());
      try {
        await sb.startOvsdb(opts.ovsdbTcp ?? false);
        await sb.vsctl("--no-wait", "init");
        for (const [k, v] of Object.entries(opts.otherConfig ?? {})) {
          await sb.vsctl("--no-wait", "set", "Open_vSwitch", ".", `other_config:${k}=${v}`);
        }
        await sb.startVswitchd();
        for (const br of opts.bridges ?? ["br-int"]) await sb.addBridge(br);
        return sb;
      } catch (err) {
        await sb.stop();
        throw err;
      }
    } catch (err) {
      await cleanup.run();
      throw err;
    }
  }

  get dbSocket(): string {
    return join(this.dir, "db.sock");
  }
  get dbRemote(): string {
    return `unix:${this.dbSocket}`;
  }
  /** `ssl:127.0.0.1:<port>` of ovsdb-server's pssl listener (sandboxes started with `ssl`). */
  get dbSslRemote(): string {
    if (this.ovsdbSslPort === undefined) throw new FlowdrakeError("USAGE", "sandbox started without ssl");
    return `ssl:127.0.0.1:${this.ovsdbSslPort}`;
  }
  mgmtSocket(bridge = "br-int"): string {
    return join(this.dir, `${bridge}.mgmt`);
  }
  mgmtRemote(bridge = "br-int"): string {
    return `unix:${this.mgmtSocket(bridge)}`;
  }
  logFile(daemon: "ovsdb-server" | "ovs-vswitchd"): string {
    return join(this.dir, `${daemon}.log`);
  }

  private async startOvsdb(tcp: boolean): Promise<void> {
    const db = join(this.dir, "conf.db");
    if (!existsSync(db)) await run(["ovsdb-tool", "create", db, schemaPath], { env: this.env });
    const argv = [
      "ovsdb-server",
      db,
      `--remote=punix:${this.dbSocket}`,
      "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
      `--unixctl=${join(this.dir, "ovsdb-server.ctl")}`,
      `--pidfile=${join(this.dir, "ovsdb-server.pid")}`,
      `--log-file=${this.logFile("ovsdb-server")}`,
      "--detach",
    ];
    if (tcp) {
      this.ovsdbTcpPort ??= await freeTcpPort();
      argv.push(`--remote=ptcp:${this.ovsdbTcpPort}:127.0.0.1`);
    }
    if (this.ssl) {
      this.ovsdbSslPort ??= await freeTcpPort();
      argv.push(...sslArgs(this.ssl), `--remote=pssl:${this.ovsdbSslPort}:127.0.0.1`);
    }
    await run(argv, { env: this.env });
    this.cleanup.add("ovsdb-server", () => this.killDaemon("ovsdb-server"));
  }

  private async startVswitchd(): Promise<void> {
    await run(
      [
        "ovs-vswitchd",
        this.dbRemote,
        "--enable-dummy",
        "--disable-system",
        "--disable-system-route",
        `--unixctl=${join(this.dir, "ovs-vswitchd.ctl")}`,
        `--pidfile=${join(this.dir, "ovs-vswitchd.pid")}`,
        `--log-file=${this.logFile("ovs-vswitchd")}`,
        "--detach",
        ...(this.ssl ? sslArgs(this.ssl) : []),
      ],
      { env: this.env, netns: this.netns },
    );
    this.cleanup.add("ovs-vswitchd", () => this.killDaemon("ovs-vswitchd"));
  }

  /** Stop and start ovs-vswitchd (flows are lost; the database is kept). */
  async restartVswitchd(): Promise<void> {
    await this.killDaemon("ovs-vswitchd");
    await this.startVswitchd();
    await this.vsctl("--timeout=20", "wait-until", "Open_vSwitch", ".", "cur_cfg>=1");
  }

  /** Stop and start ovsdb-server (the database file is kept). */
  async restartOvsdb(): Promise<void> {
    await this.killDaemon("ovsdb-server");
    await this.startOvsdb(this.ovsdbTcpPort !== undefined);
  }

  async killDaemon(
    daemon: "ovsdb-server" | "ovs-vswitchd",
    signal: NodeJS.Signals = "SIGTERM",
  ): Promise<void> {
    const pidfile = join(this.dir, `${daemon}.pid`);
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(pidfile, "utf8").trim(), 10);
    } catch {
      return;
    }
    try {
      process.kill(pid, signal);
    } catch {
      return;
    }
    // Wait (bounded) for it to go, so a restart does not race the old process.
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }

  async addBridge(name: string): Promise<void> {
    await this.vsctl(
      "add-br",
      name,
      "--",
      "set",
      "bridge",
      name,
      `datapath_type=${this.datapath}`,
      "fail-mode=secure",
      "protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15",
    );
  }

  vsctl(...args: string[]): Promise<RunResult> {
    return run(["ovs-vsctl", `--db=${this.dbRemote}`, "--timeout=30", ...args], { env: this.env });
  }
  ofctl(...args: string[]): Promise<RunResult> {
    return run(["ovs-ofctl", "-O", "OpenFlow13", ...args], { env: this.env });
  }
  appctl(daemon: "ovsdb-server" | "ovs-vswitchd", ...args: string[]): Promise<RunResult> {
    return run(["ovs-appctl", "-t", join(this.dir, `${daemon}.ctl`), ...args], { env: this.env });
  }

  /** `ovs-ofctl dump-flows` lines, without the reply header, stats fields stripped. */
  async dumpFlows(bridge = "br-int", extra: string[] = []): Promise<string[]> {
    const { stdout } = await this.ofctl("--no-stats", "dump-flows", this.mgmtRemote(bridge), ...extra);
    return stdout
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith("OFPST_FLOW") && !l.startsWith("OFPIT_"));
  }

  async ofport(iface: string): Promise<number> {
    const { stdout } = await this.vsctl("get", "Interface", iface, "ofport");
    return Number.parseInt(stdout.trim(), 10);
  }

  /** A dummy port (dummy datapath) with a fixed OpenFlow port number. */
  async addDummyPort(name: string, ofport: number, bridge = "br-int"): Promise<void> {
    await this.vsctl(
      "add-port",
      bridge,
      name,
      "--",
      "set",
      "interface",
      name,
      "type=dummy",
      `ofport_request=${ofport}`,
    );
  }

  /**
   * A "VM": its own namespace whose eth0 is a veth peer of a port on `bridge`,
   * bound with external_ids:iface-id (the Nova/os-vif/OVN convention).
   */
  async addVm(
    name: string,
    opts: {
      ifaceId?: string;
      mac?: string;
      ipCidr?: string;
      gateway?: string;
      ofport?: number;
      bridge?: string;
    } = {},
  ): Promise<VmPort> {
    if (this.datapath !== "netdev") throw new FlowdrakeError("USAGE", "VMs need the netdev datapath");
    const vmNs = await createNetns(name.slice(0, 6), this.cleanup);
    const port = `t${name}`.slice(0, 15);
    await createVeth({ name: port, netns: this.netns }, { name: "eth0", netns: vmNs });
    if (opts.mac) await run(["ip", "link", "set", "eth0", "address", opts.mac], { netns: vmNs });
    // The userspace datapath does not fill in checksums a veth leaves to "hardware": a VM
    // computes its own TCP/UDP checksums, as one behind a real NIC would.
    await run(["ethtool", "-K", "eth0", "tx", "off"], { netns: vmNs });
    if (opts.ipCidr) await run(["ip", "addr", "add", opts.ipCidr, "dev", "eth0"], { netns: vmNs });
    if (opts.gateway) await run(["ip", "route", "add", "default", "via", opts.gateway], { netns: vmNs });
    const ifaceId = opts.ifaceId ?? name;
    const set = ["--", "set", "interface", port, `external_ids:iface-id=${ifaceId}`];
    if (opts.ofport) set.push(`ofport_request=${opts.ofport}`);
    await this.vsctl("add-port", opts.bridge ?? "br-int", port, ...set);
    const mac = (await run(["cat", "/sys/class/net/eth0/address"], { netns: vmNs })).stdout.trim();
    return { netns: vmNs, port, ifname: "eth0", mac, ofport: await this.ofport(port), ifaceId };
  }

  async stop(): Promise<void> {
    await this.cleanup.run();
  }
}

function sslArgs(f: SslFiles): string[] {
  return [`--private-key=${f.privateKey}`, `--certificate=${f.certificate}`, `--ca-cert=${f.caCert}`];
}

export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}
