/* global process, setTimeout, setInterval, fetch */
// The node side of the "flowdrake-offload" kernel-lane scenario: small
// commands the bash script runs inside the guest, on the host's built dist/
// (LANE_REPO). They load only what they need: the full CLI (dist/src/cli/
// main.js) also loads every other command's dependencies, which costs tens
// of seconds over 9p under TCG.
//
//   model DB [N]                the NB model: network net1 (geneve, VNI 101,
//                               MTU 1400) with subnet 10.1.0.0/24 (DHCP), ports
//                               vm1..vmN (default 4), vmI with MAC
//                               fa:16:3e:00:00:1I and address 10.1.0.1I
//   router DB                   network net2 (geneve, VNI 102) with subnet
//                               10.2.0.0/24, router r1 joining sub1 and sub2,
//                               and port vm5 on net2 (fa:16:3e:00:00:15,
//                               10.2.0.15): the routed pair vm1 → vm5
//   nat DB                      network ext (flat, physnet1, external) with
//                               subnet 172.24.4.0/24, router r1 joining sub1,
//                               its SNAT gateway at 172.24.4.10
//                               (fa:16:3e:fe:00:10, on host1) and vm1's
//                               floating IP 172.24.4.50 (fa:16:3e:fe:00:50)
//   secgroup DB N               security group sg1 on ports vm1..vmN: ingress
//                               ICMP from vm1's address (10.1.0.11/32) only,
//                               egress anything (IPv4)
//   secgroup-revoke DB          sg1's ICMP rule removed (its egress rule stays as
//                               it is)
//   port-del DB ID | port-add DB ID   remove / re-create one port (churn)
//   nb-hold DB                  hold the embedded NB and serve it on its
//                               nb.sock until SIGTERM (as an agent would, so
//                               that killing an agent leaves the NB up, as
//                               etcd would be)
//   agent CONFIG                run a flowdrake agent (as `flowdrake agent
//                               --config`: until SIGTERM, flows and filters stay)
//   ask SOCKET [status|explain] the agent's offload report (caps --explain agent)
//   wait-offload SOCKET N       wait until the agent runs planner mode with N
//                               local ports and every wanted filter installed
//   counters DIR METRICS DEV…   one host's counters: per device, from `tc -s -j
//                               filter show dev DEV ingress`, packets and bytes
//                               on filters that end a packet's way (redirect,
//                               drop), flowdrake's (cookie fd7c…) and others';
//                               OVS's kernel datapath flows for ICMP and TCP
//                               (dpctl/dump-flows, per type) and its lookups
//                               (hit; missed: upcalls); OpenFlow
//                               counters of port security's IPv4 flows (table
//                               5); the agent's packet-ins (metrics)
//   metric URL NAME             the sum of a Prometheus metric's samples
//   samples URL NAME…           the samples of Prometheus metrics, as an
//                               object from each sample's name and labels to
//                               its value
//   handles DEV…                flowdrake's filters (cookie fd7c…) on the
//                               devices as "dev chain prio handle" lines
//   wait-flows SOCKET gone|offloaded|refused TEXT   wait until no flow of
//                               the agent's mentions TEXT, or until one that
//                               does has that status (offloaded, or refused
//                               by the kernel) and every wanted filter is
//                               installed
//   wait-budget SOCKET CAPACITY MAC… wait until the budget holds the plan
//                               within CAPACITY with flows demoted, while the
//                               classification of each port with a MAC given
//                               and the lookup of that MAC stay offloaded
//   wait-mode SOCKET MODE       wait until the agent answers with that mode
import { spawnSync } from "node:child_process";

const repo = process.env.LANE_REPO;
if (!repo) throw new Error("LANE_REPO is not set (the lane's prelude exports it)");
const dist = (p) => import(`${repo}/dist/src/${p}`);
const [cmd, ...args] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const portOf = (i) => [`vm${i}`, `fa:16:3e:00:00:1${i}`, `10.1.0.1${i}`];

async function withApi(db, fn) {
  const { openStore } = await dist("nb/store/open.js");
  const { NbApi } = await dist("nb/api.js");
  const store = await openStore(db);
  try {
    await fn(new NbApi(store));
  } finally {
    await store.close();
  }
}

const port = (api, [id, mac, ip]) =>
  api.create("lport", {
    id,
    tenantId: "t1",
    networkId: "net1",
    macAddress: mac,
    fixedIps: [{ subnetId: "sub1", ipAddress: ip }],
  });

async function model(db, n = 4) {
  await withApi(db, async (api) => {
    await api.create("tenant", { id: "t1" });
    await api.create("lswitch", {
      id: "net1",
      tenantId: "t1",
      networkType: "geneve",
      segmentationId: 101,
      mtu: 1400,
    });
    await api.create("subnet", {
      id: "sub1",
      tenantId: "t1",
      networkId: "net1",
      cidr: "10.1.0.0/24",
      gatewayIp: "10.1.0.1",
    });
    for (let i = 1; i <= n; i++) await port(api, portOf(i));
  });
}

async function router(db) {
  await withApi(db, async (api) => {
    await api.create("lswitch", { id: "net2", tenantId: "t1", networkType: "geneve", segmentationId: 102 });
    await api.create("subnet", {
      id: "sub2",
      tenantId: "t1",
      networkId: "net2",
      cidr: "10.2.0.0/24",
      gatewayIp: "10.2.0.1",
    });
    await api.create("lrouter", { id: "r1", tenantId: "t1" });
    await api.routerAddInterface("r1", { subnetId: "sub1" });
    await api.routerAddInterface("r1", { subnetId: "sub2" });
    await api.create("lport", {
      id: "vm5",
      tenantId: "t1",
      networkId: "net2",
      macAddress: "fa:16:3e:00:00:15",
      fixedIps: [{ subnetId: "sub2", ipAddress: "10.2.0.15" }],
    });
  });
}

async function nat(db) {
  await withApi(db, async (api) => {
    await api.create("lswitch", {
      id: "ext",
      tenantId: "t1",
      networkType: "flat",
      physicalNetwork: "physnet1",
      external: true,
    });
    await api.create("subnet", {
      id: "extsub",
      tenantId: "t1",
      networkId: "ext",
      cidr: "172.24.4.0/24",
      gatewayIp: "172.24.4.1",
      enableDhcp: false,
    });
    await api.create("lrouter", { id: "r1", tenantId: "t1" });
    await api.routerAddInterface("r1", { subnetId: "sub1" });
    await api.create("snat", {
      id: "gw1",
      tenantId: "t1",
      routerId: "r1",
      externalNetworkId: "ext",
      externalIpAddress: "172.24.4.10",
      macAddress: "fa:16:3e:fe:00:10",
      gatewayChassis: ["host1"],
    });
    await api.create("fip", {
      id: "f1",
      tenantId: "t1",
      floatingNetworkId: "ext",
      floatingIpAddress: "172.24.4.50",
      macAddress: "fa:16:3e:fe:00:50",
      portId: "vm1",
    });
  });
}

async function secgroup(db, n) {
  await withApi(db, async (api) => {
    await api.create("secgroup", {
      id: "sg1",
      tenantId: "t1",
      rules: [
        { direction: "ingress", protocol: "icmp", remoteIpPrefix: "10.1.0.11/32" },
        { direction: "egress" },
      ],
    });
    for (let i = 1; i <= n; i++) await api.update("lport", `vm${i}`, { securityGroups: ["sg1"] });
  });
}

async function agent(file) {
  const { loadAgentConfig } = await dist("controller/config.js");
  const { Agent } = await dist("controller/agent.js");
  const { setLogLevel } = await dist("util/log.js");
  const config = loadAgentConfig(file, {});
  setLogLevel(config.logLevel);
  const a = await Agent.start(config);
  process.stdout.write(`agent ${config.chassis} ready: offload mode ${a.offload?.mode.active}\n`);
  await new Promise((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  await a.stop();
  process.exit(0);
}

async function ask(socket, op = "explain") {
  const { askAgent } = await dist("cli/caps-agent.js");
  return askAgent(socket, op, 20_000);
}

async function waitOffload(socket, n, timeoutS = 240) {
  const deadline = Date.now() + timeoutS * 1000;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const r = await ask(socket, "status");
      const local = r.ports.filter((p) => p.role === "configured" || p.role === "representor").length;
      last = JSON.stringify({ mode: r.mode, local, filters: r.filters });
      if (
        r.mode.active === "planner" &&
        local >= n &&
        r.filters.installed > 0 &&
        r.filters.installed === r.filters.desired
      )
        return r;
    } catch (err) {
      last = String(err.message ?? err);
    }
    await sleep(500);
  }
  throw new Error(`the agent on ${socket} did not get its filters installed within ${timeoutS} s: ${last}`);
}

function tcJson(dev) {
  const r = spawnSync("tc", ["-s", "-j", "filter", "show", "dev", dev, "ingress"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tc filter show dev ${dev}: ${r.stderr}`);
  return JSON.parse(r.stdout || "[]");
}

const isOurs = (f) =>
  (f.options?.actions ?? []).some((a) => typeof a.cookie === "string" && a.cookie.startsWith("fd7c01"));

function handles(devs) {
  const lines = [];
  for (const dev of devs) {
    for (const f of tcJson(dev))
      if (isOurs(f)) lines.push(`${dev} ${f.chain ?? 0} ${f.pref} ${f.options.handle}`);
  }
  return lines.sort().join("\n");
}

async function poll(socket, timeoutS, what, test) {
  const deadline = Date.now() + timeoutS * 1000;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const r = await ask(socket, "explain");
      const v = test(r);
      if (v) return r;
      last = JSON.stringify({
        mode: r.mode.active,
        filters: r.filters,
        demoted: r.demoted,
        refused: r.refused,
      });
    } catch (err) {
      last = String(err.message ?? err);
    }
    await sleep(500);
  }
  throw new Error(`${socket}: ${what} did not happen within ${timeoutS} s: ${last}`);
}

/** Both classification flows of a port (table 0, in_port) and the lookup of its MAC (table 40). */
function pathOf(r, mac) {
  const lookup = r.flows.find((f) => f.flow.includes("table=40,") && f.flow.includes(`dl_dst=${mac}`));
  const portsec = r.flows.find(
    (f) => f.flow.includes("table=5,") && f.flow.includes(`dl_src=${mac},nw_src=`),
  );
  const inPort = /in_port=(\d+)/.exec(portsec?.flow ?? "")?.[1];
  const classify = r.flows.find((f) => !f.flow.includes("table=") && f.flow.includes(`in_port=${inPort} `));
  return [lookup, portsec, classify];
}

function tcTerminal(dev) {
  const out = { ours: { packets: 0, bytes: 0, filters: 0 }, others: { packets: 0, bytes: 0, filters: 0 } };
  for (const f of tcJson(dev)) {
    const actions = f.options?.actions ?? [];
    if (!actions.length) continue;
    const side = isOurs(f) ? out.ours : out.others;
    side.filters++;
    const last = actions[actions.length - 1];
    const terminal =
      (last.kind === "mirred" && last.mirred_action === "redirect") ||
      (last.kind === "gact" && last.control_action?.type === "drop");
    if (!terminal) continue;
    side.packets += actions[0].stats?.packets ?? 0;
    side.bytes += actions[0].stats?.bytes ?? 0;
  }
  return out;
}

function sh(argv) {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Packets of OVS's datapath flows for ICMP and TCP, by type (tc: offloaded by OVS; ovs: the kernel datapath). */
function datapathPackets(ctl) {
  const out = {};
  for (const type of ["ovs", "tc"]) {
    let n = 0;
    for (const line of sh(["ovs-appctl", "-t", ctl, "dpctl/dump-flows", `type=${type}`]).split("\n")) {
      if (!/proto=(1|6),/.test(line)) continue;
      n += Number(/packets:(\d+)/.exec(line)?.[1] ?? 0);
    }
    out[type] = n;
  }
  return out;
}

async function counters(dir, metrics, devs) {
  const ctl = `${dir}/ovs-vswitchd.ctl`;
  const tc = {};
  for (const d of devs) tc[d] = tcTerminal(d);
  const dp = datapathPackets(ctl);
  const show = /lookups: hit:(\d+) missed:(\d+)/.exec(sh(["ovs-appctl", "-t", ctl, "dpctl/show"]));
  const lookups = { hit: Number(show?.[1] ?? 0), missed: Number(show?.[2] ?? 0) };
  // OpenFlow counters include every packet the datapath has seen after two revalidator dumps
  sh(["ovs-appctl", "-t", ctl, "revalidator/wait"]);
  sh(["ovs-appctl", "-t", ctl, "revalidator/wait"]);
  let of = 0;
  for (const line of sh(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", `unix:${dir}/br-int.mgmt`]).split(
    "\n",
  )) {
    if (/table=5,.* priority=80,ip,/.test(line)) of += Number(/n_packets=(\d+)/.exec(line)?.[1] ?? 0);
  }
  const packetIns =
    metrics === "-" ? null : await metric(metrics, "flowdrake_packet_ins_total").catch(() => null);
  return { tc, dp, lookups, of, packetIns };
}

async function samples(url, names) {
  const text = await (await fetch(url)).text();
  const out = {};
  for (const line of text.split("\n")) {
    if (names.some((name) => line.startsWith(`${name} `) || line.startsWith(`${name}{`)))
      out[line.slice(0, line.lastIndexOf(" "))] = Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return out;
}

async function metric(url, name) {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

const out = (v) => process.stdout.write(`${typeof v === "string" ? v : JSON.stringify(v)}\n`);

switch (cmd) {
  case "model":
    await model(args[0], Number(args[1] ?? 4));
    break;
  case "router":
    await router(args[0]);
    break;
  case "nat":
    await nat(args[0]);
    break;
  case "secgroup":
    await secgroup(args[0], Number(args[1]));
    break;
  case "secgroup-revoke":
    await withApi(args[0], async (api) => {
      // only the ICMP rule goes: the egress rule keeps its id, so its flows do not change
      const g = await api.get("secgroup", "sg1");
      await api.secgroupRuleDelete("sg1", g.value.rules.find((r) => r.protocol === "icmp").id);
    });
    break;
  case "port-del":
    await withApi(args[0], (api) => api.delete("lport", args[1]));
    break;
  case "port-add":
    await withApi(args[0], (api) => port(api, portOf(Number(args[1].slice(2)))));
    break;
  case "nb-hold": {
    const { openStore } = await dist("nb/store/open.js");
    const store = await openStore(args[0], { serve: true });
    // the store's server and its connections do not keep a process alive (an agent that
    // serves the NB exits when it is done): without a timer of its own, this holder exited
    // (status 13, silently) as soon as it had opened the store, and the agents raced for the NB
    setInterval(() => undefined, 1 << 30);
    out("holding the NB");
    const signal = await new Promise((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    out(`${signal}: closing the NB`);
    await store.close();
    process.exit(0);
    break;
  }
  case "agent":
    await agent(args[0]);
    break;
  case "ask":
    out(await ask(args[0], args[1] ?? "explain"));
    break;
  case "wait-offload":
    out(await waitOffload(args[0], Number(args[1])));
    break;
  case "counters":
    out(await counters(args[0], args[1], args.slice(2)));
    break;
  case "handles":
    out(handles(args));
    break;
  case "wait-flows": {
    const [socket, state, text] = args;
    if (!["gone", "offloaded", "refused"].includes(state))
      throw new Error(`wait-flows: unknown state ${state}: gone, offloaded or refused`);
    const r = await poll(socket, 240, `flows with ${text} ${state}`, (x) =>
      state === "gone"
        ? !x.flows.some((f) => f.flow.includes(text))
        : x.flows.some((f) => f.flow.includes(text) && f.status === state) &&
          x.filters.installed === x.filters.desired,
    );
    out({ filters: r.filters });
    break;
  }
  case "wait-budget": {
    const capacity = Number(args[1]);
    const macs = args.slice(2);
    const r = await poll(
      args[0],
      300,
      "the budget settling",
      (x) =>
        x.demoted > 0 &&
        x.filters.installed <= capacity &&
        x.filters.installed === x.filters.desired &&
        macs.every((m) => pathOf(x, m).every((f) => f?.status === "offloaded")),
    );
    out(r);
    break;
  }
  case "wait-mode": {
    const r = await poll(args[0], 300, `mode ${args[1]}`, (x) => x.mode.active === args[1]);
    out({ mode: r.mode, filters: r.filters });
    break;
  }
  case "metric":
    out(String(await metric(args[0], args[1])));
    break;
  case "samples":
    out(await samples(args[0], args.slice(1)));
    break;
  default:
    throw new Error(`unknown command ${cmd}`);
}
