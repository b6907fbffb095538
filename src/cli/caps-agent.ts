/**
 * `flowdrake caps` asking a running agent: which offload mode is active on
 * its bridge and why, and — `caps --explain agent` — the installed state of
 * every flow (offloaded: device, chain, prio, hardware and software packet
 * counters; in software: why; demoted: why; refused: the kernel's message).
 *
 * The agent answers on its offload socket (src/controller/tc-reconciler.ts,
 * `offload.socket`; by default flowdrake.<bridge>.sock next to its unix
 * ovsdb socket), one JSON request line and one JSON answer line:
 *
 *   {"op":"status"}  → the report without the flows
 *   {"op":"explain"} → the report with every flow
 *
 * An agent that does not answer is a ConnectionError naming the socket and
 * what serves it.
 */
import { createConnection } from "node:net";
import type { OffloadReport } from "../controller/tc-reconciler.js";
import { ConnectionError, DecodeError } from "../util/errors.js";

const TIMEOUT_MS = 5000;

/** One request to the agent's offload socket. */
export function askAgent(
  socket: string,
  op: "status" | "explain",
  timeoutMs = TIMEOUT_MS,
): Promise<OffloadReport> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(socket);
    let buf = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ConnectionError(`the agent on ${socket} did not answer within ${timeoutMs} ms`, { socket }));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.write(`${JSON.stringify({ op })}\n`));
    sock.on("data", (chunk: string) => (buf += chunk));
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(
        new ConnectionError(
          `no flowdrake agent answers on ${socket} (${err.message}); the agent serves it in every offload mode (offload.socket)`,
          { socket },
        ),
      );
    });
    sock.on("end", () => {
      clearTimeout(timer);
      let reply: unknown;
      try {
        reply = JSON.parse(buf);
      } catch {
        return reject(
          new DecodeError(`the agent on ${socket} answered something that is not JSON`, { socket }),
        );
      }
      const r = reply as OffloadReport & { error?: string };
      if (r.error)
        return reject(new ConnectionError(`the agent on ${socket} refused: ${r.error}`, { socket }));
      resolve(r);
    });
  });
}

const pct = (x: number) => `${(x * 100).toFixed(x >= 0.9995 && x < 1 ? 2 : 1)} %`;

/** The mode section of `caps`: which mode is active, and why. */
export function formatAgentStatus(r: OffloadReport): string {
  const lines = [
    `agent ${r.chassis}, bridge ${r.bridge}: offload mode ${r.mode.active}${r.mode.requested !== r.mode.active ? ` (asked for ${r.mode.requested})` : ""} — ${r.mode.reason}`,
    `  NIC profile ${r.profile.id} (${r.profile.name}): ${r.profile.reason}`,
  ];
  if (r.mode.active === "planner") {
    const by = Object.entries(r.filters.byDevice)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([d, n]) => `${d} ${n}`)
      .join(", ");
    lines.push(
      `  tc filters: ${r.filters.installed} installed, ${r.filters.desired} wanted${by ? ` (${by})` : ""}; flags ${r.tcFlags}; capacity ${r.capacity ?? "unlimited"}`,
      `  flows: ${r.demoted} demoted by the offload budget, ${r.refused} refused by the kernel`,
    );
    if (r.share)
      lines.push(
        `  on the NIC, last interval: ${pct(r.share.packets)} of packets, ${pct(r.share.bytes)} of bytes`,
      );
  }
  const ports = r.ports.map(
    (p) =>
      `${p.ofport} ${p.name} (${p.role}${p.netdev && p.netdev !== p.name ? ` → ${p.netdev}` : ""}${p.note ? `: ${p.note}` : ""})`,
  );
  if (ports.length) lines.push(`  ports: ${ports.join(", ")}`);
  return `${lines.join("\n")}\n`;
}

/** `caps --explain agent`: every flow with what the NIC does with it, and the counters behind that. */
export function formatAgentExplain(r: OffloadReport): string {
  const out = [formatAgentStatus(r).trimEnd(), ""];
  for (const f of r.flows) {
    out.push(f.flow);
    const sw = f.softwarePackets !== undefined ? `; OVS counted ${f.softwarePackets} packets` : "";
    out.push(`    ${f.status}: ${f.reason}${sw}`);
    for (const x of f.filters) {
      out.push(
        `      ${x.dev} chain ${x.chain} prio ${x.prio} handle 0x${x.handle.toString(16)} ${x.kind}: ${x.packets} packets (hardware ${x.hwPackets}, software ${x.swPackets}), ${x.bytes} bytes${x.inHw ? ", in_hw" : ""}`,
      );
    }
  }
  return `${out.join("\n")}\n`;
}
