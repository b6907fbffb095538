/**
 * A real DHCP client inside a "VM" namespace: busybox `udhcpc`, with a
 * script that writes what the client was given (one KEY=value per line) and,
 * when asked, configures the interface the way a guest would (address, MTU,
 * default route). Used by the agent's end-to-end tests and by the demo.
 */
import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "../util/exec.js";
import { makeRunDir } from "./rundir.js";

export interface DhcpLease {
  ip: string;
  mask?: string;
  subnet?: string;
  router?: string;
  dns?: string;
  domain?: string;
  mtu?: string;
  lease?: string;
  serverid?: string;
  staticroutes?: string;
  [k: string]: string | undefined;
}

const SCRIPT = `#!/bin/sh
# udhcpc event script: record the lease, optionally configure the interface.
case "$1" in
  bound|renew)
    {
      for v in ip mask subnet router dns domain mtu lease serverid staticroutes broadcast; do
        eval "val=\\$$v"; [ -n "$val" ] && echo "$v=$val"
      done
    } > "$LEASE_FILE"
    if [ "$APPLY" = "1" ]; then
      ip addr flush dev "$interface"
      ip addr add "$ip/\${mask:-24}" dev "$interface"
      [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
      for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    fi
    ;;
esac
exit 0
`;

/**
 * Run one DHCP exchange (DISCOVER → OFFER → REQUEST → ACK) and return the
 * lease, or undefined when no server answered within `timeoutS` seconds.
 */
export async function runDhcpClient(
  netns: string,
  opts: { ifname?: string; timeoutS?: number; apply?: boolean } = {},
): Promise<DhcpLease | undefined> {
  const dir = makeRunDir("udhcpc");
  try {
    const script = join(dir, "script.sh");
    const leaseFile = join(dir, "lease");
    writeFileSync(script, SCRIPT);
    chmodSync(script, 0o755);
    const tries = Math.max(1, Math.ceil((opts.timeoutS ?? 6) / 2));
    const r = await run(
      [
        "busybox",
        "udhcpc",
        "-i",
        opts.ifname ?? "eth0",
        "-n",
        "-q",
        "-f",
        "-t",
        String(tries),
        "-T",
        "2",
        "-s",
        script,
      ],
      {
        netns,
        env: { ...process.env, LEASE_FILE: leaseFile, APPLY: opts.apply ? "1" : "0" },
        allowFailure: true,
        timeoutMs: ((opts.timeoutS ?? 6) + 10) * 1000,
      },
    );
    let text: string;
    try {
      text = readFileSync(leaseFile, "utf8");
    } catch {
      if (r.code !== 0) return undefined;
      throw new Error(`udhcpc exited 0 without a lease: ${r.stderr}`);
    }
    const lease: Record<string, string> = {};
    for (const line of text.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) lease[line.slice(0, i)] = line.slice(i + 1);
    }
    return lease as DhcpLease;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
