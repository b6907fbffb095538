/**
 * Capability discovery: what network devices this host has and what their
 * embedded switches could offload. It reads sysfs the way the kernel lays it
 * out for switchdev NICs:
 *
 *   /sys/class/net/<dev>            → /sys/devices/<pci path>/net/<dev>
 *       phys_switch_id              same id on the uplink and every representor of one eswitch
 *       phys_port_name              "p0" uplink · "pf0vf3" VF representor · "pf0" PF representor
 *                                   · "c1pf0vf3" host-side representor on a DPU
 *       device → <pci dir>          vendor, device, sriov_totalvfs, sriov_numvfs, physfn (VFs),
 *                                   driver → …/drivers/<name>
 *   /sys/module/<driver>/version    driver version, where the module has one
 *   /proc/modules, /lib/modules/<release>/modules.{builtin,dep}   tc support in the kernel
 *
 * and asks netlink (devlink: eswitch mode, inline/encap modes, firmware
 * versions; ethtool: the hw-tc-offload feature) through the source's probe.
 */
import { basename, dirname, posix } from "node:path";
import { type TcModule, tcModules } from "../profiles/vocabulary.js";
import type { HostSource, NetlinkAnswers, OvsOffloadSettings } from "./source.js";

export type DeviceRole =
  "uplink" | "pf" | "vf" | "vf-representor" | "pf-representor" | "sf-representor" | "virtual";

export interface NetDevice {
  name: string;
  ifindex?: number;
  mac?: string;
  operstate?: string;
  role: DeviceRole;
  driver?: string;
  driverVersion?: string;
  firmwareVersion?: string;
  pciAddress?: string;
  /** The PF's PCI address: itself for a PF/uplink, physfn for a VF, the owning PF for a representor. */
  pfAddress?: string;
  pciVendor?: string;
  pciDevice?: string;
  physSwitchId?: string;
  physPortName?: string;
  sriov?: { total: number; configured: number };
  devlinkHandle?: string;
  eswitch?: NetlinkAnswers["devlink"][string]["eswitch"];
  hwTcOffload?: "on" | "off" | "off [fixed]";
}

export type ModuleState = "loaded" | "builtin" | "available" | "missing";

export interface HostDiscovery {
  source: string;
  kernelRelease?: string;
  tcModules: Record<TcModule, ModuleState>;
  devices: NetDevice[];
  netlinkNotes: string[];
  ovs?: OvsOffloadSettings;
}

const pciAddressRe = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i;

function resolveLink(fs: HostSource["fs"], path: string): string | undefined {
  const target = fs.readLink(path);
  return target === undefined ? undefined : posix.resolve(dirname(path), target);
}

function text(fs: HostSource["fs"], path: string): string | undefined {
  const v = fs.readText(path)?.trim();
  return v === undefined || v === "" ? undefined : v;
}

function roleFromPortName(portName: string | undefined): DeviceRole | undefined {
  if (!portName) return undefined;
  if (/^p\d+$/.test(portName)) return "uplink";
  if (/^c\d+pf\d+(vf|sf)\d+$/.test(portName) || /^pf\d+sf\d+$/.test(portName)) return "sf-representor";
  if (/^pf\d+vf\d+$/.test(portName)) return "vf-representor";
  if (/^pf\d+$/.test(portName)) return "pf-representor";
  return undefined;
}

function readDevice(source: HostSource, name: string): NetDevice | undefined {
  const fs = source.fs;
  const devDir = resolveLink(fs, `/sys/class/net/${name}`) ?? `/sys/class/net/${name}`;
  if (name === "lo") return undefined;
  const dev: NetDevice = { name, role: "virtual" };
  const ifindex = text(fs, `${devDir}/ifindex`);
  if (ifindex) dev.ifindex = Number.parseInt(ifindex, 10);
  dev.mac = text(fs, `${devDir}/address`);
  dev.operstate = text(fs, `${devDir}/operstate`);
  dev.physSwitchId = text(fs, `${devDir}/phys_switch_id`);
  dev.physPortName = text(fs, `${devDir}/phys_port_name`);

  const busDir = resolveLink(fs, `${devDir}/device`);
  if (busDir) {
    const driverDir = resolveLink(fs, `${busDir}/driver`);
    if (driverDir) dev.driver = basename(driverDir);
    dev.pciVendor = text(fs, `${busDir}/vendor`)?.replace(/^0x/, "");
    dev.pciDevice = text(fs, `${busDir}/device`)?.replace(/^0x/, "");
    const own = basename(busDir);
    // virtio devices hang below their PCI function: …/0000:00:03.0/virtio0
    const parent = basename(dirname(busDir));
    const pciAddr = pciAddressRe.test(own) ? own : pciAddressRe.test(parent) ? parent : undefined;
    dev.pciAddress = pciAddr;
    const physfn = resolveLink(fs, `${busDir}/physfn`);
    const total = text(fs, `${busDir}/sriov_totalvfs`);
    if (total !== undefined) {
      dev.sriov = { total: Number(total), configured: Number(text(fs, `${busDir}/sriov_numvfs`) ?? 0) };
    }
    const portRole = roleFromPortName(dev.physPortName);
    if (portRole) {
      dev.role = portRole;
      dev.pfAddress = pciAddr;
    } else if (physfn) {
      dev.role = "vf";
      dev.pfAddress = basename(physfn);
    } else if (pciAddr) {
      dev.role = "pf";
      dev.pfAddress = pciAddr;
    }
    if (dev.driver) dev.driverVersion = text(fs, `/sys/module/${dev.driver}/version`);
  } else {
    const kind = text(fs, `${devDir}/uevent`)
      ?.split("\n")
      .find((l) => l.startsWith("DEVTYPE="))
      ?.slice(8);
    if (kind) dev.driver = kind;
  }
  if (dev.pfAddress && (dev.role === "pf" || dev.role === "uplink"))
    dev.devlinkHandle = `pci/${dev.pfAddress}`;
  return dev;
}

function moduleStates(source: HostSource, release: string | undefined): Record<TcModule, ModuleState> {
  const fs = source.fs;
  const loaded = new Set((fs.readText("/proc/modules") ?? "").split("\n").map((l) => l.split(" ")[0]));
  const builtin = release ? (fs.readText(`/lib/modules/${release}/modules.builtin`) ?? "") : "";
  const dep = release ? (fs.readText(`/lib/modules/${release}/modules.dep`) ?? "") : "";
  const out = {} as Record<TcModule, ModuleState>;
  for (const m of Object.keys(tcModules) as TcModule[]) {
    const file = new RegExp(`/${m}\\.ko(\\.[a-z]+)?(:|$)`, "m");
    if (loaded.has(m)) out[m] = "loaded";
    else if (file.test(builtin)) out[m] = "builtin";
    else if (file.test(dep)) out[m] = "available";
    else out[m] = "missing";
  }
  return out;
}

export async function discover(source: HostSource): Promise<HostDiscovery> {
  const release = text(source.fs, "/proc/sys/kernel/osrelease");
  const devices = source.fs
    .list("/sys/class/net")
    .map((n) => readDevice(source, n))
    .filter((d): d is NetDevice => d !== undefined);
  const answers = await source.netlink(
    devices.map((d) => ({ ifname: d.name, devlinkHandle: d.devlinkHandle })),
  );
  for (const d of devices) {
    const dl = d.devlinkHandle ? answers.devlink[d.devlinkHandle] : undefined;
    if (dl) {
      d.eswitch = dl.eswitch;
      d.firmwareVersion = dl.versions?.["fw.version"] ?? dl.versions?.fw;
      d.driver ??= dl.driver;
    }
    const feat = answers.ethtool[d.name]?.features?.["hw-tc-offload"];
    if (feat) d.hwTcOffload = feat.active ? "on" : feat.fixed ? "off [fixed]" : "off";
  }
  // Representors share the uplink's eswitch; give them the PF's devlink view.
  for (const d of devices) {
    if (d.role.endsWith("representor") && d.physSwitchId) {
      const uplink = devices.find((u) => u.role === "uplink" && u.physSwitchId === d.physSwitchId);
      if (uplink) {
        d.eswitch ??= uplink.eswitch;
        d.firmwareVersion ??= uplink.firmwareVersion;
        d.pfAddress ??= uplink.pfAddress;
      }
    }
  }
  return {
    source: `${source.kind}: ${source.where}`,
    kernelRelease: release,
    tcModules: moduleStates(source, release),
    devices,
    netlinkNotes: answers.notes,
    ovs: await source.ovs(),
  };
}
