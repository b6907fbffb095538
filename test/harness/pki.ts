/**
 * Throw-away certificate authorities for the transport-security tests, made
 * with Debian's `openssl` command (nothing else to install): a CA, then leaf
 * certificates it signs, each a PEM key and certificate in a directory the
 * caller owns (a test's run dir, removed with it).
 *
 *   const ca = makeCa(dir, "etcd-ca");
 *   const server = issueCert(ca, "etcd-server", { ips: ["127.0.0.1"], server: true });
 *   const client = issueCert(ca, "root", { client: true });   // CN = "root"
 *
 * Keys are EC P-256 (fast to make; etcd, gRPC, Node and OVS all accept them).
 * A certificate names its IP addresses and DNS names as subjectAltName — gRPC
 * checks the server's name against them — and its extendedKeyUsage
 * (serverAuth, clientAuth), which etcd's `--client-cert-auth` checks.
 * `ovs-pki` (openvswitch-common) makes OVS's own layout; see
 * test/integration/security-ovs.test.ts.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { FlowdrakeError } from "../../src/util/errors.js";

export interface CertFiles {
  name: string;
  /** PEM private key. */
  key: string;
  /** PEM certificate. */
  cert: string;
}

export interface Ca extends CertFiles {
  dir: string;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync("openssl", args, { cwd, encoding: "utf8" });
  if (r.error) {
    throw new FlowdrakeError(
      "MISSING_COMPONENT",
      `openssl not found: apt-get install openssl (${r.error.message})`,
    );
  }
  if (r.status !== 0) {
    throw new FlowdrakeError("PKI", `openssl ${args[0]} failed: ${r.stderr}`, { args });
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A self-signed CA in `dir` (`<name>-key.pem`, `<name>.pem`). */
export function makeCa(dir: string, name: string): Ca {
  const key = join(dir, `${name}-key.pem`);
  const cert = join(dir, `${name}.pem`);
  openssl(
    [
      "req",
      "-x509",
      ...EC,
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "3",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    dir,
  );
  return { dir, name, key, cert };
}

export interface IssueOptions {
  /** IP subjectAltNames. */
  ips?: string[];
  /** DNS subjectAltNames. */
  dns?: string[];
  server?: boolean;
  client?: boolean;
}

/** A leaf certificate with CN = `name`, signed by `ca`, in the CA's directory. */
export function issueCert(ca: Ca, name: string, opts: IssueOptions = {}): CertFiles {
  const key = join(ca.dir, `${name}-key.pem`);
  const cert = join(ca.dir, `${name}.pem`);
  const csr = join(ca.dir, `${name}.csr`);
  const ext = join(ca.dir, `${name}.ext`);
  openssl(["req", ...EC, "-keyout", key, "-out", csr, "-subj", `/CN=${name}`], ca.dir);
  const usage = [...(opts.server ? ["serverAuth"] : []), ...(opts.client ? ["clientAuth"] : [])];
  const san = [...(opts.ips ?? []).map((ip) => `IP:${ip}`), ...(opts.dns ?? []).map((d) => `DNS:${d}`)];
  const lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"];
  if (usage.length) lines.push(`extendedKeyUsage=${usage.join(",")}`);
  if (san.length) lines.push(`subjectAltName=${san.join(",")}`);
  writeFileSync(ext, `${lines.join("\n")}\n`);
  openssl(
    [
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-CAcreateserial",
      "-out",
      cert,
      "-days",
      "2",
      "-extfile",
      ext,
    ],
    ca.dir,
  );
  return { name, key, cert };
}
