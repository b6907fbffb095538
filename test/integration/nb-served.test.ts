/**
 * The embedded NB store while another process holds it (issue 9, item 8): a
 * child `node` process opens `embedded:DIR` as the agent does and serves it on
 * DIR/nb.sock; this process and the real CLI binary (`node
 * dist/src/cli/main.js nb …`) use it through the socket.
 *
 *   - the NB conformance suite passes against the served driver;
 *   - the socket is 0600: another user (nobody) is refused, exit 5;
 *   - the CLI creates, lists, shows, updates by CAS (stale --version → exit 4),
 *     deletes and applies a topology file, with the holder still holding the
 *     directory; a read-only follower keeps working beside it;
 *   - a watch through the socket sees a change another client (the CLI) made;
 *   - a client killed with SIGKILL loses its lock at once and its lease after
 *     the lease's ttl;
 *   - the holder killed with SIGKILL: a call in flight fails with a StoreError
 *     instead of hanging, the next CLI takes the directory over (stale LOCK and
 *     socket), a new holder serves again and an open watch resumes without gaps;
 *   - a holder that does not serve (an older flowdrake) still makes `nb` exit 5
 *     naming its pid;
 *   - a holder between taking the directory and serving it (it says so in
 *     LOCK) is waited for: `nb` started then runs as its client once it
 *     serves, 8 s later, where it used to give up after 3 s;
 *   - a holder that cannot serve (its socket path too long) logs why, keeps
 *     the store in-process and takes the intent out of LOCK, so `nb` is
 *     refused after the 3 s wait, naming it.
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dirHolder } from "../../src/nb/store/embedded.js";
import { LockTimeoutError, StoreError } from "../../src/nb/store/errors.js";
import { openStore } from "../../src/nb/store/open.js";
import { ServedStoreClient } from "../../src/nb/store/served.js";
import type { NbStore, WatchEvent } from "../../src/nb/store/types.js";
import { Cleanup, makeRunDir, waitFor } from "../harness/index.js";
import {
  distModule,
  runNodeScript,
  startNbHolder,
  type NbHolder,
  type NodeScript,
} from "../harness/nb-holder.js";
import { runStoreConformance } from "../harness/nb-conformance.js";

const ROOT = join(import.meta.dirname, "..", "..");
const MAIN = join(ROOT, "dist", "src", "cli", "main.js");
const EXAMPLE = join(ROOT, "examples", "topology.yaml");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function nbAt(dir: string, ...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, "nb", ...args, "--db", `embedded:${dir}`],
      { cwd: ROOT, env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "silent" }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function openClient(dir: string): Promise<ServedStoreClient> {
  const s = await openStore(`embedded:${dir}`);
  if (!(s instanceof ServedStoreClient)) {
    await s.close();
    throw new Error(`openStore(embedded:${dir}) opened the store in-process: nobody served it`);
  }
  return s;
}

const cleanup = new Cleanup();
const holders: (NbHolder | NodeScript)[] = [];
const clients: NbStore[] = [];
let runDir: string;
let confDir: string;

function track<T extends NbHolder | NodeScript>(h: T): T {
  holders.push(h);
  return h;
}

beforeAll(async () => {
  runDir = makeRunDir("nb-served");
  cleanup.add(`rm ${runDir}`, () => rmSync(runDir, { recursive: true, force: true }));
  const build = await new Promise<Result>((resolve) => {
    execFile(
      "npx",
      ["tsc", "-p", "tsconfig.build.json"],
      { cwd: ROOT, timeout: 280_000 },
      (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
    );
  });
  // Type errors elsewhere in the tree do not stop tsc from emitting; a missing output does.
  const served = join(ROOT, "dist", "src", "nb", "store", "served.js");
  expect(existsSync(served) && readFileSync(served, "utf8"), build.stdout).toContain("flowdrake-nb/1");
  confDir = join(runDir, "conf");
  track(await startNbHolder(confDir));
}, 300_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  for (const h of holders) {
    h.kill("SIGKILL");
    await h.exited;
  }
  await cleanup.run();
});

runStoreConformance("embedded, served by another process on DIR/nb.sock", () => openClient(confDir));

describe("flowdrake nb while another process holds the embedded store", { timeout: 240_000 }, () => {
  let dir: string;
  let holder: NbHolder;
  const nb = (...args: string[]): Promise<Result> => nbAt(dir, ...args);
  const json = async (...args: string[]): Promise<Record<string, unknown>> => {
    const r = await nb(...args, "--json");
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  beforeAll(async () => {
    dir = join(runDir, "db");
    holder = track(await startNbHolder(dir));
  });

  it("serves DIR/nb.sock to its own user only, and keeps holding the directory", () => {
    const st = statSync(join(dir, "nb.sock"));
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(dirHolder(dir)).toBe(holder.pid);
  });

  it("refuses another user at the socket: nb exits 5 saying so", async () => {
    if (process.getuid?.() !== 0) throw new Error("this test runs the CLI as user nobody: run it as root");
    // nobody may not be able to enter the directories above the checkout: in a mount namespace of
    // its own, the checkout is bind-mounted where anyone may enter (its own mode still applies)
    if ((statSync(ROOT).mode & 0o005) !== 0o005) {
      throw new Error(
        `user nobody cannot enter ${ROOT}: this test runs the CLI as another user, and the checkout's own ` +
          "directory is its owner's alone (as `git clone . $(mktemp -d)` leaves it): chmod 755 it",
      );
    }
    const at = mkdtempSync(join(tmpdir(), "fd-nobody-"));
    chmodSync(at, 0o755);
    const script = 'mount --bind "$1" "$2" && shift 2 && exec runuser -u nobody -- "$@"';
    const r = await new Promise<Result>((resolve) => {
      execFile(
        "unshare",
        [
          "--mount",
          "--propagation",
          "private",
          "--",
          "sh",
          "-c",
          script,
          "sh",
          ROOT,
          at,
          process.execPath,
          join(at, relative(ROOT, MAIN)),
          "nb",
          "network",
          "list",
          "--db",
          `embedded:${dir}`,
        ],
        { cwd: "/", env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "silent" }, timeout: 60_000 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
    rmdirSync(at); // empty again: the mount went with its namespace
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({
      code: 5,
      stderr: expect.stringMatching(/nb\.sock: permission denied \(it serves only its own user/),
    });
    expect(dirHolder(dir)).toBe(holder.pid);
  });

  it("creates, lists, shows, updates by CAS, deletes and applies through the holder", async () => {
    let r = await nb("tenant", "create", "t1", "--name", "team one");
    expect(r.code, r.stderr).toBe(0);
    r = await nb(
      "network",
      "create",
      "net1",
      "--type",
      "geneve",
      "--segmentation-id",
      "100",
      "--tenant",
      "t1",
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^network net1 {2}\(version 1\)\n/);
    r = await nb("network", "list");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\nnet1 /);
    expect(await json("network", "show", "net1")).toMatchObject({ key: "net1", version: 1 });

    r = await nb("network", "update", "net1", "--mtu", "1400", "--version", "1");
    expect(r.code, r.stderr).toBe(0);
    r = await nb("network", "update", "net1", "--mtu", "1300", "--version", "1");
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({
      code: 4,
      stderr: expect.stringMatching(/conflict/),
    });
    expect(await json("network", "show", "net1")).toMatchObject({ version: 2, value: { mtu: 1400 } });
    r = await nb("network", "create", "net2", "--tenant", "t1", "--mtu", "9999");
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/network net2: mtu: must be at most 9216/),
    });
    r = await nb("network", "create", "net1", "--tenant", "t1");
    expect(r.code, r.stderr).toBe(4);

    r = await nb("secgroup", "create", "sg1", "--tenant", "t1");
    expect(r.code, r.stderr).toBe(0);
    r = await nb("secgroup", "show", "sg1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^secgroup sg1 /);

    r = await nb("apply", "-f", EXAMPLE);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\+ network net-a$/m);
    expect(r.stdout).toMatch(/^\+ port vm3$/m);
    r = await nb("apply", "-f", EXAMPLE);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("no changes");

    r = await nb("network", "delete", "net1", "--version", "1");
    expect(r.code, r.stderr).toBe(4);
    r = await nb("network", "delete", "net1", "--version", "2");
    expect(r.code, r.stderr).toBe(0);
    r = await nb("network", "show", "net1");
    expect(r.code, r.stderr).toBe(3);

    // the holder never let go, and its own view has every change
    expect(dirHolder(dir)).toBe(holder.pid);
    const client = await openClient(dir);
    try {
      expect(client.serverPid).toBe(holder.pid);
      expect((await client.list("lswitch")).map((o) => o.key)).toEqual(["net-a", "net-b"]);
      expect((await client.get("lport", "vm1"))?.version).toBe(1);
    } finally {
      await client.close();
    }
    // a read-only follower (how `flowdrake publisher` opens it) still tails the holder's log
    const follower = await openStore(`embedded:${dir}`, { readOnly: true });
    try {
      expect((await follower.list("lswitch")).map((o) => o.key)).toEqual(["net-a", "net-b"]);
    } finally {
      await follower.close();
    }
  });

  it("a watch through the socket sees a change made by another client", async () => {
    const client = await openClient(dir);
    clients.push(client);
    const events: WatchEvent[] = [];
    const w = await client.watch({ kinds: ["secgroup"] }, (ev) => events.push(ev));
    const r = await nb("secgroup", "create", "sg-watched", "--tenant", "t1");
    expect(r.code, r.stderr).toBe(0);
    await waitFor(() => events.length >= 1, 10_000, "the CLI's secgroup create as a watch event");
    await w.close();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      type: "put",
      object: { kind: "secgroup", key: "sg-watched", version: 1 },
    });
  });

  it("releases a killed client's lock at once; its lease expires after the ttl", async () => {
    const code = `import { openStore } from ${distModule("src/nb/store/open.js")};
const store = await openStore("embedded:" + process.argv[2]);
setInterval(() => undefined, 1 << 30);
const lease = await store.grantLease(4);
await store.txn([{ op: "put", kind: "liveness", key: "child", value: {}, lease: lease.id }]);
void store.withLock("held-by-child", async () => {
  console.log(JSON.stringify({ event: "locked", lease: lease.id, client: store.constructor.name }));
  await new Promise(() => undefined);
});
`;
    const child = runNodeScript("nb-served-client", code, [dir]);
    const locked = await child.waitEvent("locked");
    expect(locked.client).toBe("ServedStoreClient");
    const client = await openClient(dir);
    clients.push(client);
    await expect(
      client.withLock("held-by-child", async () => "stolen", { timeoutMs: 300 }),
    ).rejects.toBeInstanceOf(LockTimeoutError);
    expect(await client.get("liveness", "child")).toBeDefined();

    child.kill("SIGKILL");
    expect((await child.exited).signal).toBe("SIGKILL");
    // the lock went with the connection; without that release this would time out
    expect(await client.withLock("held-by-child", async () => "mine", { timeoutMs: 5_000 })).toBe("mine");
    // the lease was refreshed at most ttl/3 ago: it outlives its client for a while, then expires
    expect(await client.get("liveness", "child")).toBeDefined();
    await waitFor(async () => (await client.get("liveness", "child")) === undefined, 15_000, "lease expiry");
  });

  it("a holder killed with SIGKILL: calls in flight fail, the CLI takes over, a new holder serves and a watch resumes", async () => {
    const client = await openClient(dir);
    clients.push(client);
    const seen: WatchEvent[] = [];
    await client.watch({ kinds: ["lswitch"] }, (ev) => seen.push(ev));
    let release!: () => void;
    const held = client.withLock("tenant/demo", () => new Promise<void>((r) => (release = r)));
    await waitFor(() => release !== undefined, 10_000, "lock held");
    // a second waiter on the same lock: in flight at the server when it dies
    const waiting = client
      .withLock("tenant/demo", async () => "never", { timeoutMs: 120_000 })
      .catch((e: unknown) => e);

    const started = Date.now();
    holder.kill("SIGKILL");
    expect((await holder.exited).signal).toBe("SIGKILL");
    const err = await waiting;
    expect(err).toBeInstanceOf(StoreError);
    expect((err as Error).message).toMatch(/went away/);
    expect(Date.now() - started).toBeLessThan(10_000);
    release();
    await held;
    await expect(client.list("lswitch")).rejects.toBeInstanceOf(StoreError);

    // the dead holder left its pid in LOCK and its socket file: the next CLI takes the directory over
    expect(existsSync(join(dir, "nb.sock"))).toBe(true);
    expect(dirHolder(dir)).toBeUndefined();
    let r = await nb("network", "list");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\nnet-a /);
    r = await nb("network", "create", "net-offline", "--tenant", "t1");
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(dir, "nb.sock"))).toBe(false);

    holder = track(await startNbHolder(dir));
    r = await nb("network", "create", "net-later", "--tenant", "t1");
    expect(r.code, r.stderr).toBe(0);
    await waitFor(
      () => seen.some((e) => e.type === "put" && e.object.key === "net-later"),
      20_000,
      "resumed watch",
    );
    const keys = seen.map((e) => (e.type === "put" ? e.object.key : e.key));
    expect(keys).toEqual(["net-offline", "net-later"]);
    const revs = seen.map((e) => e.revision);
    expect([...revs].sort((a, b) => a - b)).toEqual(revs);
    expect(new Set(revs).size).toBe(revs.length);
    // ordinary calls reconnect too
    expect((await client.list("lswitch")).map((o) => o.key)).toEqual([
      "net-a",
      "net-b",
      "net-later",
      "net-offline",
    ]);
    expect(client.serverPid).toBe(holder.pid);
  });

  it("exits 5 naming the pid when the holder does not serve the directory (an older flowdrake)", async () => {
    const old = track(await startNbHolder(join(runDir, "old"), { serve: false }));
    const r = await nbAt(join(runDir, "old"), "network", "list");
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toMatch(
      new RegExp(`flowdrake nb: NB data dir .* is in use by process ${old.pid}, which does not serve it`),
    );
    await old.stop();
    const again = await nbAt(join(runDir, "old"), "network", "list");
    expect(again.code, again.stderr).toBe(0);
  });
});

describe("a holder between taking the directory and serving it", { timeout: 120_000 }, () => {
  it("is waited for: nb started meanwhile runs as its client once it serves", async () => {
    const dir = join(runDir, "late");
    // what an agent does in openStore(…, { serve: true }), with 8 s between the LOCK and nb.sock
    // (a long log replay on a loaded machine)
    const late = track(
      runNodeScript(
        "nb-late-holder",
        `import { EmbeddedStore } from ${distModule("src/nb/store/embedded.js")};
import { serveStore, socketPathFor } from ${distModule("src/nb/store/served.js")};
const store = await EmbeddedStore.open(process.argv[2], { serves: true });
console.log(JSON.stringify({ event: "locked" }));
await new Promise((r) => setTimeout(r, 8000));
await serveStore(store, socketPathFor(store.dir), { dir: store.dir });
console.log(JSON.stringify({ event: "serving" }));
setInterval(() => undefined, 1 << 30);
`,
        [dir],
      ),
    );
    await late.waitEvent("locked");
    expect(readFileSync(join(dir, "LOCK"), "utf8")).toBe(`${late.pid}\nserves\n`);
    const r = await nbAt(dir, "network", "create", "net-late", "--tenant", "t1");
    expect(r.code, r.stderr).toBe(0);
    expect(late.events.map((e) => e.event)).toContain("serving");
    // the create went through the holder: it still holds the directory, and has the network
    expect(dirHolder(dir)).toBe(late.pid);
    const c = await openClient(dir);
    clients.push(c);
    expect(c.serverPid).toBe(late.pid);
    expect((await c.list("lswitch")).map((o) => o.key)).toEqual(["net-late"]);
  });

  it("a holder that cannot serve takes the intent out of LOCK: nb is refused after 3 s, naming it", async () => {
    // DIR/nb.sock longer than a unix socket path may be
    const dir = join(runDir, "n".repeat(110));
    const h = track(
      runNodeScript(
        "nb-noserve-holder",
        `import { openStore } from ${distModule("src/nb/store/open.js")};
const store = await openStore("embedded:" + process.argv[2], { serve: true });
console.log(JSON.stringify({ event: "ready", store: store.constructor.name }));
setInterval(() => undefined, 1 << 30);
`,
        [dir],
      ),
    );
    const ready = await h.waitEvent("ready");
    expect(ready.store).toBe("EmbeddedStore");
    // the warning, on the holder's log (stderr)
    await waitFor(() => h.stderr().includes("cannot serve the embedded NB store"), 10_000, "the warning");
    expect(h.stderr()).toContain("unix socket path is limited to");
    expect(readFileSync(join(dir, "LOCK"), "utf8")).toBe(`${h.pid}\n`);
    const t0 = Date.now();
    const r = await nbAt(dir, "network", "list");
    expect(r.code, r.stderr).toBe(5);
    expect(r.stderr).toMatch(new RegExp(`in use by process ${h.pid}, which does not serve it`));
    // refused after the 3 s a holder that will not serve gets, not the 30 s of one that said it would
    expect(Date.now() - t0).toBeLessThan(20_000);
  });
});
