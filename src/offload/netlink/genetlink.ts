/**
 * Generic netlink (linux/genetlink.h): families such as devlink and ethtool
 * have dynamic ids, resolved by name through the "nlctrl" family
 * (GENL_ID_CTRL, CTRL_CMD_GETFAMILY). A genetlink payload is a 4-byte
 * genlmsghdr (cmd, version, reserved) followed by the family's attributes.
 *
 * `GenericNetlink.open({netns})` gives a client with `family(name)` (cached
 * resolution), `request` and `dump`; the caller supplies the family's
 * attribute set (declared with attrs.ts) and gets decoded values back.
 */
import { ByteReader, type ByteWriter } from "../../util/bytes.js";
import { DecodeError } from "../../util/errors.js";
import { attrSet, type AttrSet, type AttrValues } from "./attrs.js";
import { NetlinkClient } from "./client.js";
import type { NlMsg } from "./framing.js";
import { NETLINK_GENERIC, type NetlinkSocketOptions } from "./socket.js";

export const GENL_ID_CTRL = 0x10;
export const GENL_HDRLEN = 4;
/** enum ctrl_cmd (linux/genetlink.h). */
export const CTRL_CMD_GETFAMILY = 3;

/** CTRL_ATTR_MCAST_GRP_* (linux/genetlink.h, 6.1). */
const ctrlMcastGroup = attrSet("ctrl_mcast_grp", "linux/genetlink.h 6.1", {
  name: { id: 1, type: "string" },
  id: { id: 2, type: "u32" },
});

/** CTRL_ATTR_* (linux/genetlink.h, 6.1). */
export const ctrlAttrs = attrSet("ctrl", "linux/genetlink.h 6.1", {
  familyId: { id: 1, type: "u16" },
  familyName: { id: 2, type: "string" },
  version: { id: 3, type: "u32" },
  hdrsize: { id: 4, type: "u32" },
  maxattr: { id: 5, type: "u32" },
  ops: { id: 6, type: "binary" },
  mcastGroups: { id: 7, type: "nested-array", nested: () => ctrlMcastGroup },
  policy: { id: 8, type: "binary" },
  opPolicy: { id: 9, type: "binary" },
  op: { id: 10, type: "u32" },
});

export interface GenlFamily {
  name: string;
  id: number;
  version: number;
  mcastGroups: Record<string, number>;
}

export interface GenlMessage {
  cmd: number;
  version: number;
  attrs: AttrValues;
}

export class GenericNetlink {
  private readonly families = new Map<string, GenlFamily>();

  constructor(readonly client: NetlinkClient) {}

  static open(opts: NetlinkSocketOptions = {}): GenericNetlink {
    return new GenericNetlink(NetlinkClient.open(NETLINK_GENERIC, opts));
  }

  close(): void {
    this.client.close();
  }

  /** Resolve a family name ("devlink", "ethtool") to its id; NetlinkError ENOENT if absent. */
  async family(name: string): Promise<GenlFamily> {
    const cached = this.families.get(name);
    if (cached) return cached;
    const answers = await this.client.request({
      type: GENL_ID_CTRL,
      flags: 0x08 /* NLM_F_ECHO */,
      typeName: `CTRL_CMD_GETFAMILY ${name}`,
      body: (w) => writeGenl(w, CTRL_CMD_GETFAMILY, 1, ctrlAttrs, { familyName: name }),
    });
    const m = answers[0];
    if (!m) throw new DecodeError(`nlctrl: no answer describing family ${name}`);
    const a = decodeGenl(m, ctrlAttrs).attrs;
    const groups: Record<string, number> = {};
    for (const g of (a.mcastGroups as AttrValues[] | undefined) ?? []) {
      groups[String(g.name)] = Number(g.id);
    }
    const fam: GenlFamily = {
      name,
      id: Number(a.familyId),
      version: Number(a.version ?? 1),
      mcastGroups: groups,
    };
    this.families.set(name, fam);
    return fam;
  }

  async request(
    family: string,
    cmd: number,
    set: AttrSet,
    attrs: AttrValues,
    opts: { flags?: number; version?: number } = {},
  ): Promise<GenlMessage[]> {
    const fam = await this.family(family);
    const answers = await this.client.request({
      type: fam.id,
      flags: opts.flags ?? 0,
      typeName: `${family} cmd ${cmd}`,
      body: (w) => writeGenl(w, cmd, opts.version ?? fam.version, set, attrs),
    });
    return answers.map((m) => decodeGenl(m, set));
  }

  async dump(
    family: string,
    cmd: number,
    set: AttrSet,
    attrs: AttrValues = {},
    opts: { version?: number } = {},
  ): Promise<GenlMessage[]> {
    const fam = await this.family(family);
    const parts = await this.client.dump({
      type: fam.id,
      flags: 0,
      typeName: `${family} cmd ${cmd} dump`,
      body: (w) => writeGenl(w, cmd, opts.version ?? fam.version, set, attrs),
    });
    return parts.map((m) => decodeGenl(m, set));
  }
}

export function writeGenl(
  w: ByteWriter,
  cmd: number,
  version: number,
  set: AttrSet,
  attrs: AttrValues,
): void {
  w.u8(cmd).u8(version).u16le(0);
  set.encode(w, attrs);
}

export function decodeGenl(m: NlMsg, set: AttrSet): GenlMessage {
  const r = new ByteReader(m.payload, 0, m.payload.length, "genetlink message");
  const cmd = r.u8("genl cmd");
  const version = r.u8("genl version");
  r.skip(2, "genl reserved");
  return { cmd, version, attrs: set.decode(r) };
}
