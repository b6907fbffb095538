/**
 * SSL towards Open vSwitch, the way OVS itself does it, for `ssl:HOST:PORT`
 * remotes of both OVSDB (src/ovsdb/jsonrpc.ts) and OpenFlow
 * (src/openflow/client.ts). OVS configures SSL with three files — its
 * `--private-key`, `--certificate` and `--ca-cert` options, or `ovs-vsctl
 * set-ssl` — and flowdrake takes the same three:
 *
 *   privateKey    our key (PEM)
 *   certificate   our certificate, signed by the CA the switch trusts for
 *                 controllers/managers (ovs-pki: controllerca)
 *   caCert        the CA that signed the switch's certificate (ovs-pki:
 *                 switchca/cacert.pem)
 *
 * Like OVS, both sides present a certificate and each verifies the other's
 * chain against its CA; like OVS, no host name is checked (OVS certificates
 * name no host: trust is "signed by this CA"). TLS 1.2 is the minimum, as in
 * OVS's default `ssl-protocols`. The files are read on every connect, so a
 * reconnect picks up renewed certificates; one that cannot be read is a
 * UsageError naming it. A failed handshake is a ConnectionError that says
 * which side refused: the switch our certificate, or we the switch's.
 */
import { readFileSync } from "node:fs";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { ConnectionError, UsageError, errorMessage } from "./errors.js";

/** OVS's SSL options (`--private-key`, `--certificate`, `--ca-cert`), as file paths. */
export interface SslFiles {
  privateKey: string;
  certificate: string;
  caCert: string;
}

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`cannot read the SSL ${what} ${path}: ${errorMessage(err)}`, { path });
  }
}

/** OpenSSL's error text without its hex error code and source location. */
function tidy(message: string): string {
  return message
    .replace(/[0-9A-F]{8,}:error:[0-9A-F]+:SSL routines:[^:]*:/g, "")
    .replace(/:[^:\s]*\.c:\d+:(SSL alert number \d+)/g, " ($1)")
    .replace(/\s+/g, " ")
    .trim();
}

/**
 * What a failed handshake means, in OVS's terms. With TLS 1.3 the peer
 * checks our certificate after our side of the handshake is done, so its
 * refusal can also arrive as the first error on an established connection.
 */
export function describeSslFailure(err: unknown): string {
  const m = tidy(errorMessage(err));
  if (/alert (bad certificate|unknown ca|certificate required|certificate unknown|access denied)/i.test(m)) {
    return `the peer refused our certificate (not signed by the CA it trusts for controllers/managers): ${m}`;
  }
  if (
    /unable to verify|unable to get (local )?issuer|self[- ]signed certificate|certificate has expired|not yet valid|UNABLE_TO_VERIFY|DEPTH_ZERO|SELF_SIGNED/i.test(
      m,
    )
  ) {
    return `the peer's certificate is not signed by our caCert: ${m}`;
  }
  return m;
}

/** Whether an error is the peer refusing our certificate, or we refusing the peer's. */
export function isSslRefusal(err: unknown): boolean {
  return describeSslFailure(err).startsWith("the peer");
}

/**
 * Open a TLS connection to an OVS `pssl:` listener and finish the handshake.
 * `label` names the remote in errors; `timeoutMs` bounds connect + handshake.
 */
export function connectSsl(
  host: string,
  port: number,
  files: SslFiles,
  label: string,
  timeoutMs = 5000,
): Promise<TLSSocket> {
  const options = {
    host,
    port,
    key: read(files.privateKey, "private key"),
    cert: read(files.certificate, "certificate"),
    ca: read(files.caCert, "CA certificate"),
    minVersion: "TLSv1.2" as const,
    rejectUnauthorized: true,
    // OVS certificates name no host; the chain to caCert is the trust
    checkServerIdentity: () => undefined,
  };
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(options);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ConnectionError(`${label}: SSL connect timed out after ${timeoutMs} ms`, { remote: label }));
    }, timeoutMs);
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(new ConnectionError(`${label}: ${describeSslFailure(err)}`, { remote: label }, { cause: err }));
    });
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
  });
}
