/**
 * The embedded NB store: the whole northbound database inside one process,
 * made durable by an append-only log — the default for a single node and the
 * demo (`--db embedded:/var/lib/flowdrake/nb`).
 *
 * On disk (one data directory):
 *   LOCK           pid of the process that has the directory open; a second
 *                  writer process is refused with a clear error. A holder
 *                  that will serve the store (open's `serves`) says so on a
 *                  second line, `serves`, from the moment it holds the
 *                  directory: others wait for its nb.sock rather than fail.
 *   nb.sock        while the holder serves the store to other processes
 *                  (src/nb/store/served.ts): the unix socket they use.
 *   snapshot.json  one checksummed record: every object and lease at a revision.
 *   log.jsonl      one checksummed record per committed transaction (and per
 *                  lease grant/revoke), newest last. Format of every record:
 *                  `<crc32 hex of the JSON> <JSON>\n`.
 *
 * Commit = append the record, fdatasync, then apply it in memory and notify
 * watchers: a transaction the caller saw succeed survives `kill -9`. Recovery
 * loads the snapshot and replays log records above its revision; a last record
 * that is torn (no newline, or a checksum that does not match) is dropped and
 * the file truncated back to the last good record; damage before the tail is
 * refused rather than silently skipped. Compaction writes a new snapshot
 * (tmp + fsync + rename + directory fsync) and then swaps in an empty log the
 * same way; a crash between the two steps is harmless because replay skips
 * records at or below the snapshot revision.
 *
 * Watch keeps a bounded history of recent events (rebuilt from the log on
 * open); a watcher asking for a revision older than the history is told to
 * resync. Locks are in-process mutexes — sound because only one process may
 * open a data directory (other processes lock through the holder's socket,
 * i.e. through these same mutexes). Leases are persisted and expire `ttl`
 * seconds after their last refresh; leases restored after a restart get a
 * fresh ttl.
 *
 * Followers: `EmbeddedStore.follow(dir)` opens the same directory read-only in
 * another process (no LOCK taken) and tails log.jsonl, applying each complete
 * record as the writer commits it — so a standalone `flowdrake publisher` can
 * watch an embedded store that the NB writer owns. A compaction swaps the log
 * file: the follower finishes the old file (its fd still reads it), then moves
 * to the new one; if it ever missed records (two compactions between polls)
 * it reloads the snapshot and tells its watchers to resync. Writes, locks and
 * leases are refused on a follower.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { crc32 } from "node:zlib";
import { logger } from "../../util/log.js";
import { ConflictError, LockTimeoutError, StoreError } from "./errors.js";
import type {
  Kind,
  Lease,
  NbStore,
  StoredObject,
  TxnOp,
  TxnResult,
  Watch,
  WatchEvent,
  WatchOptions,
} from "./types.js";

const log = logger("nb-embedded");

export interface EmbeddedStoreOptions {
  /** Events kept for watch resume (default 10 000). */
  historyLimit?: number;
  /** Compact when the log holds this many records (default 20 000; 0 = never automatically). */
  compactEveryRecords?: number;
  /** Lease expiry check period in ms (default 100). */
  leaseTickMs?: number;
  /** Follower only: how often the log is polled for new records (default 20 ms). */
  followPollMs?: number;
  /**
   * This holder will serve the store on nb.sock once it is open (openStore's `serve`): LOCK says
   * so, and a process refused the directory meanwhile is told (its StoreError's `serves`).
   */
  serves?: boolean;
}

type LogOp =
  | { op: "put"; kind: Kind; key: string; value: unknown; version: number; lease?: string }
  | { op: "delete"; kind: Kind; key: string; prevVersion: number };

type LogRecord =
  | { t: "txn"; rev: number; ops: LogOp[] }
  | { t: "lease"; id: string; ttl: number }
  | { t: "revoke"; id: string };

interface Snapshot {
  revision: number;
  objects: (StoredObject & { lease?: string })[];
  leases: { id: string; ttl: number }[];
}

interface Entry {
  obj: StoredObject;
  lease?: string;
}

interface LeaseState {
  id: string;
  ttl: number;
  expiresAt: number;
  auto: boolean;
  keys: Set<string>;
}

interface Watcher {
  kinds?: Set<Kind>;
  queue: WatchEvent[];
  scheduled: boolean;
  closed: boolean;
  onEvent: (ev: WatchEvent) => void;
  onResync?: (currentRevision: number) => void;
}

const LOCK_FILE = "LOCK";
/** LOCK's second line when its holder will serve the store. */
const LOCK_SERVES = "serves";
/** What this process's LOCK says. */
const lockContent = (serves: boolean): string => `${process.pid}\n${serves ? `${LOCK_SERVES}\n` : ""}`;
const SNAPSHOT_FILE = "snapshot.json";
const LOG_FILE = "log.jsonl";

/** Data directories open in this process (a second open would be a second writer). */
const openDirs = new Set<string>();

function encodeRecord(body: unknown): Buffer {
  const json = JSON.stringify(body);
  const crc = crc32(Buffer.from(json, "utf8")).toString(16).padStart(8, "0");
  return Buffer.from(`${crc} ${json}\n`, "utf8");
}

/** Parse one record line; undefined when torn or corrupt. */
function decodeRecord(line: string): unknown {
  const sp = line.indexOf(" ");
  if (sp !== 8) return undefined;
  const json = line.slice(9);
  const crc = crc32(Buffer.from(json, "utf8")).toString(16).padStart(8, "0");
  if (crc !== line.slice(0, 8)) return undefined;
  try {
    return JSON.parse(json);
  } catch {
    return undefined;
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function writeFileDurably(file: string, data: Buffer): void {
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, "w");
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

const id = (kind: Kind, key: string): string => `${kind}\u0000${key}`;

class Mutex {
  private held = false;
  private waiters: (() => void)[] = [];

  async acquire(name: string, timeoutMs: number): Promise<void> {
    if (!this.held) {
      this.held = true;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new LockTimeoutError(name, timeoutMs));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.held = false;
  }

  get idle(): boolean {
    return !this.held && this.waiters.length === 0;
  }
}

export class EmbeddedStore implements NbStore {
  readonly driver = "embedded" as const;
  private readonly objects = new Map<string, Entry>();
  private readonly leases = new Map<string, LeaseState>();
  private readonly history: WatchEvent[] = [];
  private historyFloor = 0;
  private rev = 0;
  private logFd = -1;
  private logSize = 0;
  private logRecords = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly mutexes = new Map<string, Mutex>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly historyLimit: number;
  private readonly compactEvery: number;
  /** A follower reads another process's data directory and never writes. */
  private follower = false;
  private logIno = 0;
  private tail = Buffer.alloc(0);

  private constructor(
    readonly dir: string,
    opts: EmbeddedStoreOptions,
  ) {
    this.historyLimit = opts.historyLimit ?? 10_000;
    this.compactEvery = opts.compactEveryRecords ?? 20_000;
  }

  static async open(dir: string, opts: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new StoreError(`cannot create NB data dir ${dir}: ${(err as Error).message}`, { dir });
    }
    const real = fs.realpathSync(dir);
    if (openDirs.has(real)) {
      throw new StoreError(`NB data dir ${real} is already open in this process`, { dir: real });
    }
    takeDirLock(real, opts.serves ?? false);
    openDirs.add(real);
    const store = new EmbeddedStore(real, opts);
    try {
      store.recover();
    } catch (err) {
      openDirs.delete(real);
      fs.rmSync(path.join(real, LOCK_FILE), { force: true });
      throw err;
    }
    store.timer = setInterval(() => store.expireLeases(), opts.leaseTickMs ?? 100);
    store.timer.unref();
    return store;
  }

  /**
   * Open a data directory read-only and follow what its writer (usually
   * another process) commits. Reads and watch work; writes throw StoreError.
   */
  static async follow(dir: string, opts: EmbeddedStoreOptions = {}): Promise<EmbeddedStore> {
    let real: string;
    try {
      real = fs.realpathSync(dir);
    } catch (err) {
      throw new StoreError(`cannot follow NB data dir ${dir}: ${(err as Error).message}`, { dir });
    }
    const store = new EmbeddedStore(real, opts);
    store.follower = true;
    store.recover();
    store.timer = setInterval(() => store.poll(), opts.followPollMs ?? 20);
    store.timer.unref();
    return store;
  }

  get readOnly(): boolean {
    return this.follower;
  }

  /** Follower: apply the records appended since the last poll; switch files after a compaction. */
  private poll(): void {
    if (this.closed) return;
    try {
      this.readTail();
      const logFile = path.join(this.dir, LOG_FILE);
      let ino = 0;
      try {
        ino = fs.statSync(logFile).ino;
      } catch {
        return; // between the snapshot and the log swap of a compaction
      }
      if (ino === this.logIno) return;
      // compacted: the old file is finished (its fd still reads it); move to the new one
      const snap = this.readSnapshot();
      fs.closeSync(this.logFd);
      this.logFd = fs.openSync(logFile, "r");
      this.logIno = fs.fstatSync(this.logFd).ino;
      this.logSize = 0;
      this.tail = Buffer.alloc(0);
      if (snap && snap.revision > this.rev) {
        log.warn(
          { have: this.rev, snapshot: snap.revision },
          "follower missed records: reloading the snapshot",
        );
        this.loadSnapshot(snap, true);
      }
      this.readTail();
    } catch (err) {
      log.error({ err, dir: this.dir }, "follower poll failed");
    }
  }

  private readTail(): void {
    const chunk = Buffer.alloc(1 << 16);
    for (;;) {
      const n = fs.readSync(this.logFd, chunk, 0, chunk.length, this.logSize + this.tail.length);
      if (n <= 0) break;
      this.tail = Buffer.concat([this.tail, chunk.subarray(0, n)]);
    }
    let nl: number;
    while ((nl = this.tail.indexOf(0x0a)) >= 0) {
      const line = this.tail.subarray(0, nl).toString("utf8");
      const rec = decodeRecord(line) as LogRecord | undefined;
      if (!rec) {
        log.error({ dir: this.dir, offset: this.logSize }, "follower: unreadable log record, stopping here");
        return;
      }
      this.replay(rec);
      this.logSize += nl + 1;
      this.tail = this.tail.subarray(nl + 1);
    }
  }

  private readSnapshot(): Snapshot | undefined {
    const snapFile = path.join(this.dir, SNAPSHOT_FILE);
    if (!fs.existsSync(snapFile)) return undefined;
    const snap = decodeRecord(fs.readFileSync(snapFile, "utf8").replace(/\n$/, "")) as Snapshot | undefined;
    if (!snap)
      throw new StoreError(`NB snapshot ${snapFile} is corrupt (checksum mismatch)`, { file: snapFile });
    return snap;
  }

  /** Replace the state by a snapshot; `resync` tells watchers they missed events. */
  private loadSnapshot(snap: Snapshot, resync: boolean): void {
    this.objects.clear();
    this.leases.clear();
    this.history.length = 0;
    this.rev = snap.revision;
    this.historyFloor = snap.revision;
    for (const l of snap.leases) this.restoreLease(l.id, l.ttl);
    for (const o of snap.objects) {
      const { lease, ...obj } = o;
      this.objects.set(id(obj.kind, obj.key), lease ? { obj, lease } : { obj });
      if (lease) this.leases.get(lease)?.keys.add(id(obj.kind, obj.key));
    }
    if (resync) {
      for (const w of this.watchers) {
        w.queue.length = 0;
        const rev = this.rev;
        setImmediate(() => {
          if (!w.closed) w.onResync?.(rev);
        });
      }
    }
  }

  // ---- recovery and compaction ------------------------------------------

  private recover(): void {
    const snap = this.readSnapshot();
    if (snap) this.loadSnapshot(snap, false);
    const logFile = path.join(this.dir, LOG_FILE);
    if (this.follower) {
      if (!fs.existsSync(logFile)) {
        throw new StoreError(`${this.dir} holds no NB log yet (open it with its writer first)`, {
          dir: this.dir,
        });
      }
      this.logFd = fs.openSync(logFile, "r");
      this.logIno = fs.fstatSync(this.logFd).ino;
      this.readTail();
      return;
    }
    const buf = fs.existsSync(logFile) ? fs.readFileSync(logFile) : Buffer.alloc(0);
    let pos = 0;
    let good = 0;
    while (pos < buf.length) {
      const nl = buf.indexOf(0x0a, pos);
      const line = buf.subarray(pos, nl < 0 ? buf.length : nl).toString("utf8");
      const rec = nl < 0 ? undefined : (decodeRecord(line) as LogRecord | undefined);
      if (!rec) {
        const rest = nl < 0 ? -1 : buf.indexOf(0x0a, nl + 1);
        if (rest >= 0) {
          throw new StoreError(`NB log ${logFile} is corrupt at byte ${pos} (not at the tail)`, {
            file: logFile,
            offset: pos,
          });
        }
        log.warn({ file: logFile, offset: pos, dropped: buf.length - pos }, "dropping torn last log record");
        break;
      }
      this.replay(rec);
      this.logRecords++;
      pos = nl + 1;
      good = pos;
    }
    this.logFd = fs.openSync(logFile, fs.existsSync(logFile) ? "r+" : "w+");
    if (good < buf.length) {
      fs.ftruncateSync(this.logFd, good);
      fs.fsyncSync(this.logFd);
    }
    this.logSize = good;
    fsyncDir(this.dir);
    log.debug({ dir: this.dir, revision: this.rev, records: this.logRecords }, "NB store recovered");
  }

  private replay(rec: LogRecord): void {
    if (rec.t === "lease") this.restoreLease(rec.id, rec.ttl);
    else if (rec.t === "revoke") this.leases.delete(rec.id);
    else if (rec.rev > this.rev) this.apply(rec.rev, rec.ops);
  }

  private restoreLease(leaseId: string, ttl: number): void {
    this.leases.set(leaseId, {
      id: leaseId,
      ttl,
      expiresAt: Date.now() + ttl * 1000,
      auto: false,
      keys: new Set(),
    });
  }

  /** Write a snapshot of the current state and start an empty log. */
  compact(): void {
    this.assertWritable();
    const snap: Snapshot = {
      revision: this.rev,
      objects: [...this.objects.values()].map((e) => (e.lease ? { ...e.obj, lease: e.lease } : e.obj)),
      leases: [...this.leases.values()].map((l) => ({ id: l.id, ttl: l.ttl })),
    };
    writeFileDurably(path.join(this.dir, SNAPSHOT_FILE), encodeRecord(snap));
    const logFile = path.join(this.dir, LOG_FILE);
    writeFileDurably(logFile, Buffer.alloc(0));
    fs.closeSync(this.logFd);
    this.logFd = fs.openSync(logFile, "r+");
    this.logSize = 0;
    this.logRecords = 0;
    log.debug({ dir: this.dir, revision: this.rev }, "NB store compacted");
  }

  private append(rec: LogRecord): void {
    const buf = encodeRecord(rec);
    try {
      fs.writeSync(this.logFd, buf, 0, buf.length, this.logSize);
      fs.fdatasyncSync(this.logFd);
    } catch (err) {
      try {
        fs.ftruncateSync(this.logFd, this.logSize);
      } catch {
        // the torn tail is dropped on the next open
      }
      throw new StoreError(
        `NB log write failed: ${(err as Error).message}`,
        { dir: this.dir },
        { cause: err },
      );
    }
    this.logSize += buf.length;
    this.logRecords++;
  }

  private maybeCompact(): void {
    if (this.compactEvery > 0 && this.logRecords >= this.compactEvery) this.compact();
  }

  // ---- reads --------------------------------------------------------------

  async get(kind: Kind, key: string): Promise<StoredObject | undefined> {
    this.assertOpen();
    const e = this.objects.get(id(kind, key));
    return e ? structuredClone(e.obj) : undefined;
  }

  async list(kind: Kind): Promise<StoredObject[]> {
    this.assertOpen();
    const out: StoredObject[] = [];
    for (const e of this.objects.values()) if (e.obj.kind === kind) out.push(structuredClone(e.obj));
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async revision(): Promise<number> {
    this.assertOpen();
    return this.rev;
  }

  // ---- writes -------------------------------------------------------------

  async txn(ops: TxnOp[]): Promise<TxnResult> {
    this.assertWritable();
    return this.commit(ops);
  }

  private commit(ops: TxnOp[]): TxnResult {
    const seen = new Set<string>();
    const logOps: LogOp[] = [];
    const versions: number[] = [];
    for (const op of ops) {
      const k = id(op.kind, op.key);
      if (seen.has(k))
        throw new StoreError(`txn names ${op.kind}/${op.key} twice`, { kind: op.kind, key: op.key });
      seen.add(k);
      const cur = this.objects.get(k);
      const actual = cur?.obj.version ?? 0;
      if (op.expectVersion !== undefined && op.expectVersion !== actual) {
        throw new ConflictError(
          conflictMessage(op.op, op.kind, op.key, op.expectVersion, actual),
          op.kind,
          op.key,
          op.expectVersion,
          actual,
        );
      }
      if (op.op === "put") {
        if (op.lease !== undefined && !this.leases.has(op.lease)) {
          throw new StoreError(`lease ${op.lease} does not exist (expired or revoked)`, { lease: op.lease });
        }
        let value: unknown;
        try {
          value = JSON.parse(JSON.stringify(op.value ?? null));
        } catch (err) {
          throw new StoreError(`value of ${op.kind}/${op.key} is not JSON: ${(err as Error).message}`, {
            kind: op.kind,
            key: op.key,
          });
        }
        const lo: LogOp = { op: "put", kind: op.kind, key: op.key, value, version: actual + 1 };
        if (op.lease !== undefined) lo.lease = op.lease;
        logOps.push(lo);
        versions.push(actual + 1);
      } else {
        versions.push(0);
        if (cur) logOps.push({ op: "delete", kind: op.kind, key: op.key, prevVersion: actual });
      }
    }
    if (logOps.length === 0) return { revision: this.rev, versions };
    const rev = this.rev + 1;
    this.append({ t: "txn", rev, ops: logOps });
    this.apply(rev, logOps);
    this.maybeCompact();
    return { revision: rev, versions };
  }

  /** Apply a committed (logged) transaction to memory, history and watchers. */
  private apply(rev: number, ops: LogOp[]): void {
    this.rev = rev;
    const events: WatchEvent[] = [];
    for (const op of ops) {
      const k = id(op.kind, op.key);
      const prev = this.objects.get(k);
      if (prev?.lease) this.leases.get(prev.lease)?.keys.delete(k);
      if (op.op === "put") {
        const obj: StoredObject = {
          kind: op.kind,
          key: op.key,
          value: op.value,
          version: op.version,
          modRevision: rev,
        };
        this.objects.set(k, op.lease ? { obj, lease: op.lease } : { obj });
        if (op.lease) this.leases.get(op.lease)?.keys.add(k);
        events.push({ type: "put", object: obj, revision: rev });
      } else {
        this.objects.delete(k);
        events.push({
          type: "delete",
          kind: op.kind,
          key: op.key,
          prevVersion: op.prevVersion,
          revision: rev,
        });
      }
    }
    this.history.push(...events);
    if (this.history.length > this.historyLimit) {
      let cut = this.history.length - this.historyLimit;
      const floorRev = this.history[cut - 1]!.revision;
      while (cut < this.history.length && this.history[cut]!.revision === floorRev) cut++;
      this.history.splice(0, cut);
      this.historyFloor = floorRev;
    }
    for (const w of this.watchers) for (const ev of events) this.enqueue(w, ev);
  }

  // ---- watch --------------------------------------------------------------

  async watch(opts: WatchOptions, onEvent: (ev: WatchEvent) => void): Promise<Watch> {
    this.assertOpen();
    const w: Watcher = { queue: [], scheduled: false, closed: false, onEvent };
    if (opts.onResync) w.onResync = opts.onResync;
    if (opts.kinds) w.kinds = new Set(opts.kinds);
    const from = opts.fromRevision ?? this.rev;
    if (from < this.historyFloor) {
      const current = this.rev;
      log.info({ fromRevision: from, oldest: this.historyFloor }, "watch history compacted: resync");
      setImmediate(() => {
        if (!w.closed) opts.onResync?.(current);
      });
    } else {
      for (const ev of this.history) if (ev.revision > from) this.enqueue(w, ev);
    }
    this.watchers.add(w);
    return {
      close: async () => {
        w.closed = true;
        w.queue.length = 0;
        this.watchers.delete(w);
      },
    };
  }

  private enqueue(w: Watcher, ev: WatchEvent): void {
    const kind = ev.type === "put" ? ev.object.kind : ev.kind;
    if (w.kinds && !w.kinds.has(kind)) return;
    w.queue.push(ev.type === "put" ? { ...ev, object: structuredClone(ev.object) } : ev);
    if (!w.scheduled) {
      w.scheduled = true;
      setImmediate(() => this.drain(w));
    }
  }

  private drain(w: Watcher): void {
    w.scheduled = false;
    while (!w.closed && w.queue.length > 0) {
      const ev = w.queue.shift()!;
      try {
        w.onEvent(ev);
      } catch (err) {
        log.error({ err }, "watch callback threw");
      }
    }
  }

  // ---- locks --------------------------------------------------------------

  async withLock<T>(name: string, fn: () => Promise<T>, opts: { timeoutMs?: number } = {}): Promise<T> {
    this.assertWritable();
    let m = this.mutexes.get(name);
    if (!m) {
      m = new Mutex();
      this.mutexes.set(name, m);
    }
    await m.acquire(name, opts.timeoutMs ?? 30_000);
    try {
      return await fn();
    } finally {
      m.release();
      if (m.idle) this.mutexes.delete(name);
    }
  }

  // ---- leases -------------------------------------------------------------

  async grantLease(ttlSeconds: number, opts: { keepAlive?: boolean } = {}): Promise<Lease> {
    this.assertWritable();
    if (!(ttlSeconds > 0)) throw new StoreError(`lease ttl must be > 0, got ${ttlSeconds}`, { ttlSeconds });
    const leaseId = randomBytes(8).toString("hex");
    this.append({ t: "lease", id: leaseId, ttl: ttlSeconds });
    const auto = opts.keepAlive ?? true;
    const state: LeaseState = {
      id: leaseId,
      ttl: ttlSeconds,
      expiresAt: auto ? Infinity : Date.now() + ttlSeconds * 1000,
      auto,
      keys: new Set(),
    };
    this.leases.set(leaseId, state);
    return {
      id: leaseId,
      ttlSeconds,
      keepAlive: async () => {
        this.assertOpen();
        const l = this.leases.get(leaseId);
        if (!l) throw new StoreError(`lease ${leaseId} has expired or was revoked`, { lease: leaseId });
        if (!l.auto) l.expiresAt = Date.now() + l.ttl * 1000;
      },
      revoke: async () => {
        if (this.closed || !this.leases.has(leaseId)) return;
        this.revokeLease(leaseId);
      },
    };
  }

  private revokeLease(leaseId: string): void {
    const l = this.leases.get(leaseId);
    if (!l) return;
    const ops: TxnOp[] = [...l.keys].map((k) => {
      const e = this.objects.get(k)!;
      return { op: "delete", kind: e.obj.kind, key: e.obj.key };
    });
    if (ops.length > 0) this.commit(ops);
    this.append({ t: "revoke", id: leaseId });
    this.leases.delete(leaseId);
  }

  private expireLeases(): void {
    if (this.closed || this.follower) return;
    const now = Date.now();
    for (const l of [...this.leases.values()]) {
      if (l.expiresAt <= now) {
        log.info({ lease: l.id, keys: l.keys.size }, "lease expired");
        try {
          this.revokeLease(l.id);
        } catch (err) {
          log.error({ err, lease: l.id }, "lease expiry failed");
        }
      }
    }
  }

  // ---- lifecycle ----------------------------------------------------------

  /**
   * This holder will not serve the store after all (serving failed): LOCK stops saying it will,
   * so that others are refused at once rather than after waiting for its nb.sock.
   */
  withdrawServes(): void {
    if (this.follower || this.closed) return;
    const file = path.join(this.dir, LOCK_FILE);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, lockContent(false));
    fs.renameSync(tmp, file);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.watchers) w.closed = true;
    this.watchers.clear();
    fs.closeSync(this.logFd);
    if (this.follower) return;
    fs.rmSync(path.join(this.dir, LOCK_FILE), { force: true });
    openDirs.delete(this.dir);
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreError(`NB store ${this.dir} is closed`, { dir: this.dir });
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.follower) {
      throw new StoreError(`NB store ${this.dir} is open read-only (a follower); write through its owner`, {
        dir: this.dir,
      });
    }
  }
}

function conflictMessage(op: string, kind: Kind, key: string, expected: number, actual: number): string {
  const what = `${op} ${kind}/${key}`;
  if (expected === 0) return `${what}: must not exist, but exists at version ${actual}`;
  if (actual === 0) return `${what}: expected version ${expected}, but it does not exist`;
  return `${what}: expected version ${expected}, found ${actual}`;
}

/**
 * Refuse a second writer process: LOCK holds the pid of the live owner (and
 * `serves` on a second line when it will serve the store; the StoreError
 * that refuses the directory carries it as `serves`). LOCK appears with its
 * content already in it (written to a private file, then hard-linked into
 * place, which fails if LOCK exists). A LOCK naming a dead process
 * is stale: it is renamed aside and deleted only if the file moved aside is
 * still the one judged stale; if another process took the directory over in
 * between, its LOCK is linked back instead.
 */
function takeDirLock(dir: string, serves: boolean): void {
  const file = path.join(dir, LOCK_FILE);
  const mine = `${file}.${process.pid}`;
  try {
    fs.writeFileSync(mine, lockContent(serves));
  } catch (err) {
    throw new StoreError(`cannot lock NB data dir ${dir}: ${(err as Error).message}`, { dir });
  }
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        fs.linkSync(mine, file);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
          throw new StoreError(`cannot lock NB data dir ${dir}: ${(err as Error).message}`, { dir });
        }
      }
      const seen = readLock(file);
      if (seen === undefined) continue; // released meanwhile
      const pid = Number.parseInt(seen.trim(), 10);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) {
        throw new StoreError(
          `NB data dir ${dir} is in use by process ${pid}; the embedded store allows one writer process (use etcd for several)`,
          { dir, pid, serves: seen.split("\n")[1] === LOCK_SERVES },
        );
      }
      const aside = `${file}.stale.${process.pid}`;
      try {
        fs.renameSync(file, aside);
      } catch {
        continue; // someone else moved it first
      }
      if (readLock(aside) === seen) {
        log.warn({ dir, stalePid: pid }, "removing stale NB data dir lock");
      } else {
        try {
          fs.linkSync(aside, file);
        } catch {
          // a third process holds LOCK now; the next attempt reads it
        }
      }
      fs.rmSync(aside, { force: true });
    }
  } finally {
    fs.rmSync(mine, { force: true });
  }
  throw new StoreError(`cannot lock NB data dir ${dir}`, { dir });
}

function readLock(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

/** The pid of the live process holding a data directory, or undefined when it is free or its holder died. */
export function dirHolder(dir: string): number | undefined {
  const pid = Number.parseInt(readLock(path.join(dir, LOCK_FILE))?.trim() ?? "", 10);
  return Number.isInteger(pid) && pid > 0 && pidAlive(pid) ? pid : undefined;
}

export async function openEmbeddedStore(dir: string, opts: EmbeddedStoreOptions = {}): Promise<NbStore> {
  return EmbeddedStore.open(dir, opts);
}

/** A read-only follower of an embedded store another process writes. */
export async function followEmbeddedStore(dir: string, opts: EmbeddedStoreOptions = {}): Promise<NbStore> {
  return EmbeddedStore.follow(dir, opts);
}
