/**
 * CURVE security for the NB pub/sub channel (ZeroMQ's CurveZMQ, RFC 26): the
 * publisher is a CURVE server with a long-term key pair; every subscriber
 * knows the publisher's public key, so it talks only to that publisher, and
 * everything on the wire is encrypted. A subscriber that does not know the
 * key — or speaks plain ZeroMQ — completes no handshake and gets nothing.
 *
 * Clients are authenticated too when the publisher has an authorized-keys
 * list: then a ZAP handler (RFC 27) in the publisher's own ZeroMQ context
 * admits only subscribers whose public key is on it (each agent then has a
 * key pair of its own). Without the list any subscriber that knows the
 * publisher's public key may listen; it still cannot forge or alter what it
 * receives.
 *
 * Keys live in files in czmq's zcert text format, so `zcert`-made files work
 * too: a public file (`public-key = "<Z85>"`, shareable) and a secret file
 * (mode 0600) that holds both keys. `writeKeyPair(prefix)` — behind
 * `flowdrake publisher keygen --out PREFIX` — makes `PREFIX.pub` and
 * `PREFIX.key`. A key file may also be one bare 40-character Z85 key. An
 * authorized-keys list is a file of public keys (one per line, or zcert
 * public files concatenated) or a directory of such files, as czmq's
 * certificate store is. A bad file is a UsageError naming it.
 */
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Context, Reply, curveKeyPair } from "zeromq";
import { UsageError, errorMessage } from "../../util/errors.js";
import { logger } from "../../util/log.js";

const log = logger("nb-curve");

/** A CURVE key pair, both halves as 40-character Z85 text. */
export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

/** What a publisher needs: its key pair and, optionally, the subscribers it admits. */
export interface CurveServer extends CurveKeyPair {
  /** Z85 public keys of the subscribers admitted; absent = any subscriber that knows our public key. */
  authorizedKeys?: ReadonlySet<string>;
}

/** What a subscriber needs: the publisher's public key and a key pair of its own. */
export interface CurveClient extends CurveKeyPair {
  serverKey: string;
}

const Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** Z85-encode (ZeroMQ RFC 32) bytes whose length is a multiple of 4. */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.length % 4) throw new UsageError(`z85: ${bytes.length} bytes is not a multiple of 4`);
  let out = "";
  for (let i = 0; i < bytes.length; i += 4) {
    let v = ((bytes[i]! << 24) >>> 0) + (bytes[i + 1]! << 16) + (bytes[i + 2]! << 8) + bytes[i + 3]!;
    const chunk: string[] = [];
    for (let j = 0; j < 5; j++) {
      chunk.unshift(Z85[v % 85]!);
      v = Math.floor(v / 85);
    }
    out += chunk.join("");
  }
  return out;
}

export function isZ85Key(s: string): boolean {
  return Z85_KEY.test(s);
}

/** A fresh key pair (libsodium through libzmq). */
export function generateKeyPair(): CurveKeyPair {
  return curveKeyPair();
}

function header(kind: string, lines: string[]): string {
  return [
    `#   ****  Generated on ${new Date().toISOString()} by flowdrake  ****`,
    `#   ZeroMQ CURVE ${kind}`,
    ...lines.map((l) => `#   ${l}`),
    "",
    "metadata",
    "curve",
  ].join("\n");
}

/** The two files of a key pair in zcert format: public (shareable) and secret. */
export function formatKeyPair(kp: CurveKeyPair): { pub: string; secret: string } {
  return {
    pub: `${header("Public Certificate", ["Give this file to the peers that must recognise this key."])}\n    public-key = "${kp.publicKey}"\n`,
    secret:
      `${header("**Secret** Certificate", ["DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."])}\n` +
      `    public-key = "${kp.publicKey}"\n    secret-key = "${kp.secretKey}"\n`,
  };
}

/** Write PREFIX.pub and PREFIX.key (mode 0600); never overwrites unless `force`. */
export function writeKeyPair(
  prefix: string,
  kp: CurveKeyPair = generateKeyPair(),
  opts: { force?: boolean } = {},
): { pub: string; key: string; publicKey: string } {
  const files = formatKeyPair(kp);
  const pub = `${prefix}.pub`;
  const key = `${prefix}.key`;
  const flag = opts.force ? "w" : "wx";
  try {
    writeFileSync(key, files.secret, { mode: 0o600, flag });
    writeFileSync(pub, files.pub, { mode: 0o644, flag });
  } catch (err) {
    throw new UsageError(`cannot write the key pair ${prefix}.{pub,key}: ${errorMessage(err)}`, { prefix });
  }
  return { pub, key, publicKey: kp.publicKey };
}

/** Every public and secret key in a text (zcert lines, or bare Z85 keys). */
function parseKeys(text: string, path: string): { publicKeys: string[]; secretKey?: string } {
  const publicKeys: string[] = [];
  let secretKey: string | undefined;
  for (const [n, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line === "metadata" || line === "curve") continue;
    const m = /^(public|secret)-key\s*=\s*"?([^"]*)"?$/.exec(line);
    const [which, key] = m ? [m[1], m[2]!] : ["public", line];
    if (!m && /^[a-z-]+\s*=/.test(line)) continue; // other zcert metadata
    if (!isZ85Key(key)) {
      throw new UsageError(`${path}:${n + 1}: not a 40-character Z85 CURVE key`, { path, line: n + 1 });
    }
    if (which === "secret") secretKey = key;
    else publicKeys.push(key);
  }
  return { publicKeys, secretKey };
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read the ${what} ${path}: ${errorMessage(err)}`, { path });
  }
}

/** A public key file (or the public half of a secret one). */
export function readPublicKey(path: string): string {
  const { publicKeys } = parseKeys(readText(path, "CURVE public key"), path);
  if (publicKeys.length !== 1) {
    throw new UsageError(`${path}: expected one CURVE public key, found ${publicKeys.length}`, { path });
  }
  return publicKeys[0]!;
}

/** A secret key file: both keys (`flowdrake publisher keygen`'s PREFIX.key). */
export function readKeyPair(path: string): CurveKeyPair {
  const { publicKeys, secretKey } = parseKeys(readText(path, "CURVE secret key"), path);
  if (!secretKey || publicKeys.length !== 1) {
    throw new UsageError(`${path}: not a CURVE secret key file (needs public-key and secret-key lines)`, {
      path,
    });
  }
  try {
    if (statSync(path).mode & 0o077) {
      log.warn({ path }, "CURVE secret key file is readable by others: chmod 600 it");
    }
  } catch {
    // read above; a race is harmless
  }
  return { publicKey: publicKeys[0]!, secretKey };
}

/** An authorized-keys list: a file of public keys, or a directory of public key files. */
export function readAuthorizedKeys(path: string): Set<string> {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch (err) {
    throw new UsageError(`cannot read the CURVE authorized keys ${path}: ${errorMessage(err)}`, { path });
  }
  const keys = new Set<string>();
  const files = isDir
    ? readdirSync(path)
        .filter((f) => !f.startsWith(".") && !f.endsWith(".key"))
        .map((f) => join(path, f))
    : [path];
  for (const f of files) {
    for (const k of parseKeys(readText(f, "CURVE authorized keys"), f).publicKeys) keys.add(k);
  }
  if (keys.size === 0) throw new UsageError(`${path}: no CURVE public keys in it`, { path });
  return keys;
}

/** The publisher's CURVE settings from its files; undefined when no key file is given. */
export function loadCurveServer(keyFile?: string, authorizedKeysPath?: string): CurveServer | undefined {
  if (!keyFile) {
    if (authorizedKeysPath) throw new UsageError("CURVE authorized keys need the publisher's own key pair");
    return undefined;
  }
  return {
    ...readKeyPair(keyFile),
    ...(authorizedKeysPath ? { authorizedKeys: readAuthorizedKeys(authorizedKeysPath) } : {}),
  };
}

/**
 * A subscriber's CURVE settings from its files; undefined when the
 * publisher's public key is not given. Without a key file of its own the
 * subscriber uses a fresh key pair (enough unless the publisher has an
 * authorized-keys list).
 */
export function loadCurveClient(serverKeyFile?: string, keyFile?: string): CurveClient | undefined {
  if (!serverKeyFile) {
    if (keyFile)
      throw new UsageError("a CURVE key pair for the subscriber needs the publisher's public key too");
    return undefined;
  }
  return { serverKey: readPublicKey(serverKeyFile), ...(keyFile ? readKeyPair(keyFile) : generateKeyPair()) };
}

const ZAP_ENDPOINT = "inproc://zeromq.zap.01";

/**
 * A ZAP handler admitting only CURVE clients whose public key is listed. It
 * lives in the context it is given (the publisher's own), so other sockets of
 * the process are not affected. Refusals are logged once per peer address and
 * key, and counted.
 */
export class ZapHandler {
  private readonly sock: Reply;
  private loop: Promise<void> | undefined;
  private readonly logged = new Set<string>();
  readonly stats = { admitted: 0, refused: 0 };

  private constructor(
    context: Context,
    private readonly keys: ReadonlySet<string>,
  ) {
    this.sock = new Reply({ context, linger: 0 });
  }

  static async start(context: Context, keys: ReadonlySet<string>): Promise<ZapHandler> {
    const h = new ZapHandler(context, keys);
    try {
      await h.sock.bind(ZAP_ENDPOINT);
    } catch (err) {
      h.sock.close();
      throw err;
    }
    h.loop = h.serve();
    return h;
  }

  private async serve(): Promise<void> {
    try {
      for await (const frames of this.sock) {
        const [version, requestId, , address, , mechanism, credential] = frames;
        const key = credential && credential.length === 32 ? z85Encode(credential) : undefined;
        const ok = mechanism?.toString() === "CURVE" && key !== undefined && this.keys.has(key);
        if (ok) this.stats.admitted++;
        else {
          this.stats.refused++;
          const who = `${address?.toString() ?? "?"} ${key ?? mechanism?.toString() ?? "?"}`;
          if (this.logged.size < 1000 && !this.logged.has(who)) {
            this.logged.add(who);
            log.warn(
              { address: address?.toString(), publicKey: key },
              "subscriber refused: its CURVE key is not in the authorized keys",
            );
          }
        }
        await this.sock.send([
          version ?? "1.0",
          requestId ?? "",
          ok ? "200" : "400",
          ok ? "OK" : "key not authorized",
          ok ? key! : "",
          "",
        ]);
      }
    } catch (err) {
      if (!this.sock.closed) log.error({ err: errorMessage(err) }, "ZAP handler failed");
    }
  }

  async close(): Promise<void> {
    this.sock.close();
    await this.loop?.catch(() => undefined);
  }
}
