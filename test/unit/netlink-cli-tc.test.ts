/**
 * `flowdrake tc --dry-run --hex …`: the printed request equals the bytes
 * iproute2's tc sent for the same words (test/fixtures/tc/golden.json, seq and
 * pid masked), both through runTc and through the commander wiring (which must
 * hand words like `-trk` to the tc parser untouched).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { batchLines, filterJson, filterText, register, runTc, splitTcArgv } from "../../src/cli/tc.js";
import { parseTcCommand } from "../../src/offload/netlink/tc/syntax.js";
import { UsageError } from "../../src/util/errors.js";

const here = dirname(fileURLToPath(import.meta.url));
const golden = JSON.parse(readFileSync(join(here, "../fixtures/tc/golden.json"), "utf8")) as {
  ifindex: Record<string, number>;
  cases: { name: string; cmd: string; hex: string }[];
};
const ifindexFlags = Object.entries(golden.ifindex).flatMap(([d, i]) => ["--ifindex", `${d}=${i}`]);

function maskSeqPid(hex: string): string {
  return hex.slice(0, 16) + "0".repeat(16) + hex.slice(32);
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("flowdrake tc --dry-run --hex", () => {
  it.each(golden.cases.map((c) => [c.name, c] as const))("%s prints tc's bytes", (_n, c) => {
    const out = runTc(["--dry-run", "--hex", ...ifindexFlags, ...c.cmd.split(/\s+/)]);
    expect(maskSeqPid(out.trim())).toBe(maskSeqPid(c.hex));
  });

  it("runs through commander with flags anywhere and dashed tc words intact", async () => {
    const c = golden.cases.find((x) => x.name === "goto-chain")!;
    expect(c.cmd).toContain("-trk");
    const printed: string[] = [];
    vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => {
      printed.push(String(s));
      return true;
    });
    const program = new Command("flowdrake").exitOverride();
    register(program);
    await program.parseAsync(["tc", ...c.cmd.split(/\s+/), "--dry-run", ...ifindexFlags, "--hex"], {
      from: "user",
    });
    expect(printed).toHaveLength(1);
    expect(maskSeqPid(printed[0]!.trim())).toBe(maskSeqPid(c.hex));
  });

  it("splits flowdrake's flags from tc's words", () => {
    expect(splitTcArgv(["filter", "--hex", "--ifindex=a=1", "x", "--dry-run"])).toEqual({
      dryRun: true,
      hex: true,
      json: false,
      ifindex: { a: 1 },
      args: ["filter", "x"],
    });
    expect(splitTcArgv(["--netns", "ns1", "filter", "show", "--json", "--netns=ns2"])).toMatchObject({
      json: true,
      netns: "ns2",
      args: ["filter", "show"],
    });
    expect(() => splitTcArgv(["--netns", "../x"])).toThrow(UsageError);
    expect(() => splitTcArgv(["--netns"])).toThrow(UsageError);
  });

  it("reads batch files as tc -b does: comments and blank lines skipped, line numbers kept", () => {
    const text =
      "# header\n\nqdisc add dev v0 clsact\n  tc filter add dev v0 ingress flower action drop # c\n";
    expect(batchLines(text)).toEqual([
      { line: 3, words: ["qdisc", "add", "dev", "v0", "clsact"] },
      { line: 4, words: ["filter", "add", "dev", "v0", "ingress", "flower", "action", "drop"] },
    ]);
  });

  it("prints a dumped rule with tc-like text, rule counters and JSON", () => {
    const rule = {
      prio: 10,
      protocol: 0x0800,
      handle: 1,
      match: { ipProto: 1, dstIp: { value: "10.0.0.2", mask: "255.255.255.255" } },
      flags: { skipHw: true, notInHw: true },
      actions: [
        {
          kind: "mirred" as const,
          direction: "egress" as const,
          mode: "redirect" as const,
          ifindex: 7,
          control: 4,
          index: 1,
          stats: { bytes: 980n, packets: 10, hwBytes: 0n, hwPackets: 0 },
        },
      ],
    };
    const f = {
      ifindex: 3,
      parent: 0xfffffff2,
      kind: "flower",
      chain: 0,
      prio: 10,
      protocol: 0x0800,
      handle: 1,
      rule,
    };
    const names = (i: number) => (i === 7 ? "rb" : `if${i}`);
    const text = filterText(f, names);
    expect(text).toContain("filter protocol ip pref 10 flower chain 0 handle 0x1");
    expect(text).toContain("Egress Redirect to device rb");
    expect(text).toContain("stats: 10 pkt 980 bytes (sw 10 pkt 980 bytes, hw 0 pkt 0 bytes) not_in_hw");
    const j = filterJson(f, "ra", names);
    expect(j).toMatchObject({ dev: "ra", hook: "ingress", prio: 10, protocol: "ip", handle: 1, inHw: false });
    expect(j.stats).toEqual({
      packets: 10,
      bytes: 980,
      hwPackets: 0,
      hwBytes: 0,
      swPackets: 10,
      swBytes: 980,
    });
    expect(j.actions?.[0]).toMatchObject({ kind: "mirred", dev: "rb", stats: { packets: 10, bytes: 980 } });
    expect(() => JSON.stringify(j)).not.toThrow();
  });

  it("rejects bad input with UsageError", () => {
    const add = "filter add dev v0 ingress protocol ip prio 1 flower action drop".split(" ");
    expect(() => runTc([...ifindexFlags, ...add])).toThrow(UsageError);
    expect(() => runTc(["--dry-run", "--hex", ...ifindexFlags])).toThrow(UsageError);
    expect(() => runTc(["--dry-run", "--hex", "--ifindex", "v0"])).toThrow(UsageError);
    const noDev = add.map((w) => (w === "v0" ? "fdnodev9" : w));
    expect(() => runTc(["--dry-run", "--hex", ...noDev])).toThrow(/no such device/);
    const badName = add.map((w) => (w === "v0" ? "../../etc" : w));
    expect(() => runTc(["--dry-run", "--hex", ...badName])).toThrow(/invalid device name/);
    expect(() => runTc(["--dry-run", "--hex", ...ifindexFlags, ...add, "bogus_key"])).toThrow(UsageError);
  });
});

describe("action cookies and ICMP keys", () => {
  const parse = (line: string) => parseTcCommand(line.split(" "), () => 7);

  it("parses a cookie after each action, prints it and refuses a malformed one", () => {
    const cmd = parse(
      "filter add dev v0 ingress prio 3 protocol all flower action tunnel_key unset pipe cookie 0011 action mirred egress redirect dev v1 cookie AABB",
    );
    if (cmd.object !== "filter" || (cmd.verb !== "add" && cmd.verb !== "replace")) throw new Error(cmd.verb);
    expect(cmd.rule.actions.map((a) => a.cookie)).toEqual(["0011", "aabb"]);
    const f = { ifindex: 3, parent: 0xfffffff2, kind: "flower", chain: 0, prio: 3, protocol: 3, handle: 1 };
    expect(filterText({ ...f, rule: cmd.rule }, () => "v1")).toMatch(/Redirect.*\n\tcookie aabb/s);
    expect(filterJson({ ...f, rule: cmd.rule }, "v0", () => "v1").actions?.[1]).toMatchObject({
      cookie: "aabb",
    });
    for (const bad of ["abc", "zz", "00".repeat(17)]) {
      expect(() =>
        parse(`filter add dev v0 ingress prio 3 protocol all flower action drop cookie ${bad}`),
      ).toThrow(UsageError);
    }
  });

  it("parses ICMP type and code only after ip_proto icmp or icmpv6", () => {
    const cmd = parse(
      "filter add dev v0 ingress prio 3 protocol ip flower ip_proto icmp type 8 code 0 action drop",
    );
    if (cmd.object !== "filter" || cmd.verb !== "add") throw new Error(cmd.verb);
    expect(cmd.rule.match).toMatchObject({
      icmpType: { value: 8, mask: 0xff },
      icmpCode: { value: 0, mask: 0xff },
    });
    expect(() =>
      parse("filter add dev v0 ingress prio 3 protocol ip flower ip_proto tcp type 8 action drop"),
    ).toThrow(/needs ip_proto icmp/);
  });
});

describe("tc parser fast paths", () => {
  it("canonical and non-canonical spellings of an address parse to the same rule", () => {
    const resolve = () => 1;
    const parse = (mac: string, ip: string) =>
      parseTcCommand(
        `filter add dev d ingress protocol ip flower dst_mac ${mac} dst_ip ${ip} action drop`.split(" "),
        resolve,
      );
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }),
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
        (m, ip) => {
          const canonical = parse(m.map((x) => x.toString(16).padStart(2, "0")).join(":"), ip.join("."));
          const odd = parse(
            m.map((x) => x.toString(16).toUpperCase()).join(":"),
            ip.map((x) => String(x).padStart(3, "0")).join("."),
          );
          expect(odd).toEqual(canonical);
          expect(canonical.object === "filter" && "rule" in canonical && canonical.rule.match.dstIp).toEqual({
            value: ip.join("."),
            mask: "255.255.255.255",
          });
        },
      ),
    );
  });
});
