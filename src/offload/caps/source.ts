/**
 * Where capability discovery reads from. A host is seen through two windows:
 * a filesystem (sysfs, procfs, /lib/modules) and netlink answers (devlink
 * eswitch mode and device info, ethtool features). Both are interfaces so the
 * same discovery code runs
 *   - live, on this host (`liveSource()`),
 *   - recording, live while copying every file, symlink and netlink answer it
 *     read into a capture directory (`flowdrake caps --capture DIR`),
 *   - replaying a capture made elsewhere (`flowdrake caps --from DIR`), which is
 *     also how the test fixtures for NICs we do not have are read.
 *
 * Discovery resolves symlinks itself (readLink + path arithmetic) instead of
 * letting the kernel follow them, so a capture only has to hold the links and
 * files that were actually looked at.
 *
 * Capture layout:  DIR/fs/<absolute path>   files and symlinks as read
 *                  DIR/netlink.json         NetlinkAnswers
 *                  DIR/ovs.json             OVS offload settings, if read
 *                  DIR/meta.json            when and where it was captured
 */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { FlowdrakeError } from "../../util/errors.js";

export interface EswitchInfo {
  mode: "legacy" | "switchdev" | "switchdev_inactive";
  inlineMode?: string;
  encapMode?: "none" | "basic";
}

export interface DevlinkDevice {
  eswitch?: EswitchInfo;
  driver?: string;
  serial?: string;
  /** devlink info versions: fixed, running, stored (e.g. "fw.version"). */
  versions?: Record<string, string>;
}

export interface EthtoolDevice {
  /** Feature name (ethtool -k spelling) → state. */
  features?: Record<string, { active: boolean; fixed: boolean }>;
}

export interface NetlinkAnswers {
  /** Keyed by devlink handle, e.g. "pci/0000:08:00.0". */
  devlink: Record<string, DevlinkDevice>;
  /** Keyed by interface name. */
  ethtool: Record<string, EthtoolDevice>;
  /** Why some answers are missing (e.g. "devlink family not present"). */
  notes: string[];
}

export interface OvsOffloadSettings {
  hwOffload?: string;
  tcPolicy?: string;
  maxIdle?: string;
  nOffloadThreads?: string;
  /** Whether ovs-vswitchd reports hw-offload as running (dpif/offload/show or db status). */
  source: string;
}

export interface HostFs {
  readText(path: string): string | undefined;
  readLink(path: string): string | undefined;
  list(path: string): string[];
}

export interface HostSource {
  kind: "live" | "capture";
  where: string;
  fs: HostFs;
  netlink(devices: { ifname: string; devlinkHandle?: string }[]): Promise<NetlinkAnswers>;
  ovs(): Promise<OvsOffloadSettings | undefined>;
}

/** A filesystem view rooted at `root` ("/" for the live host). */
export class RootedFs implements HostFs {
  constructor(readonly root: string) {}
  private p(path: string): string {
    return this.root === "/" ? path : join(this.root, path);
  }
  readText(path: string): string | undefined {
    try {
      return readFileSync(this.p(path), "utf8");
    } catch {
      // sysfs answers EOPNOTSUPP/ENOENT for attributes a driver does not implement
      return undefined;
    }
  }
  readLink(path: string): string | undefined {
    try {
      return readlinkSync(this.p(path));
    } catch {
      return undefined;
    }
  }
  list(path: string): string[] {
    try {
      return readdirSync(this.p(path)).sort();
    } catch {
      return [];
    }
  }
}

/** Copies every successful read into DIR/fs so the capture replays the same answers. */
export class RecordingFs implements HostFs {
  constructor(
    private readonly inner: HostFs,
    private readonly dir: string,
  ) {}
  private target(path: string): string {
    const t = join(this.dir, "fs", path);
    mkdirSync(dirname(t), { recursive: true });
    return t;
  }
  readText(path: string): string | undefined {
    const v = this.inner.readText(path);
    if (v !== undefined) writeFileSync(this.target(path), v);
    return v;
  }
  readLink(path: string): string | undefined {
    const v = this.inner.readLink(path);
    if (v !== undefined) {
      const t = this.target(path);
      if (!existsSync(t)) symlinkSync(v, t);
    }
    return v;
  }
  list(path: string): string[] {
    const v = this.inner.list(path);
    mkdirSync(join(this.dir, "fs", path), { recursive: true });
    return v;
  }
}

export type NetlinkProbe = (devices: { ifname: string; devlinkHandle?: string }[]) => Promise<NetlinkAnswers>;
export type OvsProbe = () => Promise<OvsOffloadSettings | undefined>;

export function liveSource(probes: { netlink?: NetlinkProbe; ovs?: OvsProbe } = {}): HostSource {
  return {
    kind: "live",
    where: hostname(),
    fs: new RootedFs("/"),
    netlink:
      probes.netlink ?? (async () => ({ devlink: {}, ethtool: {}, notes: ["netlink probe not available"] })),
    ovs: probes.ovs ?? (async () => undefined),
  };
}

/** Wrap a live source so that everything it answers is saved under `dir`. */
export function recordingSource(inner: HostSource, dir: string): HostSource {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "meta.json"),
    `${JSON.stringify({ capturedAt: new Date().toISOString(), host: inner.where, format: 1 }, null, 2)}\n`,
  );
  return {
    kind: inner.kind,
    where: inner.where,
    fs: new RecordingFs(inner.fs, dir),
    async netlink(devices) {
      const answers = await inner.netlink(devices);
      writeFileSync(join(dir, "netlink.json"), `${JSON.stringify(answers, null, 2)}\n`);
      return answers;
    },
    async ovs() {
      const s = await inner.ovs();
      if (s) writeFileSync(join(dir, "ovs.json"), `${JSON.stringify(s, null, 2)}\n`);
      return s;
    },
  };
}

/** Replay a capture directory written by `recordingSource` (or a hand-made fixture). */
export function captureSource(dir: string): HostSource {
  if (!existsSync(join(dir, "fs"))) {
    throw new FlowdrakeError("USAGE", `${dir} is not a flowdrake capture (no fs/ directory)`, { dir });
  }
  const readJson = <T>(name: string): T | undefined => {
    const p = join(dir, name);
    if (!existsSync(p)) return undefined;
    try {
      return JSON.parse(readFileSync(p, "utf8")) as T;
    } catch (err) {
      throw new FlowdrakeError("USAGE", `${p}: not valid JSON: ${(err as Error).message}`, { path: p });
    }
  };
  const meta = readJson<{ host?: string }>("meta.json");
  return {
    kind: "capture",
    where: `${meta?.host ?? "unknown host"} (capture ${dir})`,
    fs: new RootedFs(join(dir, "fs")),
    netlink: async () =>
      readJson<NetlinkAnswers>("netlink.json") ?? {
        devlink: {},
        ethtool: {},
        notes: ["capture has no netlink.json"],
      },
    ovs: async () => readJson<OvsOffloadSettings>("ovs.json"),
  };
}
