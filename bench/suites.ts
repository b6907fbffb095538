/** Benchmark suites by name; each writes bench/results/<name>.json. */
import { plannerBench } from "./planner.js";
import { openflow } from "./openflow.js";
export const suites: Record<string, () => Promise<void>> = {
  planner: plannerBench,
  openflow,
  tc: async () => (await import("./tc.js")).tcBench(),
  "openflow-codec": async () => (await import("./openflow-codec.js")).openflowCodec(),
  nb: async () => (await import("./nb.js")).nb(),
  "control-plane": async () => (await import("./control-plane.js")).controlPlane(),
  "control-plane-ovn": async () => {
    await (await import("./control-plane-ovn.js")).controlPlaneOvn();
  },
  "first-packet": async () => (await import("./first-packet.js")).firstPacket(),
  "punt-flood": async () => (await import("./punt-flood.js")).puntFlood(),
  secgroup: async () => (await import("./secgroup.js")).secgroupBench(),
  "ovsdb-dead-peer": async () => (await import("./ovsdb-dead-peer.js")).ovsdbDeadPeer(),
  offload: async () => (await import("./offload.js")).offloadBench(),
};
