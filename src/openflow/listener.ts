/**
 * The passive side: flowdrake listens as an OpenFlow controller and the
 * switch dials in (a bridge whose `controller` is `tcp:127.0.0.1:<port>`;
 * vswitchd reconnects by itself after a drop). Each accepted socket is
 * handshaken (HELLO, FEATURES) and, when `role` is set, asked to make us its
 * primary (OFPCR_ROLE_MASTER) before the session is handed to the
 * 'connection' listeners. A peer that fails the handshake is dropped and
 * reported as 'reject'; the listener keeps serving.
 */
import { EventEmitter } from "node:events";
import { createServer, type Server } from "node:net";
import { ConnectionError } from "../util/errors.js";
import { logger } from "../util/log.js";
import { OfConnection, type OfConnectionOptions } from "./connection.js";

const log = logger("openflow-listener");

export interface OfListenerOptions extends OfConnectionOptions {
  host?: string;
  /** 0 = pick a free port. */
  port?: number;
  /** Role to request on every session (default "primary"; "none" to skip). */
  role?: "primary" | "secondary" | "equal" | "none";
}

export interface OfListenerEvents {
  connection: [OfConnection];
  reject: [Error];
}

export class OfListener extends EventEmitter<OfListenerEvents> {
  readonly sessions = new Set<OfConnection>();
  /**
   * generation_id of our role requests. A switch refuses a MASTER request
   * whose generation is older than one it saw before (OFPRRFC_STALE), also
   * from an earlier run of flowdrake, so it starts from the clock (ms << 16)
   * and counts up per session.
   */
  private generation = BigInt(Date.now()) << 16n;

  private constructor(
    private readonly server: Server,
    readonly host: string,
    readonly port: number,
  ) {
    super();
  }

  static async listen(opts: OfListenerOptions = {}): Promise<OfListener> {
    const host = opts.host ?? "127.0.0.1";
    const server = createServer({ noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) =>
        reject(new ConnectionError(`cannot listen on ${host}:${opts.port ?? 0}: ${err.message}`)),
      );
      server.listen(opts.port ?? 0, host, resolve);
    });
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : (opts.port ?? 0);
    const l = new OfListener(server, host, port);
    server.on("connection", (socket) => {
      const label = `controller ${host}:${port} <- ${socket.remoteAddress}:${socket.remotePort}`;
      void (async () => {
        try {
          const conn = await OfConnection.handshake(socket, { label, ...opts });
          const role = opts.role ?? "primary";
          if (role !== "none") await conn.role(role, ++l.generation);
          l.sessions.add(conn);
          conn.once("close", () => l.sessions.delete(conn));
          l.emit("connection", conn);
        } catch (err) {
          socket.destroy();
          const e = err instanceof Error ? err : new Error(String(err));
          log.warn({ err: e.message, peer: label }, "OpenFlow peer rejected");
          l.emit("reject", e);
        }
      })();
    });
    return l;
  }

  /** `tcp:host:port`, what to put in the bridge's controller column. */
  get target(): string {
    return `tcp:${this.host}:${this.port}`;
  }

  /** The next session (or the current one if already connected). */
  nextConnection(timeoutMs = 30_000): Promise<OfConnection> {
    const open = [...this.sessions].find((s) => s.isOpen);
    if (open) return Promise.resolve(open);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off("connection", on);
        reject(new ConnectionError(`no switch connected to ${this.target} within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (c: OfConnection): void => {
        clearTimeout(timer);
        resolve(c);
      };
      this.once("connection", on);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.close();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
