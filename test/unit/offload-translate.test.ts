/**
 * The planner's device filters as tc-flower rules (src/offload/datapath/
 * translate.ts), checked against iproute2: every translated rule must encode
 * to exactly the netlink request that the `tc filter add` command line an
 * operator would write for it sends (the command lines are parsed by
 * flowdrake's tc syntax, whose bytes equal iproute2 6.1's, see
 * netlink-tc-golden.test.ts). flowdrake sends its filters as protocol all
 * with the ethertype as a flower key (so that filters of several ethertypes
 * share a prio) — iproute2 cannot say that, so the comparison moves the key
 * into the protocol; a separate case checks the protocol-all form itself.
 *
 * Then: what cannot be translated, the cookie that marks flowdrake's filters,
 * and how a dumped filter is told apart from foreign ones.
 */
import { describe, expect, it } from "vitest";
import { ourFilter } from "../../src/offload/datapath/kernel.js";
import type { DeviceRule } from "../../src/offload/datapath/filters.js";
import { kindOf } from "../../src/offload/datapath/filters.js";
import {
  filterCookie,
  flaggedSig,
  keyHashOf,
  parseFilterCookie,
  sigHashOf,
  type TcFlags,
  translate,
} from "../../src/offload/datapath/translate.js";
import {
  commandMessage,
  encodeRequest,
  filterAddMessage,
  type InstalledFilter,
} from "../../src/offload/netlink/tc/client.js";
import {
  ETH_P_ALL,
  type FlowerRule,
  flowerFromOptions,
  flowerOptions,
} from "../../src/offload/netlink/tc/rule.js";
import { parseTcCommand } from "../../src/offload/netlink/tc/syntax.js";
import { exact, type Match } from "../../src/offload/planner/ir.js";
import type { TcAction, TcRule } from "../../src/offload/planner/plan.js";

const IFINDEX: Record<string, number> = {
  rep1: 11,
  rep2: 12,
  rep3: 13,
  genev_sys_6081: 20,
  vxlan_sys_4789: 21,
};
const ctx = (flags: TcFlags = "skip_hw") => ({
  ifindex: (d: string) => IFINDEX[d],
  flags,
  tunnelSrc: "192.168.50.1",
});

function device(
  dev: string,
  chain: number,
  prio: number,
  match: Match,
  actions: TcAction[],
  role: TcRule["role"] = "offload",
): DeviceRule {
  const rule: TcRule = { chain, prio, match, indev: dev, actions, role, ruleId: "r" };
  return {
    dev,
    rule,
    origins: ["r"],
    key: `${dev}|${chain}|${prio}|k`,
    sig: `${dev}|${chain}|${prio}|s`,
    table: 0,
    kind: kindOf(rule),
  };
}

const ip = exact("eth_type", 0x800);
const mac = (n: number) => BigInt(0x020000000000 + n);

function ok(d: DeviceRule, flags?: TcFlags): FlowerRule {
  const t = translate(d, ctx(flags));
  if (!t.ok) throw new Error(t.reason);
  return t.rule;
}

/** The request iproute2 sends for `cmd` on `dev`'s ingress. */
function iproute2(cmd: string): Buffer {
  const argv = cmd.split(/\s+/).filter(Boolean);
  const resolve = (name: string) => {
    const i = IFINDEX[name];
    if (i === undefined) throw new Error(`no device ${name}`);
    return i;
  };
  return encodeRequest(commandMessage(parseTcCommand(argv, resolve)));
}

/** flowdrake's request for `rule`, with the eth_type key moved into the protocol as iproute2 puts it. */
function asIproute2(dev: string, rule: FlowerRule): Buffer {
  const { ethType, ...rest } = rule;
  const r: FlowerRule = ethType === undefined ? rest : { ...rest, protocol: ethType };
  return encodeRequest(filterAddMessage({ ifindex: IFINDEX[dev]!, hook: "ingress" }, r));
}

describe("a device filter as the tc command an operator would write", () => {
  const cases: { name: string; d: DeviceRule; flags?: TcFlags; tc: (cookie: string) => string }[] = [
    {
      name: "L2 forwarding: destination MAC → redirect to the VM's representor",
      d: device("rep1", 0, 5, { eth_dst: exact("eth_dst", mac(3)) }, [{ type: "redirect", dev: "rep3" }]),
      tc: (c) =>
        `filter add dev rep1 ingress chain 0 prio 5 protocol all flower skip_hw dst_mac 02:00:00:00:00:03 action mirred egress redirect dev rep3 cookie ${c}`,
    },
    {
      name: "an IPv4/ICMP match, a goto to a register-specialised chain",
      d: device(
        "rep2",
        0,
        7,
        { eth_type: ip, ip_proto: exact("ip_proto", 1), ipv4_dst: { value: 0x0a000000n, mask: 0xffffff00n } },
        [{ type: "goto", chain: 1003 }],
      ),
      tc: (c) =>
        `filter add dev rep2 ingress chain 0 prio 7 protocol ip flower skip_hw ip_proto icmp dst_ip 10.0.0.0/24 action goto chain 1003 cookie ${c}`,
    },
    {
      name: "Geneve encapsulation to a remote chassis (as OVS's flow-based port sends it)",
      d: device("rep1", 1002, 9, { eth_dst: exact("eth_dst", mac(9)) }, [
        { type: "tunnel_set", id: 100n, dst: 0xc0a83202n, tunnel: "geneve" },
        { type: "redirect", dev: "genev_sys_6081" },
      ]),
      tc: (c) =>
        `filter add dev rep1 ingress chain 1002 prio 9 protocol all flower skip_hw dst_mac 02:00:00:00:00:09 ` +
        `action tunnel_key set src_ip 192.168.50.1 dst_ip 192.168.50.2 id 100 dst_port 6081 ttl 64 nocsum cookie ${c} ` +
        `action mirred egress redirect dev genev_sys_6081 cookie ${c}`,
    },
    {
      name: "VXLAN decapsulation on the tunnel device: key and outer addresses, metadata released at the output",
      d: device(
        "vxlan_sys_4789",
        0,
        11,
        {
          tun_id: exact("tun_id", 42),
          tun_src: exact("tun_src", 0xc0a83202),
          eth_dst: exact("eth_dst", mac(1)),
        },
        [{ type: "tunnel_unset" }, { type: "redirect", dev: "rep1" }],
      ),
      tc: (c) =>
        `filter add dev vxlan_sys_4789 ingress chain 0 prio 11 protocol all flower skip_hw dst_mac 02:00:00:00:00:01 ` +
        `enc_key_id 42 enc_src_ip 192.168.50.2 action tunnel_key unset pipe cookie ${c} action mirred egress redirect dev rep1 cookie ${c}`,
    },
    {
      name: "routing: MAC rewrite and TTL decrement in one pedit, the IPv4 checksum after it",
      d: device("rep1", 1004, 13, { eth_type: ip, ipv4_dst: exact("ipv4_dst", 0x0a010005) }, [
        { type: "pedit", field: "eth_dst", value: mac(9) },
        { type: "pedit", field: "eth_src", value: mac(8) },
        { type: "dec_ttl" },
        { type: "redirect", dev: "rep2" },
      ]),
      tc: (c) =>
        `filter add dev rep1 ingress chain 1004 prio 13 protocol ip flower skip_hw dst_ip 10.1.0.5 ` +
        `action pedit ex munge eth dst set 02:00:00:00:00:09 munge eth src set 02:00:00:00:00:08 munge ip ttl add 255 pipe cookie ${c} ` +
        `action csum ip4h pipe cookie ${c} action mirred egress redirect dev rep2 cookie ${c}`,
    },
    {
      name: "a provider VLAN: match the tag, pop it; push one towards the uplink",
      d: device(
        "rep3",
        0,
        15,
        { vlan_vid: exact("vlan_vid", 0x1000 | 100), eth_type: ip, ipv4_dst: exact("ipv4_dst", 0x0a000002) },
        [
          { type: "vlan_pop" },
          { type: "mirror", dev: "rep1" },
          { type: "vlan_push", vid: 200 },
          { type: "redirect", dev: "rep2" },
        ],
      ),
      tc: (c) =>
        `filter add dev rep3 ingress chain 0 prio 15 protocol 802.1Q flower skip_hw vlan_id 100 vlan_ethtype ip dst_ip 10.0.0.2 ` +
        `action vlan pop pipe cookie ${c} action mirred egress mirror dev rep1 cookie ${c} ` +
        `action vlan push id 200 pipe cookie ${c} action mirred egress redirect dev rep2 cookie ${c}`,
    },
    {
      name: "established connections: ct state and zone, ct in the zone, goto the next chain",
      d: device(
        "rep1",
        1005,
        17,
        {
          eth_type: ip,
          ct_state: { value: 0x22n, mask: 0x22n },
          ct_zone: exact("ct_zone", 5),
        },
        [
          { type: "ct", zone: 5, commit: true, nat: false },
          { type: "goto", chain: 1006 },
        ],
      ),
      tc: (c) =>
        `filter add dev rep1 ingress chain 1005 prio 17 protocol ip flower skip_hw ct_state +trk+est ct_zone 5 ` +
        `action ct commit zone 5 pipe cookie ${c} action goto chain 1006 cookie ${c}`,
    },
    {
      name: "SNAT: ct commit in the router's zone with nat src addr, as OVS's ct(commit,nat(src=…)) sets it up",
      d: device("rep1", 1035, 3, { eth_type: ip, ipv4_src: exact("ipv4_src", 0x0a01000bn) }, [
        {
          type: "ct",
          zone: 65452,
          commit: true,
          nat: true,
          natRange: { kind: "src", ipMin: "172.24.4.50", ipMax: "172.24.4.50" },
        },
        { type: "goto", chain: 1036 },
      ]),
      tc: (c) =>
        `filter add dev rep1 ingress chain 1035 prio 3 protocol ip flower skip_hw src_ip 10.1.0.11 ` +
        `action ct commit zone 65452 nat src addr 172.24.4.50 pipe cookie ${c} action goto chain 1036 cookie ${c}`,
    },
    {
      name: "DNAT with address and port ranges; a NAT without a range only restores (ct nat)",
      d: device("rep2", 1035, 4, { eth_type: ip }, [
        {
          type: "ct",
          zone: 7,
          commit: true,
          nat: true,
          natRange: { kind: "dst", ipMin: "10.0.0.5", ipMax: "10.0.0.9", portMin: 80, portMax: 90 },
        },
        { type: "ct", zone: 8, commit: false, nat: true },
        { type: "goto", chain: 1036 },
      ]),
      tc: (c) =>
        `filter add dev rep2 ingress chain 1035 prio 4 protocol ip flower skip_hw ` +
        `action ct commit zone 7 nat dst addr 10.0.0.5-10.0.0.9 port 80-90 pipe cookie ${c} ` +
        `action ct zone 8 nat pipe cookie ${c} action goto chain 1036 cookie ${c}`,
    },
    {
      name: "a trap hands the packet to OVS untouched (gact pass); the NIC's drop is gact drop",
      d: device("rep2", 0, 19, { eth_type: exact("eth_type", 0x806) }, [{ type: "pass" }], "trap"),
      tc: (c) =>
        `filter add dev rep2 ingress chain 0 prio 19 protocol arp flower skip_hw action gact pass cookie ${c}`,
    },
    {
      name: "a trap after a ct lookup OVS would see clears the packet's conntrack state first (act_ct clear)",
      d: device(
        "rep2",
        1009,
        23,
        { eth_type: exact("eth_type", 0x86dd) },
        [{ type: "ct_clear" }, { type: "pass" }],
        "trap",
      ),
      tc: (c) =>
        `filter add dev rep2 ingress chain 1009 prio 23 protocol ipv6 flower skip_hw ` +
        `action ct clear pipe cookie ${c} action gact pass cookie ${c}`,
    },
    {
      name: "under skip_sw (a real NIC) a trap is `trap`: the NIC hands the packet to the kernel",
      d: device("rep2", 0, 21, { eth_dst: exact("eth_dst", mac(10)) }, [{ type: "pass" }], "trap"),
      flags: "skip_sw",
      tc: (c) =>
        `filter add dev rep2 ingress chain 0 prio 21 protocol all flower skip_sw dst_mac 02:00:00:00:00:0a action trap cookie ${c}`,
    },
    {
      name: "the table miss: drop",
      d: device("rep2", 1007, 65535, {}, [{ type: "drop" }]),
      tc: (c) =>
        `filter add dev rep2 ingress chain 1007 prio 65535 protocol all flower skip_hw action drop cookie ${c}`,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const rule = ok(c.d, c.flags);
      const cookie = filterCookie(c.d.key, flaggedSig(c.d.sig, c.flags ?? "skip_hw"));
      expect(asIproute2(c.d.dev, rule).toString("hex")).toBe(iproute2(c.tc(cookie)).toString("hex"));
    });
  }

  it("sends protocol all with the ethertype as a flower key, and reads it back so", () => {
    const rule = ok(
      device("rep1", 0, 3, { eth_type: ip, ip_proto: exact("ip_proto", 6) }, [{ type: "drop" }]),
    );
    expect(rule.protocol).toBe(ETH_P_ALL);
    expect(rule.ethType).toBe(0x800);
    const opts = flowerOptions(rule);
    expect(opts.KEY_ETH_TYPE).toBe(0x800);
    const back = flowerFromOptions(opts, { chain: 0, prio: 3, protocol: ETH_P_ALL });
    expect(back.ethType).toBe(0x800);
    expect(back.protocol).toBe(ETH_P_ALL);
    expect(back.match).toEqual(rule.match);
  });
});

describe("what cannot be translated", () => {
  const fails = (d: DeviceRule, maxPrio?: number) => {
    const t = translate(d, { ...ctx(), ...(maxPrio !== undefined ? { maxPrio } : {}) });
    expect(t.ok).toBe(false);
    return t.ok ? "" : t.reason;
  };
  it("refuses keys flower lacks in a rule that acts on the packet, with the reason", () => {
    expect(fails(device("rep1", 0, 3, { vlan_vid: { value: 0n, mask: 0x1000n } }, [{ type: "drop" }]))).toBe(
      "flower cannot match the absence of a VLAN tag",
    );
    expect(
      fails(
        device("rep1", 0, 3, { eth_type: exact("eth_type", 0x806), arp_op: exact("arp_op", 1) }, [
          { type: "drop" },
        ]),
      ),
    ).toBe("match on arp_op has no flower key in flowdrake");
    expect(fails(device("rep1", 0, 3, { tun_id: exact("tun_id", 1n << 40n) }, [{ type: "drop" }]))).toBe(
      "tun_id must be an exact 32-bit key for flower",
    );
    expect(fails(device("rep1", 0, 3, {}, [{ type: "redirect", dev: "gone0" }]))).toBe(
      "device gone0 does not exist",
    );
    expect(fails(device("rep1", 0, 40, {}, [{ type: "drop" }]), 16)).toBe("prio 40 is beyond the NIC's 16");
  });

  it("leaves such keys out of a trap: a coarser trap sends more packets to OVS, never fewer", () => {
    const rule = ok(
      device(
        "rep1",
        0,
        3,
        { eth_type: exact("eth_type", 0x806), arp_op: exact("arp_op", 1) },
        [{ type: "pass" }],
        "trap",
      ),
    );
    expect(rule.ethType).toBe(0x806);
    expect(rule.match).toEqual({});
  });
});

describe("the cookie", () => {
  it("carries a magic, the key's hash and the signature's hash", () => {
    const c = filterCookie("rep1|0|5|k", "rep1|0|5|k|offload|redirect:rep3");
    expect(c).toHaveLength(32);
    expect(parseFilterCookie(c)).toEqual({
      keyHash: keyHashOf("rep1|0|5|k"),
      sigHash: sigHashOf("rep1|0|5|k|offload|redirect:rep3"),
    });
    expect(parseFilterCookie("666401a1b2c3d4e5f60718293a4b5c6d")).toBeUndefined();
    expect(parseFilterCookie(undefined)).toBeUndefined();
    expect(parseFilterCookie(c.slice(0, 30))).toBeUndefined();
  });

  it("tells flowdrake's dumped filters from foreign ones (OVS's, an operator's)", () => {
    const d = device("rep1", 0, 5, { eth_dst: exact("eth_dst", mac(3)) }, [
      { type: "redirect", dev: "rep3" },
    ]);
    const rule = { ...ok(d), handle: 7 };
    const dumped: InstalledFilter = {
      kind: "flower",
      ifindex: 11,
      parent: 0xfffffff2,
      chain: 0,
      prio: 5,
      protocol: ETH_P_ALL,
      handle: 7,
      rule,
    };
    expect(ourFilter("rep1", dumped)).toMatchObject({
      dev: "rep1",
      handle: 7,
      keyHash: keyHashOf(d.key),
      sigHash: sigHashOf(flaggedSig(d.sig, "skip_hw")),
    });
    const foreign = { ...dumped, rule: { ...rule, actions: rule.actions.map(({ cookie: _c, ...a }) => a) } };
    expect(ourFilter("rep1", foreign)).toBeUndefined();
    expect(ourFilter("rep1", { ...dumped, handle: 0 })).toBeUndefined();
    const ovs = {
      ...dumped,
      rule: { ...rule, actions: rule.actions.map((a) => ({ ...a, cookie: "a1b2c3d4e5f60718" })) },
    };
    expect(ourFilter("rep1", ovs)).toBeUndefined();
  });
});
