/**
 * Simulated hosts joined by an underlay: the multi-host lab in which VMs on
 * different "compute nodes" reach each other over real Geneve and VXLAN
 * tunnels between separate Open vSwitch instances, all on one machine.
 *
 *            underlay namespace (Linux bridge "ulbr", MTU 1600)
 *        ┌──────────┬──────────────┬──────────────┐
 *       ulh1       ulh2           ulh3          (veth, underlay side)
 *        │          │              │
 *   ┌────┴─────┐ ┌──┴───────┐ ┌────┴─────┐
 *   │ ul0      │ │ ul0      │ │ ul0      │     (veth, host side, a br-phy port)
 *   │ br-phy   │ │ br-phy   │ │ br-phy   │     tunnel IP .1 .2 .3 of the CIDR
 *   │ br-int   │ │ br-int   │ │ br-int   │     VMs, tunnel ports (the agent's)
 *   └──────────┘ └──────────┘ └──────────┘
 *      host1        host2        host3         each: own netns, ovsdb-server,
 *                                              ovs-vswitchd (netdev datapath)
 *
 * Userspace ("netdev") tunnelling has no kernel vport to lean on: ovs-vswitchd
 * builds the outer headers itself (a tnl_push datapath action) and so needs a
 * route, a source address and the next hop's MAC for every remote endpoint, and
 * it recognises incoming tunnel traffic only when a packet is about to be
 * delivered to the LOCAL port of a bridge that owns the destination IP
 * (tnl_pop). Hence the split below.
 *
 * What the harness does per host (the "host admin" part, once, before any
 * agent runs):
 *   ovs-vsctl add-br br-phy -- set bridge br-phy datapath_type=netdev \
 *       fail-mode=secure other_config:hwaddr=<02:fd:+tunnel IP bytes>
 *   ovs-vsctl add-port br-phy ul0                    (the underlay veth)
 *   ovs-ofctl add-flow br-phy priority=0,actions=NORMAL
 *   ip addr add <tunnelIp>/<plen> dev br-phy; ip link set br-phy up  (in the host netns)
 *   ovs-appctl ovs/route/add <cidr> br-phy           (vswitchd runs with
 *       --disable-system-route, so it learns no kernel route; the source IP is
 *       taken from br-phy's address, which must exist before this call)
 *   ovs-appctl tnl/arp/set br-phy <peerIp> <peerMac> (every peer; NORMAL on
 *       br-phy would also let OVS resolve them itself by ARP and snooping)
 * Route and neighbour entries live only in ovs-vswitchd's memory: after a
 * vswitchd restart call `host.restartVswitchd()` (or `host.program()`), which
 * puts them back.
 *
 * What the agent does itself (on br-int, nothing on br-phy):
 *   ovs-vsctl add-port br-int fd-geneve -- set interface fd-geneve type=geneve \
 *       options:remote_ip=flow options:key=flow [ofport_request=N]
 *   ovs-vsctl add-port br-int fd-vxlan -- set interface fd-vxlan type=vxlan \
 *       options:remote_ip=flow options:key=flow [ofport_request=N]
 *   (the names src/controller/tunnel-ports.ts uses; one port per encap type
 *   serves every remote chassis, so the agent's tunnelOptions can stay empty:
 *   options:local_ip is not needed: the source is the route's, i.e. the
 *   tunnel IP on br-phy; the UDP ports are the IANA ones, 6081 and 4789,
 *   unless options:dst_port is set)
 *   egress:  actions=set_field:<vni>->tun_id,set_field:<remote tunnel IP>->tun_dst,output:<tunnel ofport>
 *            (NXM_NX_TUN_ID / NXM_NX_TUN_IPV4_DST; `load:` works as well)
 *   ingress: in_port=<tunnel ofport>,tun_id=<vni> → local delivery
 *            (tun_src says which chassis sent it)
 * If the agent creates br-int itself (start the underlay with `bridges: []`),
 * it must set datapath_type=netdev on it: these hosts have no kernel datapath,
 * and a tunnel port only reaches br-phy when both bridges share the one
 * userspace datapath (netdev@ovs-netdev). The agent needs no netns: it talks
 * to `host.sandbox.dbRemote` and `host.sandbox.mgmtRemote("br-int")`.
 * The VNI is 24 bits on both encaps. Mind the MTU: Geneve adds 50 bytes (plus
 * options) and VXLAN 50; the underlay here is 1600 so VMs may keep 1500.
 *
 * Everything is named through the sandbox helpers (run dirs, `fd<pid>x<n>-…`
 * namespaces), so `sweepStale()` removes the leftovers of a crashed run, and
 * `stop()` tears down all of it, also after a failed start.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseEthernet, readPcap, type Frame } from "../packet/index.js";
import { ipv4ToU32, u32ToIpv4 } from "../packet/addr.js";
import { ByteReader } from "../util/bytes.js";
import { DecodeError, FlowdrakeError } from "../util/errors.js";
import { run, start } from "../util/exec.js";
import { logger } from "../util/log.js";
import { createNetns, createVeth } from "./netns.js";
import { OvsSandbox, type OvsSandboxOptions, type VmPort } from "./ovs.js";
import { Cleanup, makeRunDir } from "./rundir.js";

const log = logger("multihost");

/** Tunnel encapsulations over UDP: IANA destination ports (RFC 8926 §3.3, RFC 7348 §5). */
export const TUNNEL_ENCAPS = {
  geneve: { udpPort: 6081, ovsType: "geneve" },
  vxlan: { udpPort: 4789, ovsType: "vxlan" },
} as const;
export type TunnelEncap = keyof typeof TUNNEL_ENCAPS;

export const UNDERLAY_BRIDGE = "ulbr";
export const UPLINK = "ul0";
export const PHYS_BRIDGE = "br-phy";

export interface UnderlayOptions {
  /** Host names (also labels of their namespaces and run dirs). */
  hosts: string[];
  /** Underlay IPv4 network; host i gets the (i+1)-th address (default 192.168.77.0/24). */
  cidr?: string;
  /** MTU of the underlay links and br-phy (default 1600, room for 1500-byte VM frames). */
  mtu?: number;
  /** Bridges other than br-phy to create on every host (default ["br-int"]). */
  bridges?: string[];
  /** Passed to every host's OvsSandbox. */
  otherConfig?: OvsSandboxOptions["otherConfig"];
  /** Pre-load OVS's tunnel neighbour table with every peer (default true). */
  staticNeighbors?: boolean;
}

export interface TunnelPortOptions {
  /** "flow" (default) or a fixed remote IP. */
  remoteIp?: string;
  /** "flow" (default) or a fixed VNI. */
  key?: string | number;
  ofport?: number;
  bridge?: string;
}

/** One simulated compute node. */
export class SimHost {
  constructor(
    readonly underlay: Underlay,
    readonly name: string,
    readonly index: number,
    readonly sandbox: OvsSandbox,
    readonly tunnelIp: string,
    readonly tunnelMac: string,
    readonly prefixLen: number,
    /** The underlay-side veth of this host's uplink (in the underlay namespace). */
    readonly underlayPort: string,
  ) {}

  /** The host's network namespace (where ovs-vswitchd, br-phy and ul0 live). */
  get netns(): string {
    return this.sandbox.netns!;
  }

  addVm(name: string, opts: Parameters<OvsSandbox["addVm"]>[1] = {}): Promise<VmPort> {
    return this.sandbox.addVm(name, opts);
  }

  /** A flow-based (by default) tunnel port on br-int; returns its ofport. */
  async addTunnelPort(name: string, encap: TunnelEncap, opts: TunnelPortOptions = {}): Promise<number> {
    const set = [
      `type=${TUNNEL_ENCAPS[encap].ovsType}`,
      `options:remote_ip=${opts.remoteIp ?? "flow"}`,
      `options:key=${opts.key ?? "flow"}`,
    ];
    if (opts.ofport) set.push(`ofport_request=${opts.ofport}`);
    await this.sandbox.vsctl(
      "add-port",
      opts.bridge ?? "br-int",
      name,
      "--",
      "set",
      "interface",
      name,
      ...set,
    );
    return this.sandbox.ofport(name);
  }

  /**
   * Put the underlay state vswitchd keeps in memory (tunnel route, neighbour
   * entries), br-phy's NORMAL flow and its kernel address in place; idempotent.
   */
  async program(): Promise<void> {
    const ns = this.netns;
    await this.sandbox.ofctl("add-flow", this.sandbox.mgmtRemote(PHYS_BRIDGE), "priority=0,actions=NORMAL");
    await run(["ip", "link", "set", PHYS_BRIDGE, "mtu", String(this.underlay.mtu), "up"], { netns: ns });
    await run(["ip", "addr", "replace", `${this.tunnelIp}/${this.prefixLen}`, "dev", PHYS_BRIDGE], {
      netns: ns,
    });
    // vswitchd reads br-phy's addresses asynchronously; the route insert fails until it has.
    await retry(`ovs/route/add on ${this.name}`, async () => {
      const shown = (await this.sandbox.appctl("ovs-vswitchd", "ovs/route/show")).stdout;
      if (shown.includes(`${this.underlay.network}/${this.prefixLen} dev ${PHYS_BRIDGE}`)) return;
      await this.sandbox.appctl(
        "ovs-vswitchd",
        "ovs/route/add",
        `${this.underlay.network}/${this.prefixLen}`,
        PHYS_BRIDGE,
      );
    });
    if (!this.underlay.staticNeighbors) return;
    for (const peer of this.underlay.hosts) {
      if (peer === this) continue;
      await this.sandbox.appctl("ovs-vswitchd", "tnl/arp/set", PHYS_BRIDGE, peer.tunnelIp, peer.tunnelMac);
    }
  }

  /** Restart ovs-vswitchd (flows are lost) and re-program the underlay state. */
  async restartVswitchd(): Promise<void> {
    await this.sandbox.restartVswitchd();
    await this.program();
  }

  /** `ovs-appctl ovs/route/show` and `tnl/arp/show` text, for diagnostics. */
  async tunnelState(): Promise<{ routes: string; neighbors: string; ports: string }> {
    const app = (...a: string[]) => this.sandbox.appctl("ovs-vswitchd", ...a).then((r) => r.stdout);
    return {
      routes: await app("ovs/route/show"),
      neighbors: await app("tnl/arp/show"),
      ports: await app("tnl/ports/show"),
    };
  }
}

/** One UDP datagram seen entering the underlay, decoded as far as its tunnel header. */
export interface UnderlayPacket {
  /** The host whose uplink sent it. */
  from: string;
  srcIp: string;
  dstIp: string;
  srcPort: number;
  dstPort: number;
  /** Present when dstPort is a known tunnel port and the header decoded. */
  encap?: TunnelEncap;
  vni?: number;
  /** The inner Ethernet frame, decoded, when it parsed. */
  inner?: Frame;
}

export interface UnderlayCapture {
  /** Stop tcpdump and return what it saw (packets entering the underlay, in capture order). */
  stop(): Promise<UnderlayPacket[]>;
}

export class Underlay {
  readonly cleanup = new Cleanup();
  readonly hosts: SimHost[] = [];
  readonly mtu: number;
  readonly staticNeighbors: boolean;
  private nextIndex = 0;

  private constructor(
    /** The underlay namespace (holds the Linux bridge ulbr). */
    readonly netns: string,
    readonly dir: string,
    /** Network address and prefix length of the underlay CIDR. */
    readonly network: string,
    readonly prefixLen: number,
    private readonly base: number,
    private readonly options: UnderlayOptions,
  ) {
    this.mtu = options.mtu ?? 1600;
    this.staticNeighbors = options.staticNeighbors ?? true;
  }

  static async start(opts: UnderlayOptions): Promise<Underlay> {
    if (opts.hosts.length < 1) throw new FlowdrakeError("USAGE", "an underlay needs at least one host");
    if (new Set(opts.hosts).size !== opts.hosts.length) {
      throw new FlowdrakeError("USAGE", `duplicate host names: ${opts.hosts.join(", ")}`);
    }
    const { network, prefixLen, base } = parseCidr(opts.cidr ?? "192.168.77.0/24");
    if (opts.hosts.length > 2 ** (32 - prefixLen) - 2) {
      throw new FlowdrakeError("USAGE", `${opts.cidr} is too small for ${opts.hosts.length} hosts`);
    }
    const setup = new Cleanup();
    const dir = makeRunDir("underlay");
    setup.add("underlay run dir", () => run(["rm", "-rf", dir]).then(() => undefined));
    let ul: Underlay | undefined;
    try {
      const ns = await createNetns("under", setup);
      ul = new Underlay(ns, dir, network, prefixLen, base, opts);
      ul.cleanup.add("underlay namespace", () => setup.run());
      await run(["ip", "link", "add", UNDERLAY_BRIDGE, "type", "bridge"], { netns: ns });
      await run(["ip", "link", "set", UNDERLAY_BRIDGE, "mtu", String(ul.mtu), "up"], { netns: ns });
      for (const name of opts.hosts) ul.hosts.push(await ul.startHost(name));
      for (const h of ul.hosts) await h.program();
      log.info({ hosts: ul.hosts.map((h) => `${h.name}=${h.tunnelIp}`), netns: ns }, "underlay up");
      return ul;
    } catch (err) {
      if (ul) await ul.stop();
      else await setup.run();
      throw err;
    }
  }

  /**
   * Add a host to a running underlay (a chassis joining): it gets the next
   * free tunnel IP, and every host's neighbour table learns about it.
   */
  async addHost(name: string): Promise<SimHost> {
    if (this.hosts.some((h) => h.name === name)) {
      throw new FlowdrakeError("USAGE", `host ${name} already exists`, { name });
    }
    if (this.nextIndex + 1 > 2 ** (32 - this.prefixLen) - 2) {
      throw new FlowdrakeError("USAGE", "the underlay cidr has no free address left", { name });
    }
    const h = await this.startHost(name);
    this.hosts.push(h);
    for (const x of this.hosts) await x.program();
    return h;
  }

  private async startHost(name: string): Promise<SimHost> {
    const opts = this.options;
    const index = this.nextIndex++;
    const tunnelIp = u32ToIpv4(this.base + index + 1);
    const sandbox = await OvsSandbox.start({
      label: name,
      datapath: "netdev",
      bridges: [...(opts.bridges ?? ["br-int"]), PHYS_BRIDGE],
      ...(opts.otherConfig ? { otherConfig: opts.otherConfig } : {}),
    });
    this.cleanup.add(`host ${name}`, () => sandbox.stop());
    const mac = macFor(tunnelIp);
    const ulPort = `ulh${index + 1}`;
    try {
      await sandbox.vsctl("set", "bridge", PHYS_BRIDGE, `other_config:hwaddr="${mac}"`);
      await createVeth({ name: UPLINK, netns: sandbox.netns }, { name: ulPort, netns: this.netns });
      for (const [dev, ns] of [
        [UPLINK, sandbox.netns],
        [ulPort, this.netns],
      ] as const) {
        await run(["ip", "link", "set", dev, "mtu", String(this.mtu)], { netns: ns });
      }
      await run(["ip", "link", "set", ulPort, "master", UNDERLAY_BRIDGE], { netns: this.netns });
      await sandbox.vsctl("add-port", PHYS_BRIDGE, UPLINK);
    } catch (err) {
      await sandbox.stop();
      throw err;
    }
    return new SimHost(this, name, index, sandbox, tunnelIp, mac, this.prefixLen, ulPort);
  }

  host(name: string): SimHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new FlowdrakeError("USAGE", `no host ${name} in this underlay`, { name });
    return h;
  }

  /** Take a host's underlay link down (its tunnels black-hole until `heal`). */
  async cut(host: string | SimHost): Promise<void> {
    const h = typeof host === "string" ? this.host(host) : host;
    await run(["ip", "link", "set", h.underlayPort, "down"], { netns: this.netns });
  }

  async heal(host: string | SimHost): Promise<void> {
    const h = typeof host === "string" ? this.host(host) : host;
    await run(["ip", "link", "set", h.underlayPort, "up"], { netns: this.netns });
  }

  /**
   * Capture the UDP traffic the hosts send into the underlay (one tcpdump per
   * host uplink, ingress only, so every datagram is seen once).
   */
  async capture(hosts: (string | SimHost)[] = this.hosts): Promise<UnderlayCapture> {
    const targets = hosts.map((h) => (typeof h === "string" ? this.host(h) : h));
    const stamp = Date.now();
    const procs = targets.map((h) => {
      const pcap = join(this.dir, `${h.name}-${stamp}.pcap`);
      const argv = [
        "tcpdump",
        "-i",
        h.underlayPort,
        "-Q",
        "in",
        "--immediate-mode",
        "-U",
        "-nn",
        "-s",
        "512",
        "-w",
        pcap,
        "udp",
      ];
      const child = start(argv, { netns: this.netns });
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      this.cleanup.add(`tcpdump ${h.name}`, () => {
        child.kill("SIGKILL");
      });
      return { host: h, pcap, child, exited };
    });
    for (const p of procs) {
      await retry(
        `tcpdump on ${p.host.underlayPort} to open its pcap`,
        () => {
          if (p.child.exitCode !== null) {
            throw new FlowdrakeError("MISSING_COMPONENT", "tcpdump exited: run 'bash scripts/setup'");
          }
          if (!existsSync(p.pcap) || statSync(p.pcap).size < 24) throw new Error("not yet");
        },
        10_000,
      );
    }
    return {
      stop: async () => {
        const out: UnderlayPacket[] = [];
        await sleep(200);
        for (const p of procs) {
          p.child.kill("SIGINT");
          await Promise.race([p.exited, sleep(5000)]);
          const { records } = readPcap(readFileSync(p.pcap));
          for (const rec of records) {
            const pkt = decodeUnderlayFrame(rec.data, p.host.name);
            if (pkt) out.push(pkt);
          }
        }
        return out;
      },
    };
  }

  /** Stop every host (in parallel: each daemon takes a while to exit) and the underlay. */
  async stop(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.sandbox.stop()));
    await this.cleanup.run();
  }
}

/**
 * Decode an outer Ethernet/IPv4/UDP frame and, on the Geneve or VXLAN port,
 * the tunnel header (both carry the 24-bit VNI in bytes 4..6 of an 8-byte
 * header; Geneve options follow) and inner frame. Not UDP over IPv4: undefined. Malformed:
 * DecodeError.
 */
export function decodeUnderlayFrame(buf: Buffer, from: string): UnderlayPacket | undefined {
  const outer = parseEthernet(buf, { dhcp: false });
  if (!outer.ipv4 || !outer.udp) return undefined;
  const pkt: UnderlayPacket = {
    from,
    srcIp: outer.ipv4.src,
    dstIp: outer.ipv4.dst,
    srcPort: outer.udp.srcPort,
    dstPort: outer.udp.dstPort,
  };
  const encap = (Object.keys(TUNNEL_ENCAPS) as TunnelEncap[]).find(
    (e) => TUNNEL_ENCAPS[e].udpPort === pkt.dstPort,
  );
  if (!encap) return pkt;
  const r = new ByteReader(outer.payload, 0, outer.payload.length, encap);
  let optLen = 0;
  if (encap === "geneve") {
    const b0 = r.u8("ver/opt_len");
    if (b0 >> 6 !== 0) throw new DecodeError(`geneve: version ${b0 >> 6} is not 0`, { layer: "geneve" });
    optLen = (b0 & 0x3f) * 4;
    r.u8("flags");
    const proto = r.u16("protocol type");
    if (proto !== 0x6558) {
      throw new DecodeError(`geneve: protocol 0x${proto.toString(16)} is not Ethernet`, { layer: "geneve" });
    }
  } else {
    const flags = r.u8("flags");
    if (!(flags & 0x08)) throw new DecodeError("vxlan: I flag (VNI valid) not set", { layer: "vxlan" });
    r.skip(3, "reserved");
  }
  const vni = (r.u16("vni") << 8) | r.u8("vni");
  r.skip(1, "reserved");
  r.skip(optLen, "options");
  pkt.encap = encap;
  pkt.vni = vni;
  pkt.inner = parseEthernet(Buffer.from(r.rest()), { dhcp: false });
  return pkt;
}

function parseCidr(cidr: string): { network: string; prefixLen: number; base: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  const plen = m ? Number(m[2]) : -1;
  if (!m || plen < 8 || plen > 30) {
    throw new FlowdrakeError("USAGE", `underlay cidr must be IPv4 a.b.c.d/8..30, got ${cidr}`, { cidr });
  }
  const mask = plen === 0 ? 0 : (0xffffffff << (32 - plen)) >>> 0;
  const base = (ipv4ToU32(m[1]!) & mask) >>> 0;
  return { network: u32ToIpv4(base), prefixLen: plen, base };
}

/** A locally administered MAC carrying the tunnel IP: 02:fd:a:b:c:d. */
function macFor(ip: string): string {
  const hex = ip.split(".").map((o) => Number(o).toString(16).padStart(2, "0"));
  return ["02", "fd", ...hex].join(":");
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function retry(what: string, fn: () => unknown, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await fn();
      return;
    } catch (err) {
      if (err instanceof FlowdrakeError && err.code === "MISSING_COMPONENT") throw err;
      if (Date.now() > deadline) {
        throw new FlowdrakeError("TIMEOUT", `${what}: gave up after ${timeoutMs} ms: ${String(err)}`, {
          what,
        });
      }
      await sleep(100);
    }
  }
}
