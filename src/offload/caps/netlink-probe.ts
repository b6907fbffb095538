/**
 * Live netlink answers for capability discovery, through flowdrake's own
 * generic netlink client: devlink (DEVLINK_CMD_ESWITCH_GET for the eswitch,
 * inline and encap modes; DEVLINK_CMD_INFO_GET for driver, serial and firmware
 * versions) and ethtool (ETHTOOL_MSG_FEATURES_GET for hw-tc-offload). Ids
 * follow linux/devlink.h and linux/ethtool_netlink.h (Linux 6.1 uapi). A
 * device or family that does not answer is recorded as a note, never an error.
 */
import { type AttrValues, attrSet } from "../netlink/attrs.js";
import { GenericNetlink } from "../netlink/genetlink.js";
import type { EswitchInfo, NetlinkAnswers } from "./source.js";

const DEVLINK_CMD_ESWITCH_GET = 29;
const DEVLINK_CMD_INFO_GET = 51;
const ETHTOOL_MSG_FEATURES_GET = 11;

const devlinkVersion = attrSet("devlink_info_version", "linux/devlink.h 6.1", {
  name: { id: 103, type: "string" },
  value: { id: 104, type: "string" },
});

const devlinkAttrs = attrSet("devlink", "linux/devlink.h 6.1", {
  busName: { id: 1, type: "string" },
  devName: { id: 2, type: "string" },
  eswitchMode: { id: 25, type: "u16" },
  eswitchInlineMode: { id: 26, type: "u8" },
  eswitchEncapMode: { id: 62, type: "u8" },
  infoDriverName: { id: 98, type: "string" },
  infoSerialNumber: { id: 99, type: "string" },
  infoVersionFixed: { id: 100, type: "nested", repeated: true, nested: () => devlinkVersion },
  infoVersionRunning: { id: 101, type: "nested", repeated: true, nested: () => devlinkVersion },
  infoVersionStored: { id: 102, type: "nested", repeated: true, nested: () => devlinkVersion },
});

const ethtoolHeader = attrSet("ethtool_header", "linux/ethtool_netlink.h 6.1", {
  devIndex: { id: 1, type: "u32" },
  devName: { id: 2, type: "string" },
  flags: { id: 3, type: "u32" },
});
const bitsetBit = attrSet("ethtool_bitset_bit", "linux/ethtool_netlink.h 6.1", {
  index: { id: 1, type: "u32" },
  name: { id: 2, type: "string" },
  value: { id: 3, type: "flag" },
});
const bitsetBits = attrSet("ethtool_bitset_bits", "linux/ethtool_netlink.h 6.1", {
  bit: { id: 1, type: "nested", repeated: true, nested: () => bitsetBit },
});
const bitset = attrSet("ethtool_bitset", "linux/ethtool_netlink.h 6.1", {
  nomask: { id: 1, type: "flag" },
  size: { id: 2, type: "u32" },
  bits: { id: 3, type: "nested", nested: () => bitsetBits },
  value: { id: 4, type: "binary" },
  mask: { id: 5, type: "binary" },
});
const featuresAttrs = attrSet("ethtool_features", "linux/ethtool_netlink.h 6.1", {
  header: { id: 1, type: "nested", nestedFlag: true, nested: () => ethtoolHeader },
  hw: { id: 2, type: "nested", nested: () => bitset },
  wanted: { id: 3, type: "nested", nested: () => bitset },
  active: { id: 4, type: "nested", nested: () => bitset },
  nochange: { id: 5, type: "nested", nested: () => bitset },
});

const eswitchModes: EswitchInfo["mode"][] = ["legacy", "switchdev", "switchdev_inactive"];
const inlineModes = ["none", "link", "network", "transport"];

/**
 * Names of the set bits of a non-compact bitset: in a list (NOMASK) every
 * listed bit is set; otherwise each bit carries a VALUE flag when set.
 */
function bitNames(set: AttrValues | undefined): Set<string> {
  const bits = ((set?.bits as AttrValues | undefined)?.bit as AttrValues[] | undefined) ?? [];
  const list = Boolean(set?.nomask);
  return new Set(bits.filter((b) => list || Boolean(b.value)).map((b) => String(b.name)));
}

function versions(list: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of (list as AttrValues[] | undefined) ?? []) out[String(v.name)] = String(v.value);
  return out;
}

export async function probeNetlink(
  devices: { ifname: string; devlinkHandle?: string }[],
): Promise<NetlinkAnswers> {
  const answers: NetlinkAnswers = { devlink: {}, ethtool: {}, notes: [] };
  let gn: GenericNetlink;
  try {
    gn = GenericNetlink.open();
  } catch (err) {
    answers.notes.push(`netlink: cannot open a generic netlink socket: ${(err as Error).message}`);
    return answers;
  }
  try {
    for (const d of devices) {
      if (!d.devlinkHandle) continue;
      const [busName, ...rest] = d.devlinkHandle.split("/");
      const dev = { busName: busName!, devName: rest.join("/") };
      try {
        const [m] = await gn.request("devlink", DEVLINK_CMD_ESWITCH_GET, devlinkAttrs, dev);
        const a = m?.attrs ?? {};
        const entry = (answers.devlink[d.devlinkHandle] ??= {});
        entry.eswitch = {
          mode: eswitchModes[Number(a.eswitchMode ?? 0)] ?? "legacy",
          inlineMode:
            a.eswitchInlineMode === undefined ? undefined : inlineModes[Number(a.eswitchInlineMode)],
          encapMode:
            a.eswitchEncapMode === undefined ? undefined : Number(a.eswitchEncapMode) ? "basic" : "none",
        };
      } catch (err) {
        answers.notes.push(`devlink eswitch ${d.devlinkHandle}: ${(err as Error).message}`);
      }
      try {
        const [m] = await gn.request("devlink", DEVLINK_CMD_INFO_GET, devlinkAttrs, dev);
        const a = m?.attrs ?? {};
        const entry = (answers.devlink[d.devlinkHandle] ??= {});
        entry.driver = a.infoDriverName === undefined ? undefined : String(a.infoDriverName);
        entry.serial = a.infoSerialNumber === undefined ? undefined : String(a.infoSerialNumber);
        entry.versions = { ...versions(a.infoVersionFixed), ...versions(a.infoVersionRunning) };
      } catch (err) {
        answers.notes.push(`devlink info ${d.devlinkHandle}: ${(err as Error).message}`);
      }
    }
    for (const d of devices) {
      try {
        const [m] = await gn.request("ethtool", ETHTOOL_MSG_FEATURES_GET, featuresAttrs, {
          header: { devName: d.ifname },
        });
        const active = bitNames(m?.attrs.active as AttrValues | undefined);
        // ETHTOOL_A_FEATURES_HW holds the features the driver lets a user change.
        const changeable = bitNames(m?.attrs.hw as AttrValues | undefined);
        const features: Record<string, { active: boolean; fixed: boolean }> = {};
        for (const name of new Set([...active, ...changeable])) {
          features[name] = { active: active.has(name), fixed: !changeable.has(name) };
        }
        if (!features["hw-tc-offload"]) features["hw-tc-offload"] = { active: false, fixed: true };
        answers.ethtool[d.ifname] = { features };
      } catch (err) {
        answers.notes.push(`ethtool features ${d.ifname}: ${(err as Error).message}`);
      }
    }
  } finally {
    gn.close();
  }
  return answers;
}
