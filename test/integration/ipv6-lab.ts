/**
 * The switch side shared by the IPv6 integration tests (ipv6-ra, dhcp6-responder):
 * flowdrake's own OpenFlow client on a private OVS (netdev datapath) punts
 * router solicitations and DHCPv6 client messages (the matches of
 * src/apps/ipv6/match.ts) to the controller and forwards everything else
 * NORMAL; each packet_in goes to the test's handler with its in_port, and
 * `packetOut` sends a frame out of one port, as the agent's apps do. Plus the
 * VM-side helpers: a missing client program fails with how to install it,
 * IPv6 sysctls are set inside the VM's namespace only, and waits on
 * duplicate address detection are conditions, not sleeps.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { DHCP6_CLIENT_MATCH, ROUTER_SOLICITATION_MATCH } from "../../src/apps/ipv6/match.js";
import { flowMod, installFlows } from "../../src/controller/flow-installer.js";
import { OFPP } from "../../src/openflow/actions.js";
import { connectOpenFlow } from "../../src/openflow/client.js";
import type { OfConnection } from "../../src/openflow/connection.js";
import { OFP_NO_BUFFER } from "../../src/openflow/message.js";
import type { OvsSandbox } from "../../src/sandbox/ovs.js";
import { run } from "../../src/util/exec.js";
import { waitFor } from "../harness/index.js";

export interface Lab {
  conn: OfConnection;
  /** Send `frame` out of `ofport`; after `close`, a no-op (a late packet_in may still be answered). */
  packetOut(ofport: number, frame: Buffer): Promise<void>;
  close(): void;
}

export async function startLab(
  sb: OvsSandbox,
  onPacketIn: (inPort: number, data: Buffer, lab: Lab) => void,
): Promise<Lab> {
  const conn = await connectOpenFlow(sb.mgmtRemote());
  let closed = false;
  const lab: Lab = {
    conn,
    close() {
      closed = true;
      conn.close();
    },
    async packetOut(ofport, frame) {
      if (closed) return;
      try {
        await conn.send({
          type: "packet_out",
          bufferId: OFP_NO_BUFFER,
          inPort: OFPP.CONTROLLER,
          actions: [{ type: "output", port: ofport }],
          data: frame,
        });
      } catch (e) {
        if (!closed) throw e;
      }
    },
  };
  // A service (mgmt socket) connection gets packet_ins only with a nonzero miss_send_len.
  await conn.send({ type: "set_config", flags: 0, missSendLen: 0xffff });
  conn.on("packet_in", (m) => {
    if (m.type !== "packet_in") return;
    const inPort = m.match.find((f) => f.field === "in_port")?.value;
    if (typeof inPort === "number") onPacketIn(inPort, m.data, lab);
  });
  const toController = [
    {
      type: "apply_actions" as const,
      actions: [{ type: "output" as const, port: OFPP.CONTROLLER, maxLen: 0xffff }],
    },
  ];
  const r = await installFlows(conn, [
    flowMod({ priority: 100, match: [...ROUTER_SOLICITATION_MATCH], instructions: toController }),
    flowMod({ priority: 100, match: [...DHCP6_CLIENT_MATCH], instructions: toController }),
    flowMod({
      priority: 0,
      match: [],
      instructions: [{ type: "apply_actions", actions: [{ type: "output", port: OFPP.NORMAL }] }],
    }),
  ]);
  expect(r.errors).toEqual([]);
  return lab;
}

/** Fail with how to get it when a client program the test drives is missing. */
export function needBinary(bin: string, debianPackage: string): void {
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  if (!dirs.some((d) => existsSync(join(d, bin)))) {
    throw new Error(
      `${bin} is not installed: run \`bash scripts/setup\` as root (Debian package ${debianPackage})`,
    );
  }
}

/** Set an IPv6 sysctl of eth0 inside a VM's namespace (never the host's). */
export async function vmSysctl(netns: string, key: string, value: string | number): Promise<void> {
  await run(["sysctl", "-q", "-w", `net.ipv6.conf.eth0.${key}=${value}`], { netns });
}

/** Wait until eth0 of a VM has a link-local address that finished duplicate address detection. */
export async function waitLinkLocal(netns: string): Promise<string> {
  return waitFor<string | undefined>(
    async () => {
      const { stdout } = await run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"], {
        netns,
      });
      if (/tentative/.test(stdout)) return undefined;
      return /inet6 (fe80::[0-9a-f:]+)\/64/.exec(stdout)?.[1];
    },
    15_000,
    "eth0's link-local address to leave DAD",
  ) as Promise<string>;
}

/** Bounce eth0 in a VM: the kernel forgets its addresses and routes from RAs and starts over. */
export async function bounceLink(netns: string): Promise<void> {
  await run(["ip", "link", "set", "eth0", "down"], { netns });
  await run(["ip", "link", "set", "eth0", "up"], { netns });
}
