/**
 * The DHCP responder against a real client through a real switch: a private
 * OVS (netdev datapath) with two "VMs" (namespaces on veth ports), flowdrake's
 * own OpenFlow client punting `udp,tp_src=68,tp_dst=67` to the controller and
 * forwarding the rest NORMAL, and on every packet_in `handleDhcpFrame` decides
 * and a packet_out sends the reply back out of the port it came in on.
 *
 * busybox udhcpc runs in each VM with a script that writes the variables it
 * hands to scripts (ip, subnet, router, dns, mtu, domain, staticroutes, …) to
 * a file: vm1 (DHCP on) must get exactly what the NB model says; vm2's subnet
 * has DHCP off, so udhcpc must time out with no lease while the responder
 * saw its DISCOVERs and said why it stayed silent.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DHCP_CLIENT_MATCH } from "../../src/apps/dhcp/match.js";
import { type DhcpContext, type DhcpDecision, handleDhcpFrame } from "../../src/apps/dhcp/responder.js";
import { flowMod, installFlows } from "../../src/controller/flow-installer.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import { OFPP } from "../../src/openflow/actions.js";
import { connectOpenFlow } from "../../src/openflow/client.js";
import type { OfConnection } from "../../src/openflow/connection.js";
import { OFP_NO_BUFFER } from "../../src/openflow/message.js";
import { DHCP_MESSAGE_TYPE_NAMES, parseEthernet } from "../../src/packet/index.js";
import type { VmPort } from "../../src/sandbox/ovs.js";
import { run, start } from "../../src/util/exec.js";
import { useOvsSandbox, waitFor } from "../harness/index.js";

const sandbox = useOvsSandbox({ label: "dhcp", datapath: "netdev" });

const SERVER_MAC = "fa:16:3e:aa:00:01";
const VM1_MAC = "fa:16:3e:00:01:05";
const VM2_MAC = "fa:16:3e:00:02:05";

const network1 = {
  id: "net1",
  tenantId: "t1",
  name: "net1",
  description: "",
  networkType: "geneve",
  segmentationId: 101,
  mtu: 1400,
  portSecurityEnabled: true,
} as Network;

const subnet1 = {
  id: "sub1",
  tenantId: "t1",
  name: "sub1",
  description: "",
  networkId: "net1",
  cidr: "10.31.0.0/24",
  ipVersion: 4,
  gatewayIp: "10.31.0.1",
  allocationPools: [{ start: "10.31.0.2", end: "10.31.0.254" }],
  enableDhcp: true,
  dhcpOptions: { "lease-time": "7200" },
  dnsNameservers: ["10.31.0.53", "192.0.2.53"],
  hostRoutes: [{ destination: "172.20.0.0/16", nexthop: "10.31.0.254" }],
} as Subnet;

const port1 = {
  id: "port1",
  tenantId: "t1",
  name: "vm1",
  description: "",
  networkId: "net1",
  macAddress: VM1_MAC,
  fixedIps: [{ subnetId: "sub1", ipAddress: "10.31.0.17" }],
  deviceOwner: "compute:nova",
  deviceId: "vm1",
  adminStateUp: true,
  portSecurityEnabled: true,
  allowedAddressPairs: [],
  securityGroups: [],
  extraDhcpOptions: [{ name: "ntp-server", value: "10.31.0.123", ipVersion: 4 }],
} as Port;

const network2 = { ...network1, id: "net2", name: "net2", segmentationId: 102 } as Network;
const subnet2 = {
  ...subnet1,
  id: "sub2",
  networkId: "net2",
  cidr: "10.32.0.0/24",
  gatewayIp: "10.32.0.1",
  allocationPools: [{ start: "10.32.0.2", end: "10.32.0.254" }],
  enableDhcp: false,
  hostRoutes: [],
} as Subnet;
const port2 = {
  ...port1,
  id: "port2",
  name: "vm2",
  networkId: "net2",
  macAddress: VM2_MAC,
  fixedIps: [{ subnetId: "sub2", ipAddress: "10.32.0.17" }],
  extraDhcpOptions: [],
} as Port;

interface Seen {
  ofport: number;
  request: string;
  /** The request's ciaddr and IP destination. */
  ciaddr?: string;
  ipDst?: string;
  decision: DhcpDecision;
}

let conn: OfConnection;
let vm1: VmPort;
let vm2: VmPort;
const seen: Seen[] = [];
const contexts = new Map<number, DhcpContext>();

beforeAll(async () => {
  const sb = sandbox();
  vm1 = await sb.addVm("dhcpv1", { mac: VM1_MAC, ifaceId: "port1" });
  vm2 = await sb.addVm("dhcpv2", { mac: VM2_MAC, ifaceId: "port2" });
  contexts.set(vm1.ofport, {
    port: port1,
    subnet: subnet1,
    network: network1,
    serverMac: SERVER_MAC,
    serverIp: "10.31.0.2",
    domain: "flowdrake.test",
  });
  contexts.set(vm2.ofport, {
    port: port2,
    subnet: subnet2,
    network: network2,
    serverMac: SERVER_MAC,
    serverIp: "10.32.0.2",
  });

  conn = await connectOpenFlow(sb.mgmtRemote());
  // A service (mgmt socket) connection gets packet_ins only with a nonzero miss_send_len.
  await conn.send({ type: "set_config", flags: 0, missSendLen: 0xffff });
  conn.on("packet_in", (m) => {
    if (m.type !== "packet_in") return;
    const inPort = m.match.find((f) => f.field === "in_port")?.value;
    const ctx = typeof inPort === "number" ? contexts.get(inPort) : undefined;
    if (typeof inPort !== "number" || !ctx) return;
    const decision = handleDhcpFrame(m.data, ctx);
    let request = "malformed";
    let ciaddr: string | undefined;
    let ipDst: string | undefined;
    try {
      const f = parseEthernet(m.data);
      const t = f.dhcp?.options.messageType;
      request = t === undefined ? "none" : (DHCP_MESSAGE_TYPE_NAMES.get(t) ?? String(t));
      ciaddr = f.dhcp?.ciaddr;
      ipDst = f.ipv4?.dst;
    } catch {
      // recorded as "malformed"
    }
    seen.push({ ofport: inPort, request, ciaddr, ipDst, decision });
    if (decision.kind === "reply") {
      void conn.send({
        type: "packet_out",
        bufferId: OFP_NO_BUFFER,
        inPort: OFPP.CONTROLLER,
        actions: [{ type: "output", port: inPort }],
        data: decision.frame,
      });
    }
  });
  const r = await installFlows(conn, [
    flowMod({
      priority: 100,
      match: [...DHCP_CLIENT_MATCH],
      instructions: [
        { type: "apply_actions", actions: [{ type: "output", port: OFPP.CONTROLLER, maxLen: 0xffff }] },
      ],
    }),
    flowMod({
      priority: 0,
      match: [],
      instructions: [{ type: "apply_actions", actions: [{ type: "output", port: OFPP.NORMAL }] }],
    }),
  ]);
  expect(r.errors).toEqual([]);
}, 60_000);

afterAll(() => {
  conn?.close();
});

/**
 * A udhcpc script that dumps the variables of a `bound` (and, with `renew`, a
 * `renew`) event as KEY=VALUE lines to `<out>` / `<out>.renew`; with
 * `configure` it also puts the address on the interface, as a real script does.
 */
function writeScript(
  name: string,
  opts: { renew?: boolean; configure?: boolean } = {},
): {
  script: string;
  out: string;
} {
  const dir = sandbox().dir;
  const script = join(dir, `${name}.udhcpc.sh`);
  const out = join(dir, `${name}.lease`);
  writeFileSync(
    script,
    [
      "#!/bin/sh",
      `case "$1" in bound) f='${out}' ;; ${opts.renew ? `renew) f='${out}.renew' ;; ` : ""}*) exit 0 ;; esac`,
      opts.configure ? `ip addr replace "$ip/$subnet" dev "$interface"` : "",
      `for v in ip subnet broadcast router dns domain mtu staticroutes lease serverid ntpsrv; do`,
      `  eval "printf '%s=%s\\n' $v \\"\\$$v\\""`,
      `done > "$f.tmp"`,
      `mv "$f.tmp" "$f"`,
      "",
    ].join("\n"),
  );
  chmodSync(script, 0o755);
  return { script, out };
}

function readLease(file: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, "utf8").split("\n")) {
    const i = line.indexOf("=");
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return env;
}

describe("DHCP responder with busybox udhcpc through ovs-vswitchd", () => {
  it("vm1 gets its NB address, mask, gateway, DNS, MTU, domain, host routes and extra options", async () => {
    const { script, out } = writeScript("vm1");
    const r = await run(
      ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s", script],
      { netns: vm1.netns, timeoutMs: 30_000, allowFailure: true },
    );
    expect(r.code, `udhcpc failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    expect(existsSync(out), "udhcpc ran no bound script").toBe(true);
    expect(readLease(out)).toEqual({
      ip: "10.31.0.17",
      subnet: "255.255.255.0",
      broadcast: "10.31.0.255",
      router: "10.31.0.1",
      dns: "10.31.0.53 192.0.2.53",
      domain: "flowdrake.test",
      mtu: "1400",
      staticroutes: "172.20.0.0/16 10.31.0.254 0.0.0.0/0 10.31.0.1",
      lease: "7200",
      serverid: "10.31.0.2",
      ntpsrv: "10.31.0.123",
    });
    // udhcpc may retransmit under load; every request got an answer and the lease came from OFFER+ACK.
    const fromVm1 = seen.filter((s) => s.ofport === vm1.ofport);
    const pairs = fromVm1.map((s) => [
      s.request,
      s.decision.kind === "reply" ? s.decision.messageType : "ignore",
    ]);
    expect(pairs[0]).toEqual(["DHCPDISCOVER", "OFFER"]);
    expect(pairs.at(-1)).toEqual(["DHCPREQUEST", "ACK"]);
    expect(new Set(pairs.map((p) => p.join(" ")))).toEqual(
      new Set(["DHCPDISCOVER OFFER", "DHCPREQUEST ACK"]),
    );
  }, 40_000);

  it("vm1 asking for another address (-r) is offered and bound to its own", async () => {
    const { script, out } = writeScript("vm1r");
    const before = seen.length;
    const r = await run(
      [
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-n",
        "-q",
        "-f",
        "-t",
        "5",
        "-T",
        "2",
        "-r",
        "10.31.0.99",
        "-s",
        script,
      ],
      { netns: vm1.netns, timeoutMs: 30_000, allowFailure: true },
    );
    expect(r.code, `udhcpc failed:\n${r.stdout}\n${r.stderr}`).toBe(0);
    expect(readLease(out).ip).toBe("10.31.0.17");
    const answers = seen.slice(before).filter((s) => s.ofport === vm1.ofport);
    expect(answers.length).toBeGreaterThanOrEqual(2);
    for (const a of answers) expect(a.decision).toMatchObject({ kind: "reply", yiaddr: "10.31.0.17" });
  }, 40_000);

  it("vm2 on a subnet with DHCP disabled gets no answer: udhcpc times out", async () => {
    const { script, out } = writeScript("vm2");
    const before = seen.length;
    const r = await run(
      ["busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "2", "-T", "1", "-s", script],
      { netns: vm2.netns, timeoutMs: 30_000, allowFailure: true },
    );
    expect(r.code).not.toBe(0);
    expect(existsSync(out)).toBe(false);
    const fromVm2 =
      (await waitFor(
        () => {
          const l = seen.slice(before).filter((s) => s.ofport === vm2.ofport);
          return l.length >= 2 ? l : undefined;
        },
        5000,
        "vm2's DISCOVERs at the controller",
      )) ?? [];
    for (const s of fromVm2) {
      expect(s.request).toBe("DHCPDISCOVER");
      expect(s.decision).toEqual({ kind: "ignore", reason: "subnet sub2 has DHCP disabled" });
    }
    // Nothing was answered to vm2 at all.
    expect(seen.filter((s) => s.ofport === vm2.ofport && s.decision.kind === "reply")).toEqual([]);
  }, 40_000);

  it("vm1 renews its lease by unicast to the server (RENEWING, SIGUSR1) and is ACKed", async () => {
    // The server address resolves to the server MAC (the arp app's job in the agent).
    await run(["ip", "neigh", "replace", "10.31.0.2", "lladdr", SERVER_MAC, "dev", "eth0"], {
      netns: vm1.netns,
    });
    const { script, out } = writeScript("vm1renew", { renew: true, configure: true });
    const before = seen.length;
    const proc = start(["busybox", "udhcpc", "-i", "eth0", "-f", "-t", "5", "-T", "2", "-s", script], {
      netns: vm1.netns,
    });
    sandbox().cleanup.add("udhcpc vm1", () => {
      proc.kill("SIGKILL");
    });
    try {
      await waitFor(() => existsSync(out), 20_000, "udhcpc to bind");
      proc.kill("SIGUSR1"); // udhcpc: renew now
      await waitFor(() => existsSync(`${out}.renew`), 20_000, "udhcpc to renew");
    } finally {
      proc.kill("SIGKILL");
    }
    expect(readLease(out)).toMatchObject({ ip: "10.31.0.17", lease: "7200" });
    // The script put the lease on eth0: the kernel now owns 10.31.0.17/24.
    const addr = await run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"], { netns: vm1.netns });
    expect(addr.stdout).toMatch(/inet 10\.31\.0\.17\/24 /);
    expect(readLease(`${out}.renew`)).toMatchObject({ ip: "10.31.0.17", lease: "7200", router: "10.31.0.1" });
    const renew = seen.slice(before).find((s) => s.request === "DHCPREQUEST" && s.ciaddr === "10.31.0.17");
    expect(renew?.ipDst).toBe("10.31.0.2");
    expect(renew?.decision).toMatchObject({ kind: "reply", messageType: "ACK", yiaddr: "10.31.0.17" });
    // The renewal came unicast from the bound address and was answered unicast to it.
    const f = parseEthernet(renew!.decision.kind === "reply" ? renew!.decision.frame : Buffer.alloc(0));
    expect(f.ipv4?.dst).toBe("10.31.0.17");
    expect(f.dhcp?.ciaddr).toBe("10.31.0.17");
  }, 40_000);
});
