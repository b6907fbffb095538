/**
 * Golden packets from real stacks: two network namespaces joined by a veth,
 * real Linux ARP/ICMP/ND/TCP traffic (ping, ping -6, busybox arping, nc) and a
 * real DHCP exchange (busybox udhcpc against busybox udhcpd), captured with
 * tcpdump into a pcap and decoded with the packet library.
 *
 * Checksums: ICMP, ICMPv6, IPv4 headers and udhcpc/udhcpd's UDP (built in
 * user space on packet sockets) are complete on the wire and must verify;
 * kernel TCP on a veth leaves checksum offload partial, so TCP is checked for
 * fields, not checksum.
 */
import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Frame,
  DHCP_MESSAGE_TYPE,
  ICMPV6_TYPE,
  ICMP_TYPE,
  parseEthernet,
  readPcap,
} from "../../src/packet/index.js";
import { run, start } from "../../src/util/exec.js";
import { Cleanup, createNetns, createVeth, makeRunDir, waitFor } from "../harness/index.js";

const MAC_A = "02:00:00:77:00:0a";
const MAC_B = "02:00:00:77:00:0b";

function need(bin: string): void {
  const dirs = (process.env.PATH ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
  if (!dirs.some((d) => existsSync(join(d, bin)))) {
    throw new Error(`${bin} is not installed: run \`bash scripts/setup\` (as root) to install it`);
  }
}

describe("packet library on packets captured from real stacks", () => {
  const cleanup = new Cleanup();
  let frames: Frame[] = [];
  let raw: Buffer[] = [];

  beforeAll(async () => {
    for (const bin of ["tcpdump", "busybox", "ping", "nc", "ip"]) need(bin);
    const dir = makeRunDir("pktcap");
    cleanup.add("rundir", () => run(["rm", "-rf", dir]).then(() => undefined));
    const a = await createNetns("pka", cleanup);
    const b = await createNetns("pkb", cleanup);
    await createVeth({ name: "va", netns: a }, { name: "vb", netns: b });
    await run(["ip", "link", "set", "va", "address", MAC_A], { netns: a });
    await run(["ip", "link", "set", "vb", "address", MAC_B], { netns: b });
    await run(["ip", "addr", "add", "10.77.0.1/24", "dev", "va"], { netns: a });
    await run(["ip", "addr", "add", "10.77.0.2/24", "dev", "vb"], { netns: b });
    await run(["ip", "addr", "add", "fd77::1/64", "dev", "va", "nodad"], { netns: a });
    await run(["ip", "addr", "add", "fd77::2/64", "dev", "vb", "nodad"], { netns: b });

    const pcap = join(dir, "cap.pcap");
    // --immediate-mode: without it libpcap hands packets over a ring block at a
    // time (up to a second late), and the tail of the capture is lost at SIGINT.
    const dumpLog = join(dir, "tcpdump.log");
    const dumpFd = openSync(dumpLog, "w");
    const dump = start(["tcpdump", "-i", "vb", "--immediate-mode", "-U", "-s", "0", "-nn", "-w", pcap], {
      netns: b,
      logFile: dumpFd,
    });
    closeSync(dumpFd);
    cleanup.add("tcpdump", () => {
      dump.kill("SIGKILL");
    });
    // tcpdump prints "listening on" once its socket is bound, before it captures anything
    await waitFor(() => readFileSync(dumpLog, "utf8").includes("listening on"), 10_000, "tcpdump to listen");
    await waitFor(() => existsSync(pcap) && statSync(pcap).size >= 24, 10_000, "tcpdump to open its pcap");

    // DHCP: busybox udhcpd on b, udhcpc on a (a real client against a real server).
    const leases = join(dir, "udhcpd.leases");
    writeFileSync(leases, "");
    const conf = join(dir, "udhcpd.conf");
    writeFileSync(
      conf,
      [
        "start 10.77.0.100",
        "end 10.77.0.150",
        "interface vb",
        `lease_file ${leases}`,
        `pidfile ${join(dir, "udhcpd.pid")}`,
        "opt subnet 255.255.255.0",
        "opt router 10.77.0.2",
        "opt dns 10.77.0.53 10.77.0.54",
        "opt domain example.test",
        "opt lease 3600",
        "opt mtu 1400",
        "",
      ].join("\n"),
    );
    const server = start(["busybox", "udhcpd", "-f", conf], { netns: b });
    cleanup.add("udhcpd", () => {
      server.kill("SIGKILL");
    });
    await waitFor(
      async () => (await run(["ss", "-Hlun", "sport = :67"], { netns: b })).stdout.includes(":67"),
      10_000,
      "udhcpd to listen on port 67",
    );
    await run(
      [
        "busybox",
        "udhcpc",
        "-f",
        "-q",
        "-n",
        "-i",
        "va",
        "-t",
        "5",
        "-T",
        "1",
        "-s",
        "/bin/true",
        "-x",
        "hostname:vm-a",
      ],
      { netns: a, timeoutMs: 20_000 },
    );

    await run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.0.2"], { netns: a });
    await run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "fd77::2"], { netns: a });
    await run(["busybox", "arping", "-c", "1", "-w", "2", "-I", "va", "10.77.0.2"], {
      netns: a,
      allowFailure: true,
    });
    // Duplicate address detection: an address added without nodad is probed with a neighbour
    // solicitation from :: before it leaves the tentative state.
    await run(["ip", "addr", "add", "fd77::a/64", "dev", "va"], { netns: a });
    await waitFor(
      async () => {
        const shown = (await run(["ip", "-6", "addr", "show", "dev", "va"], { netns: a })).stdout;
        return /inet6 fd77::a\/64 .*\n/.test(shown) && !/fd77::a\/64 [^\n]*tentative/.test(shown);
      },
      10_000,
      "DAD of fd77::a to finish",
    );
    const listener = start(["nc", "-l", "10.77.0.2", "7777"], { netns: b });
    cleanup.add("nc", () => {
      listener.kill("SIGKILL");
    });
    await waitFor(
      async () => (await run(["ss", "-Hltn", "sport = :7777"], { netns: b })).stdout.includes("7777"),
      10_000,
      "nc to listen on 10.77.0.2:7777",
    );
    await run(["nc", "-z", "-w", "2", "10.77.0.2", "7777"], { netns: a, allowFailure: true });

    // Stop the capture once its file holds the last exchange (the SYN-ACK), then
    // wait for tcpdump to exit so the file is complete.
    const hasSynAck = (): boolean =>
      readPcap(readFileSync(pcap))
        .records.map((r) => parseEthernet(r.data))
        .some((f) => f.tcp?.flags.syn && f.tcp.flags.ack && f.tcp.srcPort === 7777);
    await waitFor(hasSynAck, 10_000, "the SYN-ACK in the capture");
    const exited = new Promise((r) => dump.once("exit", r));
    dump.kill("SIGINT");
    await exited;
    raw = readPcap(readFileSync(pcap)).records.map((r) => r.data);
    frames = raw.map((f) => parseEthernet(f));
    if (process.env.FLOWDRAKE_PACKET_FIXTURE_OUT) {
      writeFileSync(process.env.FLOWDRAKE_PACKET_FIXTURE_OUT, readFileSync(pcap));
    }
  }, 90_000);

  afterAll(async () => {
    await cleanup.run();
  });

  it("decodes every captured frame", () => {
    expect(frames.length).toBeGreaterThan(10);
  });

  it("udhcpc's DISCOVER: message type 1, its MAC as chaddr, a parameter request list, valid UDP checksum", () => {
    const d = frames.find((f) => f.dhcp?.options.messageType === DHCP_MESSAGE_TYPE.DISCOVER);
    expect(d).toBeDefined();
    expect(d!.eth.src).toBe(MAC_A);
    expect(d!.eth.dst).toBe("ff:ff:ff:ff:ff:ff");
    expect(d!.ipv4!.src).toBe("0.0.0.0");
    expect(d!.ipv4!.dst).toBe("255.255.255.255");
    expect(d!.ipv4!.checksumValid).toBe(true);
    expect(d!.udp).toMatchObject({ srcPort: 68, dstPort: 67, checksumValid: true });
    expect(d!.dhcp!.op).toBe(1);
    expect(d!.dhcp!.chaddr).toBe(MAC_A);
    expect(d!.dhcp!.options.parameterRequestList).toEqual(expect.arrayContaining([1, 3, 6]));
    expect(d!.dhcp!.options.clientIdentifier).toEqual({ type: 1, id: Buffer.from("02000077000a", "hex") });
    expect(d!.dhcp!.options.hostName).toBe("vm-a");
  });

  it("udhcpd's OFFER and ACK carry the configured options", () => {
    const offer = frames.find((f) => f.dhcp?.options.messageType === DHCP_MESSAGE_TYPE.OFFER);
    const ack = frames.find((f) => f.dhcp?.options.messageType === DHCP_MESSAGE_TYPE.ACK);
    const req = frames.find((f) => f.dhcp?.options.messageType === DHCP_MESSAGE_TYPE.REQUEST);
    for (const m of [offer, ack]) {
      expect(m).toBeDefined();
      expect(m!.udp).toMatchObject({ srcPort: 67, dstPort: 68, checksumValid: true });
      expect(m!.dhcp!.op).toBe(2);
      expect(m!.dhcp!.chaddr).toBe(MAC_A);
      expect(m!.dhcp!.yiaddr).toMatch(/^10\.77\.0\.1[0-5]\d$/);
      expect(m!.dhcp!.options).toMatchObject({
        subnetMask: "255.255.255.0",
        router: ["10.77.0.2"],
        domainNameServer: ["10.77.0.53", "10.77.0.54"],
        domainName: "example.test",
        ipAddressLeaseTime: 3600,
        interfaceMtu: 1400,
        serverIdentifier: "10.77.0.2",
      });
    }
    expect(req!.dhcp!.options.requestedIpAddress).toBe(offer!.dhcp!.yiaddr);
    expect(req!.dhcp!.xid).toBe(offer!.dhcp!.xid);
  });

  it("ARP request and reply from the kernels", () => {
    const reqs = frames.filter((f) => f.arp?.op === 1 && f.arp.tpa === "10.77.0.2");
    const rep = frames.find((f) => f.arp?.op === 2 && f.arp.spa === "10.77.0.2");
    expect(reqs.length).toBeGreaterThan(0);
    expect(reqs[0]!.arp!.sha).toBe(MAC_A);
    expect(reqs[0]!.arp!.spa).toMatch(/^10\.77\.0\./);
    expect(rep!.arp).toMatchObject({ sha: MAC_B, tpa: reqs[0]!.arp!.spa });
  });

  it("ping: ICMP echo request/reply with valid checksums", () => {
    const req = frames.filter((f) => f.icmp?.type === ICMP_TYPE.ECHO_REQUEST);
    const rep = frames.filter((f) => f.icmp?.type === ICMP_TYPE.ECHO_REPLY);
    expect(req.length).toBe(2);
    expect(rep.length).toBe(2);
    for (const f of [...req, ...rep]) {
      expect(f.ipv4!.checksumValid).toBe(true);
      expect(f.icmp!.checksumValid).toBe(true);
    }
    expect(rep[0]!.icmp!.echo).toEqual(req[0]!.icmp!.echo);
    expect(rep[0]!.icmp!.body).toEqual(req[0]!.icmp!.body);
    expect(req[1]!.icmp!.echo!.sequence).toBe(req[0]!.icmp!.echo!.sequence + 1);
  });

  it("ping -6: neighbor solicitation/advertisement with link-layer options, echo with valid checksums", () => {
    const ns = frames.find(
      (f) => f.icmpv6?.ndp?.kind === "neighbor-solicitation" && f.icmpv6.ndp.target === "fd77::2",
    );
    const na = frames.find((f) => f.icmpv6?.ndp?.kind === "neighbor-advertisement" && f.eth.src === MAC_B);
    expect(ns!.icmpv6!.ndp).toMatchObject({
      target: "fd77::2",
      options: [{ kind: "source-ll", mac: MAC_A }],
    });
    expect(ns!.ipv6!.dst).toBe("ff02::1:ff00:2");
    expect(ns!.ipv6!.hopLimit).toBe(255);
    expect(ns!.icmpv6!.checksumValid).toBe(true);
    expect(na!.icmpv6!.ndp).toMatchObject({ target: "fd77::2", solicited: true, override: true });
    expect(na!.icmpv6!.checksumValid).toBe(true);
    const echo = frames.filter((f) => f.icmpv6?.type === ICMPV6_TYPE.ECHO_REQUEST);
    expect(echo.length).toBe(2);
    expect(echo[0]!.ipv6).toMatchObject({ src: "fd77::1", dst: "fd77::2", protocol: 58 });
    expect(echo.every((f) => f.icmpv6!.checksumValid)).toBe(true);
    // Linux's duplicate address detection for fd77::a: sent from :: to the address's solicited-node
    // group, no source link-layer option (RFC 4861 §7.2.2), a nonce option (RFC 7527) kept raw.
    const dad = frames.find(
      (f) =>
        f.icmpv6?.ndp?.kind === "neighbor-solicitation" &&
        f.ipv6!.src === "::" &&
        f.icmpv6.ndp.target === "fd77::a",
    );
    expect(dad).toBeDefined();
    expect(dad!.ipv6!.dst).toBe("ff02::1:ff00:a");
    expect(dad!.icmpv6!.checksumValid).toBe(true);
    expect(dad!.icmpv6!.ndp!.options.map((o) => (o.kind === "raw" ? o.code : o.kind))).toEqual([14]);
  });

  it("nc: TCP SYN with raw options, SYN-ACK back", () => {
    const syn = frames.find((f) => f.tcp?.flags.syn && !f.tcp.flags.ack && f.tcp.dstPort === 7777);
    const synack = frames.find((f) => f.tcp?.flags.syn && f.tcp.flags.ack && f.tcp.srcPort === 7777);
    expect(syn!.tcp!.dataOffset).toBeGreaterThan(5);
    expect(syn!.tcp!.options[0]).toBe(2); // MSS option kind first, as Linux sends it
    expect(syn!.tcp!.options.readUInt16BE(2)).toBe(1460);
    expect(synack!.tcp!.ack).toBe((syn!.tcp!.seq + 1) >>> 0);
  });
});
