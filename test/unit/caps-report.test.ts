import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildReport, captureSource, discover } from "../../src/offload/caps/index.js";
import { profileFor } from "../../src/offload/profiles/index.js";

const fixture = (name: string) => join(import.meta.dirname, "..", "fixtures", "caps", name);
const reportOf = async (name: string) => buildReport(await discover(captureSource(fixture(name))));

describe("caps report from captures", () => {
  it("ConnectX-6 Dx in switchdev mode with VFs: ready, representors grouped under the uplink", async () => {
    const r = await reportOf("cx6dx-switchdev");
    expect(r.nics).toHaveLength(1);
    const nic = r.nics[0]!;
    expect(nic.status).toBe("ready");
    expect(nic.profile.id).toBe("connectx-6-dx");
    expect(nic.firmwareVersion).toBe("22.39.1002");
    expect(nic.eswitch?.mode).toBe("switchdev");
    expect(nic.uplink).toMatchObject({
      name: "enp8s0f0np0",
      role: "uplink",
      portName: "p0",
      hwTcOffload: "on",
    });
    expect(nic.representors.map((p) => p.portName)).toEqual(["pf0vf0", "pf0vf1"]);
    expect(nic.vfs.map((p) => p.name)).toEqual(["enp8s0f0v0"]);
    expect(nic.sriov).toEqual({ total: 8, configured: 2 });
    expect(nic.offloads.conntrack).toBe(true);
    expect(nic.remedies).toEqual([]);
    expect(r.tcModules.cls_flower).toBe("loaded");
    expect(r.ovs?.hwOffload).toBe("true");
  });

  it("ConnectX-5 in legacy mode: every missing step is named with its command", async () => {
    const nic = (await reportOf("cx5-legacy")).nics[0]!;
    expect(nic.status).toBe("needs-changes");
    expect(nic.profile.id).toBe("connectx-5");
    const commands = nic.remedies.map((m) => m.command);
    expect(commands).toContain("devlink dev eswitch set pci/0000:3b:00.0 mode switchdev");
    expect(commands).toContain("ethtool -K ens1f0 hw-tc-offload on");
    expect(commands).toContain("echo 8 > /sys/class/net/ens1f0/device/sriov_numvfs");
    expect(nic.remedies.find((m) => m.what.includes("OVS hardware offload"))?.why).toMatch(/restart/);
    expect(nic.offloads.conntrack).toBe(false);
  });

  it("virtio VM: not capable, with the reason", async () => {
    const r = await reportOf("virtio-vm");
    const nic = r.nics[0]!;
    expect(nic.status).toBe("not-capable");
    expect(nic.driver).toBe("virtio_net");
    expect(nic.notes[0]).toMatch(/virtio_net.*no embedded switch/);
    expect(nic.remedies).toEqual([]);
    expect(r.tcModules.cls_flower).toBe("available");
  });

  it("rejects a directory that is not a capture", () => {
    expect(() => captureSource(import.meta.dirname)).toThrow(/not a flowdrake capture/);
  });
});

describe("profiles", () => {
  it("match by PCI id (PF and VF ids), then driver, else none", () => {
    expect(profileFor({ pciVendor: "0x15b3", pciDevice: "0x101e" }).id).toBe("connectx-6-dx");
    expect(profileFor({ pciVendor: "15b3", pciDevice: "1015" }).id).toBe("connectx-4-lx");
    expect(profileFor({ pciVendor: "15b3", pciDevice: "a2dc" }).id).toBe("bluefield-3");
    expect(profileFor({ driver: "virtio_net" }).id).toBe("none");
    expect(profileFor({ pciVendor: "8086", pciDevice: "1572", driver: "i40e" }).id).toBe("none");
  });
});
