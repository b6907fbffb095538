/**
 * Fuzzing the IPv6 configuration decoders and deciders with fast-check:
 * random bytes, every truncation and random corruption of real client
 * messages (the capture in test/fixtures/packet/ipv6-clients.pcap) and of
 * messages we build. The DHCPv6 and DUID decoders may raise only a
 * DecodeError with a message naming the layer; the RA and DHCPv6 deciders,
 * handed whole frames, never throw at all — they answer or say why not.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { handleDhcp6Frame, type Dhcp6Context } from "../../src/apps/dhcp/responder6.js";
import { handleRouterSolicitation, type RsContext } from "../../src/apps/ipv6/ra.js";
import type { Network, Port, Subnet } from "../../src/nb/model/index.js";
import { decodeDhcp6, decodeDuid, encodeDhcp6, parseEthernet, readPcap } from "../../src/packet/index.js";
import { DecodeError } from "../../src/util/errors.js";

const capture = readPcap(
  readFileSync(new URL("../fixtures/packet/ipv6-clients.pcap", import.meta.url)),
).records.map((r) => r.data);
const dhcpFrames = capture.filter((b) => parseEthernet(b).udp);
const rsFrames = capture.filter((b) => parseEthernet(b).icmpv6);
const payloads = dhcpFrames.map((b) => parseEthernet(b).payload);
const CLIENT_MAC = "fa:16:3e:11:22:33";

function decodesOrDecodeError(fn: () => unknown): "ok" | "error" {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (!(e instanceof DecodeError)) throw e;
    expect(e.message).toMatch(/^[a-z0-9 ]+( [a-z-]+)*:/);
    return "error";
  }
}

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const edits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 });

function corrupt(b: Buffer, changes: [number, number][]): Buffer {
  const out = Buffer.from(b);
  for (const [at, v] of changes) if (out.length > 0) out[at % out.length] = v;
  return out;
}

const subnet = {
  id: "sub1",
  tenantId: "t1",
  name: "s",
  description: "",
  networkId: "net1",
  cidr: "2001:db8:1::/64",
  ipVersion: 6,
  gatewayIp: "2001:db8:1::1",
  allocationPools: [],
  enableDhcp: true,
  dhcpOptions: {},
  dnsNameservers: ["2001:db8::53"],
  hostRoutes: [],
  ipv6RaMode: "dhcpv6-stateful",
  ipv6AddressMode: "dhcpv6-stateful",
} as Subnet;
const network = { id: "net1", mtu: 1500 } as Network;
const port = {
  id: "p1",
  networkId: "net1",
  macAddress: CLIENT_MAC,
  fixedIps: [{ subnetId: "sub1", ipAddress: "2001:db8:1::5" }],
  adminStateUp: true,
  extraDhcpOptions: [],
} as unknown as Port;
const dhcpCtx: Dhcp6Context = { port, subnet, network, serverMac: "fa:16:3e:aa:00:20" };
const rsCtx: RsContext = { port, subnets: [subnet], network, macAddress: "fa:16:3e:aa:00:20" };

function decides(d: { kind: string }): void {
  expect(["reply", "send", "ignore"]).toContain(d.kind);
}

describe("DHCPv6 decoders under fuzzing", () => {
  it("random bytes → a message or a DecodeError", () => {
    fc.assert(
      fc.property(bytes(300), (b) => {
        decodesOrDecodeError(() => decodeDhcp6(b));
        decodesOrDecodeError(() => decodeDuid(b));
      }),
      { numRuns: 5000 },
    );
  });

  it("every truncation of each captured client message", () => {
    let errors = 0;
    for (const p of payloads) {
      for (let n = 0; n < p.length; n++)
        if (decodesOrDecodeError(() => decodeDhcp6(p.subarray(0, n))) === "error") errors++;
    }
    expect(errors).toBeGreaterThan(0);
  });

  it("random corruption of captured messages; what still decodes re-encodes and decodes the same", () => {
    fc.assert(
      fc.property(fc.constantFrom(...payloads), edits, (p, e) => {
        const b = corrupt(p, e);
        if (decodesOrDecodeError(() => decodeDhcp6(b)) === "ok") {
          const m = decodeDhcp6(b);
          expect(decodeDhcp6(encodeDhcp6(m))).toEqual(m);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it("random option TLVs behind a valid header", () => {
    const tlv = fc
      .record({
        code: fc.integer({ min: 0, max: 40 }),
        body: bytes(40),
        lie: fc.integer({ min: -4, max: 4 }),
      })
      .map(({ code, body, lie }) => {
        const h = Buffer.alloc(4);
        h.writeUInt16BE(code, 0);
        h.writeUInt16BE(Math.max(0, body.length + lie), 2);
        return Buffer.concat([h, body]);
      });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 13 }), fc.array(tlv, { maxLength: 5 }), (type, tlvs) => {
        const head = type >= 12 ? Buffer.alloc(34) : Buffer.alloc(4);
        head[0] = type;
        decodesOrDecodeError(() => decodeDhcp6(Buffer.concat([head, ...tlvs])));
      }),
      { numRuns: 5000 },
    );
  });
});

describe("the IPv6 deciders never throw", () => {
  it("handleDhcp6Frame on random, truncated and corrupted frames", () => {
    fc.assert(
      fc.property(bytes(200), (b) => decides(handleDhcp6Frame(b, dhcpCtx))),
      { numRuns: 2000 },
    );
    for (const f of dhcpFrames)
      for (let n = 0; n <= f.length; n++) decides(handleDhcp6Frame(f.subarray(0, n), dhcpCtx));
    fc.assert(
      fc.property(fc.constantFrom(...dhcpFrames), edits, (f, e) =>
        decides(handleDhcp6Frame(corrupt(f, e), dhcpCtx)),
      ),
      { numRuns: 3000 },
    );
  });

  it("handleRouterSolicitation on random, truncated and corrupted frames", () => {
    fc.assert(
      fc.property(bytes(200), (b) => decides(handleRouterSolicitation(b, rsCtx))),
      { numRuns: 2000 },
    );
    for (const f of rsFrames)
      for (let n = 0; n <= f.length; n++) decides(handleRouterSolicitation(f.subarray(0, n), rsCtx));
    fc.assert(
      fc.property(fc.constantFrom(...rsFrames), edits, (f, e) =>
        decides(handleRouterSolicitation(corrupt(f, e), rsCtx)),
      ),
      { numRuns: 3000 },
    );
  });

  it("the captured frames themselves are answered", () => {
    for (const f of rsFrames) expect(handleRouterSolicitation(f, rsCtx).kind).toBe("send");
    // dhclient's SOLICIT and INFORMATION-REQUEST came from this port's MAC.
    expect(handleDhcp6Frame(dhcpFrames[0]!, dhcpCtx)).toMatchObject({
      kind: "reply",
      messageType: "ADVERTISE",
    });
    expect(handleDhcp6Frame(dhcpFrames[1]!, dhcpCtx)).toMatchObject({ kind: "reply", messageType: "REPLY" });
  });
});
