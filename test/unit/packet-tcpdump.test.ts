/**
 * Golden, the other way round: frames built by the packet library are written
 * to a pcap and decoded by tcpdump (`tcpdump -r -nn -vv -e`), an independent
 * implementation of every protocol here. tcpdump must report checksums as
 * correct and show the fields as built; packets built with a wrong checksum
 * on purpose must be reported as bad, so the check cannot pass vacuously.
 * Needs tcpdump (`bash scripts/setup` installs it).
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type FrameSpec,
  buildArpReply,
  buildArpRequest,
  buildDhcpPacket,
  buildEchoReply,
  buildFrame,
  buildNeighborAdvertisement,
  buildNeighborSolicitation,
  buildRouterAdvertisement,
  icmpDestUnreachable,
  icmpTimeExceeded,
  writePcap,
} from "../../src/packet/index.js";
import { run } from "../../src/util/exec.js";
import { makeRunDir } from "../harness/index.js";

const A = "fa:16:3e:00:00:01";
const B = "fa:16:3e:00:00:02";
let dir = "";
let n = 0;

async function tcpdump(frame: Buffer): Promise<string> {
  const file = join(dir, `f${n++}.pcap`);
  writeFileSync(file, writePcap([frame]));
  const { stdout } = await run(["tcpdump", "-nn", "-vv", "-e", "-r", file]);
  return stdout;
}

const dhcpOffer = () =>
  buildDhcpPacket({
    ethSrc: A,
    ethDst: "ff:ff:ff:ff:ff:ff",
    ipSrc: "10.0.0.1",
    ipDst: "255.255.255.255",
    dhcp: {
      op: 2,
      xid: 0x1234abcd,
      chaddr: B,
      yiaddr: "10.0.0.5",
      siaddr: "10.0.0.1",
      broadcast: true,
      options: {
        messageType: 2,
        serverIdentifier: "10.0.0.1",
        ipAddressLeaseTime: 86400,
        renewalTime: 43200,
        rebindingTime: 75600,
        subnetMask: "255.255.255.0",
        broadcastAddress: "10.0.0.255",
        router: ["10.0.0.1"],
        domainNameServer: ["8.8.8.8", "9.9.9.9"],
        domainName: "example.org",
        interfaceMtu: 1450,
        classlessStaticRoutes: [
          { destination: "169.254.169.254/32", router: "10.0.0.2" },
          { destination: "0.0.0.0/0", router: "10.0.0.1" },
        ],
      },
    },
  });

const udp4: FrameSpec = {
  eth: { src: A, dst: B },
  ipv4: { src: "10.0.0.1", dst: "10.0.0.2", identification: 0x4242 },
  udp: { srcPort: 4000, dstPort: 53 },
  payload: Buffer.from("not really dns"),
};

describe("tcpdump decodes what the packet library builds", () => {
  beforeAll(() => {
    if (!["/usr/bin/tcpdump", "/usr/sbin/tcpdump"].some((p) => existsSync(p))) {
      throw new Error("tcpdump is not installed: run `bash scripts/setup` (as root) to install it");
    }
    dir = makeRunDir("pkttcpdump");
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ARP request (VLAN tagged) and reply", async () => {
    expect(await tcpdump(buildArpReply({ mac: A, ip: "10.0.0.1", toMac: B, toIp: "10.0.0.2" }))).toContain(
      "Reply 10.0.0.1 is-at fa:16:3e:00:00:01, length 28",
    );
    const req = await tcpdump(
      buildArpRequest({ senderMac: A, senderIp: "10.0.0.1", targetIp: "10.0.0.2", vlans: [{ vid: 7 }] }),
    );
    expect(req).toContain("ethertype 802.1Q (0x8100), length 46: vlan 7, p 0, ethertype ARP");
    expect(req).toContain("Request who-has 10.0.0.2 tell 10.0.0.1");
  });

  it("DHCP OFFER: every option as built, UDP checksum ok", async () => {
    const out = await tcpdump(dhcpOffer());
    for (const line of [
      "10.0.0.1.67 > 255.255.255.255.68: [udp sum ok] BOOTP/DHCP, Reply",
      "xid 0x1234abcd, Flags [Broadcast]",
      "Your-IP 10.0.0.5",
      "Server-IP 10.0.0.1",
      "Client-Ethernet-Address fa:16:3e:00:00:02",
      "Magic Cookie 0x63825363",
      "DHCP-Message (53), length 1: Offer",
      "Server-ID (54), length 4: 10.0.0.1",
      "Lease-Time (51), length 4: 86400",
      "RN (58), length 4: 43200",
      "RB (59), length 4: 75600",
      "Subnet-Mask (1), length 4: 255.255.255.0",
      "BR (28), length 4: 10.0.0.255",
      "Default-Gateway (3), length 4: 10.0.0.1",
      "Domain-Name-Server (6), length 8: 8.8.8.8,9.9.9.9",
      'Domain-Name (15), length 11: "example.org"',
      "MTU (26), length 2: 1450",
      "Classless-Static-Route (121), length 14: (169.254.169.254/32:10.0.0.2),(default:10.0.0.1)",
    ]) {
      expect(out).toContain(line);
    }
    expect(out).not.toContain("bad");
  });

  it("IPv4 and UDP checksums: correct when computed, reported bad when forced wrong", async () => {
    const good = await tcpdump(buildFrame(udp4));
    expect(good).toContain("id 16962, offset 0, flags [none], proto UDP (17), length 42)");
    expect(good).toContain("10.0.0.1.4000 > 10.0.0.2.53: [udp sum ok]");
    expect(good).not.toContain("bad cksum");
    const bad = await tcpdump(
      buildFrame({
        ...udp4,
        ipv4: { ...udp4.ipv4!, checksum: 0x1234 },
        udp: { srcPort: 4000, dstPort: 53, checksum: 0x1111 },
      }),
    );
    expect(bad).toContain("bad cksum 1234 (->247f)!");
    expect(bad).toContain("[bad udp cksum 0x1111 -> 0x2a38!]");
    const frag = await tcpdump(buildFrame({ ...udp4, ipv4: { ...udp4.ipv4!, moreFragments: true } }));
    expect(frag).toContain("offset 0, flags [+], proto UDP (17)");
  });

  it("NDP: NA, NS and RA with their options, ICMPv6 checksums ok", async () => {
    const na = await tcpdump(
      buildNeighborAdvertisement({ mac: A, target: "fd00::1", toMac: B, toIp: "fd00::2" }),
    );
    expect(na).toContain(
      "fd00::1 > fd00::2: [icmp6 sum ok] ICMP6, neighbor advertisement, length 32, tgt is fd00::1, Flags [solicited, override]",
    );
    expect(na).toContain("destination link-address option (2), length 8 (1): fa:16:3e:00:00:01");
    const ns = await tcpdump(buildNeighborSolicitation({ mac: A, ip: "fd00::1", target: "fd00::abcd" }));
    expect(ns).toContain("> 33:33:ff:00:ab:cd");
    expect(ns).toContain(
      "fd00::1 > ff02::1:ff00:abcd: [icmp6 sum ok] ICMP6, neighbor solicitation, length 32, who has fd00::abcd",
    );
    expect(ns).toContain("source link-address option (1), length 8 (1): fa:16:3e:00:00:01");
    const ra = await tcpdump(
      buildRouterAdvertisement({
        mac: A,
        ip: "fe80::1",
        prefixes: [{ prefix: "fd00:1::", prefixLength: 64 }],
        mtu: 1450,
        managed: true,
      }),
    );
    expect(ra).toContain("fe80::1 > ff02::1: [icmp6 sum ok] ICMP6, router advertisement, length 64");
    expect(ra).toContain("hop limit 64, Flags [managed], pref medium, router lifetime 1800s");
    expect(ra).toContain("mtu option (5), length 8 (1):  1450");
    expect(ra).toContain(
      "prefix info option (3), length 32 (4): fd00:1::/64, Flags [onlink, auto], valid time 2592000s, pref. time 604800s",
    );
  });

  it("ICMP echo (v4, v6), time exceeded and port unreachable quoting the original, bad checksum reported", async () => {
    const echo = await tcpdump(
      buildEchoReply({
        ethSrc: A,
        ethDst: B,
        ipSrc: "10.0.0.1",
        ipDst: "10.0.0.2",
        identifier: 7,
        sequence: 9,
        data: Buffer.from("abcdefgh"),
      }),
    );
    expect(echo).toContain("10.0.0.1 > 10.0.0.2: ICMP echo reply, id 7, seq 9, length 16");
    expect(echo).not.toContain("wrong icmp cksum");
    const echo6 = await tcpdump(
      buildEchoReply({
        ethSrc: A,
        ethDst: B,
        ipSrc: "fd00::1",
        ipDst: "fd00::2",
        identifier: 7,
        sequence: 9,
        data: Buffer.from("abcdefgh"),
        v6: true,
      }),
    );
    expect(echo6).toContain("fd00::1 > fd00::2: [icmp6 sum ok] ICMP6, echo reply, id 7, seq 9");
    const original = buildFrame(udp4).subarray(14);
    const te = await tcpdump(
      buildFrame({
        eth: { src: A, dst: B },
        ipv4: { src: "10.0.0.9", dst: "10.0.0.1" },
        icmp: icmpTimeExceeded(0, original),
      }),
    );
    expect(te).toContain("10.0.0.9 > 10.0.0.1: ICMP time exceeded in-transit, length 50");
    expect(te).toContain("10.0.0.1.4000 > 10.0.0.2.53: [udp sum ok]");
    const un = await tcpdump(
      buildFrame({
        eth: { src: A, dst: B },
        ipv4: { src: "10.0.0.2", dst: "10.0.0.1" },
        icmp: icmpDestUnreachable(3, original),
      }),
    );
    expect(un).toContain("ICMP 10.0.0.2 udp port 53 unreachable, length 50");
    const bad = await tcpdump(
      buildFrame({
        eth: { src: A, dst: B },
        ipv4: { src: "10.0.0.2", dst: "10.0.0.1" },
        icmp: { type: 8, rest: 0x00070001, checksum: 5 },
      }),
    );
    expect(bad).toContain("ICMP echo request, id 7, seq 1, length 8 (wrong icmp cksum 5 (->f7f7)!)");
  });

  it("QinQ-tagged TCP with IPv4 options, and TCP over an IPv6 extension chain", async () => {
    const qinq = await tcpdump(
      buildFrame({
        eth: { src: A, dst: B },
        vlans: [{ vid: 100 }, { vid: 200, pcp: 3 }],
        ipv4: {
          src: "1.2.3.4",
          dst: "5.6.7.8",
          options: Buffer.from([1, 1, 1, 0]),
          dontFragment: true,
          ttl: 17,
        },
        tcp: {
          srcPort: 1234,
          dstPort: 80,
          seq: 1000,
          flags: { syn: true, ece: true, cwr: true },
          window: 4096,
          options: Buffer.from([2, 4, 5, 180, 1, 3, 3, 7]),
        },
        payload: Buffer.from("hi"),
      }),
    );
    expect(qinq).toContain(
      "ethertype 802.1Q-QinQ (0x88a8), length 76: vlan 100, p 0, ethertype 802.1Q (0x8100), vlan 200, p 3, ethertype IPv4",
    );
    expect(qinq).toContain(
      "ttl 17, id 0, offset 0, flags [DF], proto TCP (6), length 54, options (NOP,NOP,NOP,EOL))",
    );
    expect(qinq).toMatch(
      /1\.2\.3\.4\.1234 > 5\.6\.7\.8\.80: Flags \[SEW\], cksum 0x[0-9a-f]{4} \(correct\), seq 1000:1002, win 4096, options \[mss 1460,nop,wscale 7\]/,
    );
    const v6 = await tcpdump(
      buildFrame({
        eth: { src: A, dst: B },
        ipv6: {
          src: "fd00::1",
          dst: "fd00::2",
          flowLabel: 0x12345,
          trafficClass: 0xb8,
          extensions: [
            { kind: "hop-by-hop", options: [{ type: 5, data: Buffer.from([0, 0]) }] },
            { kind: "fragment", fragmentOffset: 0, moreFragments: false, identification: 0xdeadbeef },
            { kind: "destination-options", options: [] },
          ],
        },
        tcp: { srcPort: 5555, dstPort: 22, seq: 1, ack: 2, flags: { ack: true, psh: true } },
        payload: Buffer.from("ssh"),
      }),
    );
    expect(v6).toContain(
      "(class 0xb8, flowlabel 0x12345, hlim 64, next-header Options (0) payload length: 47)",
    );
    expect(v6).toContain(
      "HBH (rtalert: 0x0000) (padn) frag (0xdeadbeef:0|31) DSTOPT (padn) 5555 > 22: Flags [P.], seq 1:4, ack 2",
    );
  });
});
