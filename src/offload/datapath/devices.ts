/**
 * Which OpenFlow ports of br-int the NIC sees, and as which netdev: the
 * planner's PortMap, and the NIC profile it plans for.
 *
 * On a switchdev host a VM's port on br-int is its VF representor: the
 * Interface row's name is the representor netdev, and sysfs says what it
 * is — /sys/class/net/<dev>/phys_switch_id names the embedded switch it
 * belongs to (the uplink and every representor of one eswitch share it) and
 * phys_port_name its role ("pf0vf3" a VF representor, "p0" the uplink);
 * capability discovery (src/offload/caps) reads both. So:
 *
 *   Interface type "" / system, ofport N, name D:
 *       D has a phys_switch_id, role representor  → an eswitch port: N → D
 *       D matches offload.ports (a glob)          → an eswitch port: N → D
 *                                                   (veth "representors" in
 *                                                   the kernel lane)
 *       otherwise                                  → not on the NIC (a tap of
 *                                                   a virtio VM: its traffic
 *                                                   never passes the eswitch)
 *   Interface type geneve / vxlan, ofport N       → a tunnel: decapsulated
 *                                                   packets arrive on
 *                                                   genev_sys_6081 /
 *                                                   vxlan_sys_4789
 *
 * Provider networks leave br-int through a patch port to the physical
 * bridge; what that bridge does with a packet (NORMAL switching, the host's
 * own address) is not br-int's pipeline, so patch ports stay out of the map
 * and provider traffic stays in OVS — unless the operator names the bridge's
 * uplink (`offload.uplinks: {br-ex: p0}`) and the bridge holds nothing but
 * the patch port, that uplink and its own (internal) ports:
 *
 *   Interface type patch, ofport N, to a bridge B with offload.uplinks[B] = U
 *       B's ports: its patch port, U, internal ports → N → U, and N is
 *                                                   "bridged" with the MACs
 *                                                   of B's internal ports
 *                                                   (the planner's gates)
 *       anything else on B                         → not on the NIC
 *
 * That the operator names it says what flowdrake cannot see: that B switches
 * with NORMAL (no flows of its own) and that the NAT next hops are out there
 * behind U.
 *
 * The profile is the one named in the config (`offload.profile`), else that
 * of the NIC whose eswitch holds the ports (by the PCI ids of its uplink),
 * else that of the host's first uplink in switchdev mode (representors are
 * plugged into br-int when their VMs start, maybe after the agent), else
 * "none" — with the reason, which `caps` shows.
 */
import type { HostDiscovery, NetDevice } from "../caps/discover.js";
import type { Replica } from "../../ovsdb/replica.js";
import type { PortMap } from "../planner/ir.js";
import { type NicProfile, profileById, profileFor } from "../profiles/index.js";

export interface OvsInterface {
  name: string;
  type: string;
  ofport: number;
  /** mac_in_use, when OVS reports one. */
  mac?: string;
}

export type PortRole = "representor" | "configured" | "tunnel" | "bridge uplink" | "not on the NIC";

export interface MappedPort {
  ofport: number;
  name: string;
  role: PortRole;
  /** The netdev tc sees its packets on. */
  netdev?: string;
  /** The eswitch (phys_switch_id) of a representor. */
  switchId?: string;
  /** Why a port that could have been mapped is not (a patch port to a bridge named in offload.uplinks). */
  note?: string;
}

export interface DeviceMap {
  ports: PortMap;
  profile: NicProfile;
  /** Why this profile (configured, discovered from a NIC, or none found). */
  profileReason: string;
  /** The ports are (or will be) a real NIC's representors: filters skip software (skip_sw). */
  hardware: boolean;
  mapped: MappedPort[];
}

function uuids(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === "string");
  return typeof v === "string" ? [v] : [];
}

/** The interfaces of one bridge, from the agent's OVSDB replica (Bridge → Port → Interface). */
export function bridgeInterfaces(replica: Replica, bridge: string): OvsInterface[] {
  const br = replica.find("Bridge", (r) => r.name === bridge);
  if (!br) return [];
  const out: OvsInterface[] = [];
  for (const p of uuids(br.ports)) {
    const port = replica.get("Port", p);
    for (const i of uuids(port?.interfaces)) {
      const row = replica.get("Interface", i);
      if (!row) continue;
      out.push({
        name: String(row.name),
        type: typeof row.type === "string" ? row.type : "",
        ofport: typeof row.ofport === "number" ? row.ofport : -1,
        ...(typeof row.mac_in_use === "string" && row.mac_in_use ? { mac: row.mac_in_use } : {}),
      });
    }
  }
  return out.sort((a, b) => a.ofport - b.ofport);
}

/** fnmatch-style: `*` any run, `?` one character. */
export function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".")}$`,
  );
  return re.test(name);
}

const isRepresentor = (d: NetDevice): boolean => d.role.endsWith("representor") && !!d.physSwitchId;

export interface DeviceMapOptions {
  bridge: string;
  /** Netdev globs treated as eswitch ports (offload.ports). */
  patterns: readonly string[];
  /** A profile id to plan for (offload.profile). */
  profile?: string;
  /** br-int's patch ports to bridges named in offload.uplinks, by name: the bridge, its uplink, its interfaces. */
  bridges?: ReadonlyMap<string, { bridge: string; uplink: string; ifaces: readonly OvsInterface[] }>;
}

const macValue = (mac: string): bigint => BigInt(`0x${mac.replaceAll(":", "")}`);

/** The uplink a patch port stands for, with the bridge's own MACs, or why not. */
function bridgeUplink(
  b: { bridge: string; uplink: string; ifaces: readonly OvsInterface[] },
  patch: string,
): { uplink: string; own: bigint[] } | { note: string } {
  const others = b.ifaces.filter((i) => i.type !== "internal" && i.name !== b.uplink);
  const peer = others.filter((i) => i.type === "patch");
  if (!b.ifaces.some((i) => i.name === b.uplink && (i.type === "" || i.type === "system")))
    return { note: `${b.bridge} has no port ${b.uplink} (offload.uplinks)` };
  if (others.length !== 1 || peer.length !== 1)
    return {
      note: `${b.bridge} holds more than ${patch}'s peer, ${b.uplink} and its own ports (${others
        .map((i) => i.name)
        .join(", ")}): what it switches where is not known`,
    };
  const own = b.ifaces.filter((i) => i.type === "internal");
  if (own.some((i) => !i.mac)) return { note: `OVS reports no MAC for ${b.bridge}'s own port yet` };
  return { uplink: b.uplink, own: own.map((i) => macValue(i.mac!)) };
}

export function deviceMap(
  ifaces: readonly OvsInterface[],
  host: Pick<HostDiscovery, "devices"> | undefined,
  opts: DeviceMapOptions,
): DeviceMap {
  const byName = new Map((host?.devices ?? []).map((d) => [d.name, d]));
  const hardware = new Map<number, string>();
  const tunnels = new Map<number, "vxlan" | "geneve">();
  const bridged = new Map<number, readonly bigint[]>();
  const mapped: MappedPort[] = [];
  const switches = new Set<string>();
  for (const i of ifaces) {
    if (i.ofport <= 0 || i.name === opts.bridge) continue;
    if (i.type === "geneve" || i.type === "vxlan") {
      tunnels.set(i.ofport, i.type);
      const netdev = i.type === "geneve" ? "genev_sys_6081" : "vxlan_sys_4789";
      mapped.push({ ofport: i.ofport, name: i.name, role: "tunnel", netdev });
      continue;
    }
    const behind = i.type === "patch" ? opts.bridges?.get(i.name) : undefined;
    if (behind) {
      const u = bridgeUplink(behind, i.name);
      if ("note" in u) mapped.push({ ofport: i.ofport, name: i.name, role: "not on the NIC", note: u.note });
      else {
        hardware.set(i.ofport, u.uplink);
        bridged.set(i.ofport, u.own);
        mapped.push({ ofport: i.ofport, name: i.name, role: "bridge uplink", netdev: u.uplink });
      }
      continue;
    }
    if (i.type !== "" && i.type !== "system") continue;
    const dev = byName.get(i.name);
    if (dev && isRepresentor(dev)) {
      hardware.set(i.ofport, i.name);
      switches.add(dev.physSwitchId!);
      mapped.push({
        ofport: i.ofport,
        name: i.name,
        role: "representor",
        netdev: i.name,
        switchId: dev.physSwitchId,
      });
    } else if (opts.patterns.some((p) => globMatch(p, i.name))) {
      hardware.set(i.ofport, i.name);
      mapped.push({ ofport: i.ofport, name: i.name, role: "configured", netdev: i.name });
    } else mapped.push({ ofport: i.ofport, name: i.name, role: "not on the NIC" });
  }
  let profile: NicProfile;
  let profileReason: string;
  let onNic = false;
  if (opts.profile) {
    profile = profileById(opts.profile);
    profileReason = `configured (offload.profile: ${opts.profile})`;
  } else {
    const uplink = [...switches]
      .sort()
      .map((s) => host?.devices.find((d) => d.role === "uplink" && d.physSwitchId === s))
      .find((d) => d !== undefined);
    const switchdev = host?.devices
      .filter((d) => d.role === "uplink" && d.eswitch?.mode === "switchdev")
      .sort((a, b) => (a.name < b.name ? -1 : 1))[0];
    const pci = (d: NetDevice) => `PCI ${d.pciVendor ?? "?"}:${d.pciDevice ?? "?"}`;
    if (uplink) {
      profile = profileFor(uplink);
      profileReason = `discovered: the eswitch of ${uplink.name} (${pci(uplink)})`;
    } else if (!switches.size && switchdev) {
      profile = profileFor(switchdev);
      onNic = true;
      profileReason = `discovered: ${switchdev.name} (${pci(switchdev)}) is in switchdev mode; no representor is on ${opts.bridge} yet`;
    } else {
      profile = profileById("none");
      profileReason = switches.size
        ? "no uplink found for the representors' eswitch"
        : hardware.size
          ? "offload.ports names ports but no offload.profile is configured"
          : "no port of the bridge is an eswitch representor";
    }
  }
  return {
    ports: bridged.size ? { hardware, tunnels, bridged } : { hardware, tunnels },
    profile,
    profileReason,
    hardware: switches.size > 0 || onNic,
    mapped,
  };
}

/** Whether two port maps say the same. */
export function samePortMap(a: PortMap, b: PortMap): boolean {
  const same = <V>(x: Map<number, V>, y: Map<number, V>) =>
    x.size === y.size && [...x].every(([k, v]) => y.get(k) === v);
  const own = (x: readonly bigint[], y: readonly bigint[] | undefined) =>
    y !== undefined && x.length === y.length && x.every((m, i) => y[i] === m);
  const bridged = (x: PortMap, y: PortMap) =>
    (x.bridged?.size ?? 0) === (y.bridged?.size ?? 0) &&
    [...(x.bridged ?? [])].every(([k, v]) => own(v, y.bridged?.get(k)));
  return same(a.hardware, b.hardware) && same(a.tunnels, b.tunnels) && bridged(a, b);
}
