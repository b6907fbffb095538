/**
 * A TCP proxy on loopback that a test can cut and heal: the way to partition
 * one in-process agent from the NB (etcd, the publisher) while everything
 * else keeps talking to it. `cut()` destroys every proxied connection and
 * refuses new ones (accepted, then reset) until `heal()`.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private isCut = false;
  /** Connections refused while cut (a check that the partition was tried). */
  refused = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Listen on 127.0.0.1 (a free port) and forward to `target` ("host:port"). */
  static async start(target: string): Promise<TcpProxy> {
    const [host, port] = [
      target.slice(0, target.lastIndexOf(":")),
      Number(target.slice(target.lastIndexOf(":") + 1)),
    ];
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", resolve);
    });
    const addr = server.address();
    if (!addr || typeof addr === "string") throw new Error("tcp proxy: no port");
    const proxy = new TcpProxy(server, addr.port);
    server.on("connection", (client) => proxy.forward(client, host, port));
    return proxy;
  }

  private forward(client: Socket, host: string, port: number): void {
    if (this.isCut) {
      this.refused++;
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host, port });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.isCut = true;
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
  }

  heal(): void {
    this.isCut = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
