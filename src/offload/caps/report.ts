/**
 * The `flowdrake caps` report: per NIC (one PCI physical function with its
 * uplink, representors and VFs) whether its embedded switch can take flows
 * now, and if not, what an operator must change — each step with the command
 * that does it. The same structure is printed as text or as JSON.
 */
import { type NicProfile, profileFor } from "../profiles/index.js";
import { type TcModule, tcModules } from "../profiles/vocabulary.js";
import type { HostDiscovery, NetDevice } from "./discover.js";

export type NicStatus = "ready" | "needs-changes" | "not-capable";

export interface Remedy {
  what: string;
  command?: string;
  why: string;
}

export interface NicReport {
  id: string;
  status: NicStatus;
  profile: { id: string; name: string };
  driver?: string;
  driverVersion?: string;
  firmwareVersion?: string;
  pci?: { address?: string; vendor?: string; device?: string };
  eswitch?: NetDevice["eswitch"];
  sriov?: NetDevice["sriov"];
  uplink?: PortSummary;
  representors: PortSummary[];
  vfs: PortSummary[];
  offloads: Pick<NicProfile, "matches" | "actions" | "tunnels" | "conntrack" | "geneveOptions">;
  remedies: Remedy[];
  notes: string[];
}

export interface PortSummary {
  name: string;
  role: NetDevice["role"];
  portName?: string;
  hwTcOffload?: NetDevice["hwTcOffload"];
}

export interface CapsReport {
  source: string;
  kernelRelease?: string;
  tcModules: HostDiscovery["tcModules"];
  ovs?: HostDiscovery["ovs"];
  nics: NicReport[];
  netlinkNotes: string[];
}

const summary = (d: NetDevice): PortSummary => ({
  name: d.name,
  role: d.role,
  portName: d.physPortName,
  hwTcOffload: d.hwTcOffload,
});

/** Group devices into NICs: PF/uplink first, then its representors (same switch id) and VFs (physfn). */
function groups(devices: NetDevice[]): { head: NetDevice; members: NetDevice[] }[] {
  const heads = devices.filter((d) => d.role === "uplink" || d.role === "pf");
  const out: { head: NetDevice; members: NetDevice[] }[] = [];
  const seen = new Set<string>();
  for (const head of heads) {
    const key = head.pfAddress ?? head.name;
    const existing = out.find((g) => (g.head.pfAddress ?? g.head.name) === key);
    if (existing) {
      // A switchdev PF shows both its uplink representor and (on some kernels) a plain netdev: prefer the uplink.
      if (head.role === "uplink" && existing.head.role !== "uplink") {
        existing.members.push(existing.head);
        existing.head = head;
      } else existing.members.push(head);
      seen.add(head.name);
      continue;
    }
    out.push({ head, members: [] });
    seen.add(head.name);
  }
  for (const d of devices) {
    if (seen.has(d.name)) continue;
    const g = out.find(
      (x) =>
        (d.physSwitchId && x.head.physSwitchId === d.physSwitchId) ||
        (d.pfAddress && x.head.pfAddress === d.pfAddress),
    );
    if (g) g.members.push(d);
  }
  return out;
}

function nicReport(head: NetDevice, members: NetDevice[], disc: HostDiscovery): NicReport {
  const profile = profileFor(head);
  const reps = members.filter((m) => m.role.endsWith("representor"));
  const vfs = members.filter((m) => m.role === "vf");
  const remedies: Remedy[] = [];
  const notes = [...profile.notes];
  const handle = head.devlinkHandle ?? (head.pfAddress ? `pci/${head.pfAddress}` : undefined);

  let status: NicStatus = "ready";
  if (!profile.switchdev) {
    status = "not-capable";
    notes.unshift(
      `driver ${head.driver ?? "unknown"}${head.pciVendor ? ` (PCI ${head.pciVendor}:${head.pciDevice})` : ""} has no embedded switch: flows stay in OVS`,
    );
  } else {
    if (!head.eswitch) {
      notes.push(`eswitch mode unknown: devlink gave no answer for ${handle ?? head.name}`);
      remedies.push({
        what: "check the eswitch mode",
        command: handle ? `devlink dev eswitch show ${handle}` : undefined,
        why: "offload needs switchdev mode and it could not be read",
      });
    } else if (head.eswitch.mode !== "switchdev") {
      remedies.push({
        what: "switch the eswitch to switchdev",
        command: handle ? `devlink dev eswitch set ${handle} mode switchdev` : undefined,
        why: `eswitch is in ${head.eswitch.mode} mode: no representors, tc rules cannot reach the hardware`,
      });
    }
    if (head.eswitch?.mode === "switchdev" && profile.tunnels.length && head.eswitch.encapMode === "none") {
      remedies.push({
        what: "enable tunnel encapsulation offload",
        command: handle ? `devlink dev eswitch set ${handle} encap-mode basic` : undefined,
        why: "encap-mode none: VXLAN/Geneve encap and decap rules stay in software",
      });
    }
    if (head.sriov && head.sriov.total > 0 && head.sriov.configured === 0) {
      remedies.push({
        what: "create VFs for the VMs",
        command: `echo ${Math.min(head.sriov.total, 8)} > /sys/class/net/${head.name}/device/sriov_numvfs`,
        why: `SR-IOV capable (${head.sriov.total} VFs) but none configured`,
      });
    }
    for (const port of [head, ...reps]) {
      if (port.hwTcOffload === "off") {
        remedies.push({
          what: `enable hw-tc-offload on ${port.name}`,
          command: `ethtool -K ${port.name} hw-tc-offload on`,
          why: "tc rules on this port are kept in software while the feature is off",
        });
      } else if (port.hwTcOffload === "off [fixed]") {
        notes.push(`${port.name}: hw-tc-offload is off and fixed by the driver`);
      }
    }
    if (head.hwTcOffload === undefined)
      notes.push(`hw-tc-offload state of ${head.name} unknown (ethtool not read)`);
    if (head.hwTcOffload === "off [fixed]") status = "not-capable";
  }

  const kernelGaps = (Object.keys(tcModules) as TcModule[]).filter((m) => disc.tcModules[m] === "missing");
  if (profile.switchdev && kernelGaps.length) {
    remedies.push({
      what: `use a kernel with ${kernelGaps.join(", ")}`,
      why: `the running kernel has no ${kernelGaps.map((m) => `${m} (${tcModules[m]})`).join(", ")}`,
    });
  }
  if (profile.switchdev && disc.ovs && disc.ovs.hwOffload !== "true") {
    remedies.push({
      what: "turn on OVS hardware offload",
      command:
        "ovs-vsctl set Open_vSwitch . other_config:hw-offload=true && systemctl restart openvswitch-switch",
      why: `other_config:hw-offload is ${disc.ovs.hwOffload ?? "unset"}; ovs-vswitchd reads it only at start, so restart it`,
    });
  }
  if (status === "ready" && remedies.length) status = "needs-changes";

  return {
    id: head.pfAddress ?? head.name,
    status,
    profile: { id: profile.id, name: profile.name },
    driver: head.driver,
    driverVersion: head.driverVersion,
    firmwareVersion: head.firmwareVersion,
    pci: head.pciVendor
      ? { address: head.pfAddress, vendor: head.pciVendor, device: head.pciDevice }
      : undefined,
    eswitch: head.eswitch,
    sriov: head.sriov,
    uplink: summary(head),
    representors: reps.map(summary),
    vfs: vfs.map(summary),
    offloads: {
      matches: profile.matches,
      actions: profile.actions,
      tunnels: profile.tunnels,
      conntrack: profile.conntrack,
      geneveOptions: profile.geneveOptions,
    },
    remedies,
    notes,
  };
}

export function buildReport(disc: HostDiscovery): CapsReport {
  return {
    source: disc.source,
    kernelRelease: disc.kernelRelease,
    tcModules: disc.tcModules,
    ovs: disc.ovs,
    nics: groups(disc.devices).map((g) => nicReport(g.head, g.members, disc)),
    netlinkNotes: disc.netlinkNotes,
  };
}

const statusText: Record<NicStatus, string> = {
  ready: "can offload now",
  "needs-changes": "can offload after the changes below",
  "not-capable": "cannot offload",
};

export function formatReport(r: CapsReport): string {
  const lines: string[] = [];
  lines.push(`source: ${r.source}${r.kernelRelease ? `, kernel ${r.kernelRelease}` : ""}`);
  lines.push(
    `kernel tc: ${Object.entries(r.tcModules)
      .map(([m, s]) => `${m} ${s}`)
      .join(" · ")}`,
  );
  if (r.ovs) {
    lines.push(
      `OVS: hw-offload=${r.ovs.hwOffload ?? "unset"} tc-policy=${r.ovs.tcPolicy ?? "unset"} max-idle=${r.ovs.maxIdle ?? "unset"} n-offload-threads=${r.ovs.nOffloadThreads ?? "unset"} (${r.ovs.source})`,
    );
  } else lines.push("OVS: offload settings not read (no OVSDB reachable)");
  if (!r.nics.length) lines.push("", "no PCI network devices found");
  for (const n of r.nics) {
    lines.push("");
    lines.push(`NIC ${n.id}  ${n.profile.name}  — ${statusText[n.status]}`);
    const facts: string[] = [];
    if (n.driver) facts.push(`driver ${n.driver}${n.driverVersion ? ` ${n.driverVersion}` : ""}`);
    if (n.firmwareVersion) facts.push(`firmware ${n.firmwareVersion}`);
    if (n.pci) facts.push(`PCI ${n.pci.vendor}:${n.pci.device}`);
    if (facts.length) lines.push(`  ${facts.join(", ")}`);
    const esw: string[] = [];
    if (n.eswitch) {
      esw.push(
        `eswitch ${n.eswitch.mode}${n.eswitch.inlineMode ? `, inline-mode ${n.eswitch.inlineMode}` : ""}${n.eswitch.encapMode ? `, encap-mode ${n.eswitch.encapMode}` : ""}`,
      );
    }
    if (n.sriov) esw.push(`SR-IOV ${n.sriov.configured}/${n.sriov.total} VFs`);
    if (esw.length) lines.push(`  ${esw.join(", ")}`);
    const port = (p: PortSummary) =>
      `${p.name}${p.portName ? ` (${p.portName})` : ""}${p.hwTcOffload ? ` hw-tc-offload ${p.hwTcOffload}` : ""}`;
    if (n.uplink) lines.push(`  ${n.uplink.role === "uplink" ? "uplink" : "port"}: ${port(n.uplink)}`);
    if (n.representors.length) lines.push(`  representors: ${n.representors.map(port).join(", ")}`);
    if (n.vfs.length) lines.push(`  VFs: ${n.vfs.map((v) => v.name).join(", ")}`);
    if (n.status !== "not-capable") {
      lines.push(
        `  offloads: tunnels ${n.offloads.tunnels.join(" ") || "none"}; conntrack ${n.offloads.conntrack ? "yes" : "no"};`,
      );
      lines.push(`            actions ${n.offloads.actions.join(" ")}`);
      lines.push(`            matches ${n.offloads.matches.join(" ")}`);
    }
    for (const note of n.notes) lines.push(`  note: ${note}`);
    if (n.remedies.length) {
      lines.push("  to do:");
      n.remedies.forEach((m, i) => {
        lines.push(`   ${i + 1}. ${m.what} — ${m.why}`);
        if (m.command) lines.push(`      $ ${m.command}`);
      });
    }
  }
  for (const note of r.netlinkNotes) lines.push(`note: ${note}`);
  return `${lines.join("\n")}\n`;
}
