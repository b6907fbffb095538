/**
 * CURVE on the NB pub/sub channel, with real ZeroMQ sockets on 127.0.0.1 and
 * a real embedded store behind the publisher:
 *   - a subscriber with the publisher's public key gets the changes, and the
 *     bytes on the wire (seen by a TCP relay in between) do not contain them
 *     — the same relay does see them in clear without CURVE;
 *   - a subscriber without keys, and one with a wrong server key, get
 *     nothing while the good one is served; both sides count the failed
 *     handshakes;
 *   - with an authorized-keys list only listed subscribers get anything (the
 *     ZAP handler counts the refusal);
 *   - key files: keygen's pair reads back, a bad file names itself.
 * "Gets nothing" is established against a subscriber that shares the same
 * publisher and did get the change — never by waiting a while.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curveKeyPair } from "zeromq";
import {
  type CurveClient,
  generateKeyPair,
  loadCurveClient,
  loadCurveServer,
  readAuthorizedKeys,
  readKeyPair,
  readPublicKey,
  writeKeyPair,
  z85Encode,
} from "../../src/nb/pubsub/curve.js";
import { networkTopic, type ChangeMessage } from "../../src/nb/pubsub/message.js";
import { NbPublisher } from "../../src/nb/pubsub/publisher.js";
import { NbSubscriber } from "../../src/nb/pubsub/subscriber.js";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { KIND } from "../../src/nb/sync/refs.js";
import { UsageError } from "../../src/util/errors.js";
import { Cleanup, freeTcpPort, makeRunDir, waitFor } from "../harness/index.js";

const cleanup = new Cleanup();
let dir: string;
let store: NbStore;

beforeAll(async () => {
  dir = makeRunDir("sec-pubsub");
  cleanup.add("run dir", () => rmSync(dir, { recursive: true, force: true }));
  store = await EmbeddedStore.open(join(dir, "nb"));
  cleanup.add("store", () => store.close());
});
afterAll(() => cleanup.run());

/** A TCP relay that records what the publisher sends. */
async function relay(target: number): Promise<{ port: number; seen: () => Buffer; server: Server }> {
  const chunks: Buffer[] = [];
  const socks = new Set<Socket>();
  const server = createServer((client) => {
    const up = createConnection(target, "127.0.0.1");
    socks.add(client).add(up);
    up.on("data", (d: Buffer) => chunks.push(Buffer.from(d)));
    client.pipe(up);
    up.pipe(client);
    const end = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
  });
  const port = await freeTcpPort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  cleanup.add("relay", async () => {
    for (const s of socks) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return { port, seen: () => Buffer.concat(chunks), server };
}

interface Listener {
  sub: NbSubscriber;
  got: ChangeMessage[];
}

function listen(endpoint: string, curve?: CurveClient): Listener {
  const got: ChangeMessage[] = [];
  const sub = NbSubscriber.connect(
    endpoint,
    { onChange: (m) => got.push(m), onResync: () => undefined },
    curve ? { curve } : {},
  );
  sub.subscribe(networkTopic("sec1"));
  cleanup.add("subscriber", () => sub.close());
  return { sub, got };
}

async function putNetwork(name: string): Promise<number> {
  const cur = await store.get(KIND.network, "sec1");
  const r = await store.txn([
    {
      op: "put",
      kind: KIND.network,
      key: "sec1",
      value: { id: "sec1", name, type: "geneve", segmentationId: 77, mtu: 1442, tenantId: "t1" },
      expectVersion: cur?.version ?? 0,
    },
  ]);
  return r.versions[0]!;
}

const has = (l: Listener, name: string): boolean =>
  l.got.some((m) => (m.value as { name?: string } | undefined)?.name === name);

describe("key files", () => {
  it("keygen writes a pair that reads back, the secret half mode 0600", () => {
    const kp = generateKeyPair();
    const r = writeKeyPair(join(dir, "pub1"), kp);
    expect(statSync(r.key).mode & 0o777).toBe(0o600);
    expect(readKeyPair(r.key)).toEqual(kp);
    expect(readPublicKey(r.pub)).toBe(kp.publicKey);
    expect(readPublicKey(r.key)).toBe(kp.publicKey);
    expect(() => writeKeyPair(join(dir, "pub1"))).toThrow(/EEXIST/);
    expect(loadCurveServer(r.key)).toEqual(kp);
    const client = loadCurveClient(r.pub);
    expect(client?.serverKey).toBe(kp.publicKey);
    expect(client?.secretKey).toMatch(/^.{40}$/);
  });

  it("refuses a public file as a secret key, and a malformed key, naming the file", () => {
    const r = writeKeyPair(join(dir, "pub2"));
    expect(() => readKeyPair(r.pub)).toThrow(UsageError);
    expect(() => readKeyPair(r.pub)).toThrow(/pub2\.pub: not a CURVE secret key file/);
    writeFileSync(join(dir, "bad.pub"), 'public-key = "tooshort"\n');
    expect(() => readPublicKey(join(dir, "bad.pub"))).toThrow(/bad\.pub:1: not a 40-character Z85/);
    expect(() => loadCurveServer(undefined, join(dir, "bad.pub"))).toThrow(
      /need the publisher's own key pair/,
    );
  });

  it("authorized keys come from a file of bare keys or a directory of .pub files", () => {
    const a = curveKeyPair();
    const b = curveKeyPair();
    writeFileSync(join(dir, "authorized"), `# agents\n${a.publicKey}\n\n${b.publicKey}\n`);
    expect(readAuthorizedKeys(join(dir, "authorized"))).toEqual(new Set([a.publicKey, b.publicKey]));
    mkdirSync(join(dir, "agents"));
    writeKeyPair(join(dir, "agents", "host1"), a);
    writeKeyPair(join(dir, "agents", "host2"), b);
    // the secret halves in the directory are skipped, the public ones read
    expect(readAuthorizedKeys(join(dir, "agents"))).toEqual(new Set([a.publicKey, b.publicKey]));
  });

  it("z85Encode is ZeroMQ's Z85 (RFC 32 test vector)", () => {
    const v = Uint8Array.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]);
    expect(z85Encode(v)).toBe("HelloWorld");
  });
});

describe("CURVE between publisher and subscribers", () => {
  it("encrypts: the good subscriber gets the change, the wire does not show it, bad subscribers get nothing", async () => {
    const server = generateKeyPair();
    const port = await freeTcpPort();
    const bind = `tcp://127.0.0.1:${port}`;
    const pub = await NbPublisher.start({ store, bind, heartbeatMs: 50, curve: server });
    cleanup.add("pub", () => pub.close());
    const wire = await relay(port);
    const good = listen(`tcp://127.0.0.1:${wire.port}`, {
      serverKey: server.publicKey,
      ...generateKeyPair(),
    });
    const plain = listen(bind);
    const wrongKey = listen(bind, { serverKey: generateKeyPair().publicKey, ...generateKeyPair() });
    await waitFor(() => good.sub.publisherId === pub.id, 10_000, "the good subscriber hears heartbeats");
    const secret = `secret-${randomBytes(6).toString("hex")}`;
    await putNetwork(secret);
    await waitFor(() => has(good, secret), 10_000, "the change reaches the good subscriber");
    await waitFor(
      () => plain.sub.stats.handshakeFailures > 0 || pub.handshakeFailures > 0,
      10_000,
      "the plain subscriber's handshake fails",
    );
    await waitFor(() => wrongKey.sub.stats.handshakeFailures > 0, 10_000, "the wrong-key handshake fails");
    expect(plain.got).toEqual([]);
    expect(plain.sub.publisherId).toBeUndefined();
    expect(plain.sub.stats.received).toBe(0);
    expect(wrongKey.got).toEqual([]);
    expect(wrongKey.sub.publisherId).toBeUndefined();
    expect(wrongKey.sub.stats.received).toBe(0);
    expect(wire.seen().length).toBeGreaterThan(200);
    expect(wire.seen().includes(secret)).toBe(false);
    expect(wire.seen().includes("n/sec1/")).toBe(false);
    await pub.close();
  });

  it("without CURVE the same relay sees the change in clear (the check above can fail)", async () => {
    const port = await freeTcpPort();
    const pub = await NbPublisher.start({ store, bind: `tcp://127.0.0.1:${port}`, heartbeatMs: 50 });
    cleanup.add("pub plain", () => pub.close());
    const wire = await relay(port);
    const l = listen(`tcp://127.0.0.1:${wire.port}`);
    await waitFor(() => l.sub.publisherId === pub.id, 10_000, "heartbeats");
    const name = `clear-${randomBytes(6).toString("hex")}`;
    await putNetwork(name);
    await waitFor(() => has(l, name), 10_000, "the change");
    expect(wire.seen().includes(name)).toBe(true);
    await pub.close();
  });

  it("with authorized keys only listed subscribers get anything", async () => {
    const server = generateKeyPair();
    const agentA = generateKeyPair();
    const stranger = generateKeyPair();
    const keysFile = join(dir, "authorized-a");
    writeFileSync(keysFile, `${agentA.publicKey}\n`);
    const bind = `tcp://127.0.0.1:${await freeTcpPort()}`;
    const pub = await NbPublisher.start({
      store,
      bind,
      heartbeatMs: 50,
      curve: { ...server, authorizedKeys: readAuthorizedKeys(keysFile) },
    });
    cleanup.add("pub zap", () => pub.close());
    const a = listen(bind, { serverKey: server.publicKey, ...agentA });
    const s = listen(bind, { serverKey: server.publicKey, ...stranger });
    await waitFor(() => a.sub.publisherId === pub.id, 10_000, "the authorized agent hears heartbeats");
    const name = `zap-${randomBytes(6).toString("hex")}`;
    await putNetwork(name);
    await waitFor(() => has(a, name), 10_000, "the change reaches the authorized agent");
    await waitFor(() => pub.handshakeFailures > 0, 10_000, "the stranger's handshake is refused");
    expect(s.got).toEqual([]);
    expect(s.sub.stats.received).toBe(0);
    expect(s.sub.publisherId).toBeUndefined();
    await pub.close();
  });
});
