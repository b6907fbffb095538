/**
 * `flowdrake caps`: what this host's NICs can offload, and what must change
 * for them to offload. `--capture DIR` saves everything the report read so the
 * same report can be produced elsewhere with `--from DIR`.
 *
 * On a live host the report ends with the offload mode the running agent
 * has active on its bridge, and why (caps-agent.ts asks it on its offload
 * socket, found from --ovsdb and --bridge or named by --agent);
 * `--explain agent` shows the agent's installed state flow by flow.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { ruleFromFlow } from "../offload/planner/from-openflow.js";
import { OffloadPlanner } from "../offload/planner/plan.js";
import { profileById } from "../offload/profiles/index.js";
import { formatFlow, parseFlow } from "../openflow/text.js";
import {
  buildReport,
  captureSource,
  discover,
  formatReport,
  liveSource,
  recordingSource,
} from "../offload/caps/index.js";
import type { HostSource } from "../offload/caps/source.js";
import { errorMessage, UsageError } from "../util/errors.js";
import { connectOpenFlow } from "../openflow/client.js";
import { flowFromStats, type Flow } from "../openflow/flow.js";
import type { PortMap } from "../offload/planner/ir.js";
import type { Plan } from "../offload/planner/plan.js";
import { OvsdbClient } from "../ovsdb/client.js";
import { op } from "../ovsdb/ops.js";
import { offloadSocket } from "../controller/tc-reconciler-config.js";
import { askAgent, formatAgentExplain, formatAgentStatus } from "./caps-agent.js";
import { capsProbes } from "./caps-probes.js";

interface CapsOptions {
  json?: boolean;
  from?: string;
  capture?: string;
  ovsdb?: string;
  explain?: string;
  profile?: string;
  port?: string[];
  tunnel?: string[];
  /** The agent's offload socket (default: from ovsdb and bridge, as the agent puts it). */
  agent?: string;
  bridge?: string;
}

function agentSocket(opts: CapsOptions): string {
  return (
    opts.agent ??
    offloadSocket({
      ovsdb: opts.ovsdb ?? "unix:/var/run/openvswitch/db.sock",
      bridge: opts.bridge ?? "br-int",
      offload: {},
    })
  );
}

/** The planner's split of a flow set under a NIC profile; rule ids are `flow<i>` in `flows` order. */
export function planFlowSet(flows: readonly Flow[], profileId: string, ports: PortMap): Plan {
  const rules = flows.map((f, i) => ruleFromFlow(f, ports, `flow${i}`));
  return OffloadPlanner.plan({ rules, profile: profileById(profileId), ports });
}

function portMap(port: string[] = [], tunnel: string[] = []): PortMap {
  const hardware = new Map<number, string>();
  const tunnels = new Map<number, "vxlan" | "geneve">();
  for (const p of port) {
    const [n, dev] = p.split("=");
    if (!n || !dev || !/^\d+$/.test(n)) throw new UsageError(`--port wants OFPORT=NETDEV, not ${p}`);
    hardware.set(Number(n), dev);
  }
  for (const t of tunnel) {
    const [n, kind] = t.split("=");
    if (!n || !/^\d+$/.test(n) || (kind !== "vxlan" && kind !== "geneve")) {
      throw new UsageError(`--tunnel wants OFPORT=vxlan|geneve, not ${t}`);
    }
    tunnels.set(Number(n), kind);
  }
  return { hardware, tunnels };
}

/**
 * Every flow of a flow set with the planner's decision and its reason, for the
 * NIC profile given and the port map given as `OFPORT=NETDEV` / `OFPORT=vxlan|geneve`.
 */
export function explainFlowSet(
  flows: readonly Flow[],
  opts: { profile: string; port?: string[]; tunnel?: string[] },
): string {
  const plan = planFlowSet(flows, opts.profile, portMap(opts.port, opts.tunnel));
  const out = [
    `profile: ${profileById(opts.profile).name}; ${plan.tc.length} tc rules in ${plan.chains.length} chains`,
  ];
  flows.forEach((f, i) => {
    const d = plan.decisions.get(`flow${i}`)!;
    out.push(`${formatFlow(f)}\n    ${d.offloaded ? "NIC" : "OVS"}: ${d.reason}`);
  });
  return `${out.join("\n")}\n`;
}

/** `--explain FILE`: a saved flow set (ovs-ofctl dump-flows or add-flows text, one per line). */
export function explainFlows(
  text: string,
  opts: { profile: string; port?: string[]; tunnel?: string[] },
): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#") && !l.startsWith("OFPST_FLOW") && !l.startsWith("NXST_FLOW"));
  const flows = lines.map((l, i) => {
    // dump-flows adds statistics that are not part of the flow
    const clean = l.replace(/\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?\s*/g, "");
    try {
      return parseFlow(clean);
    } catch (err) {
      throw new UsageError(`line ${i + 1}: ${(err as Error).message}`, { line: l });
    }
  });
  return explainFlowSet(flows, opts);
}

/**
 * The flow set a running agent has installed, read over OpenFlow from the
 * bridge (`unix:/var/run/openvswitch/br-int.mgmt`), with the port map taken
 * from OVSDB when `ovsdb` is given: system interfaces on the bridge are
 * eswitch ports (a VF representor is plugged into br-int under its own
 * netdev name), geneve/vxlan interfaces are tunnel ports.
 */
export async function liveFlowSet(
  target: string,
  ovsdb: string | undefined,
): Promise<{ flows: Flow[]; port: string[]; tunnel: string[] }> {
  const conn = await connectOpenFlow(target);
  let flows: Flow[];
  try {
    flows = (await conn.flowStats()).map(flowFromStats);
  } finally {
    conn.close();
  }
  const port: string[] = [];
  const tunnel: string[] = [];
  if (ovsdb) {
    const client = await OvsdbClient.connect(ovsdb);
    try {
      const [r] = await client.transact("Open_vSwitch", [
        op.select("Interface", [], ["name", "type", "ofport"]),
      ]);
      for (const row of r?.rows ?? []) {
        const ofport = typeof row.ofport === "number" ? row.ofport : -1;
        if (ofport <= 0) continue;
        if (row.type === "" || row.type === "system") port.push(`${ofport}=${String(row.name)}`);
        if (row.type === "geneve" || row.type === "vxlan") tunnel.push(`${ofport}=${row.type}`);
      }
    } finally {
      client.close();
    }
  }
  return { flows, port, tunnel };
}

export async function runCaps(opts: CapsOptions): Promise<string> {
  if (opts.from && opts.capture) throw new UsageError("--from and --capture cannot be combined");
  if (opts.explain === "agent" || opts.explain?.startsWith("agent:")) {
    const socket = opts.explain === "agent" ? agentSocket(opts) : opts.explain.slice("agent:".length);
    const report = await askAgent(socket, "explain");
    return opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatAgentExplain(report);
  }
  if (opts.explain && /^(unix|tcp):/.test(opts.explain)) {
    const live = await liveFlowSet(opts.explain, opts.ovsdb);
    let profile = opts.profile;
    if (!profile) {
      const src = opts.from ? captureSource(opts.from) : liveSource();
      profile = buildReport(await discover(src)).nics[0]?.profile.id ?? "none";
    }
    return explainFlowSet(live.flows, {
      profile,
      port: [...live.port, ...(opts.port ?? [])],
      tunnel: [...live.tunnel, ...(opts.tunnel ?? [])],
    });
  }
  if (opts.explain) {
    let profile = opts.profile;
    if (!profile) {
      const src = opts.from ? captureSource(opts.from) : liveSource();
      profile = buildReport(await discover(src)).nics[0]?.profile.id ?? "none";
    }
    return explainFlows(readFileSync(opts.explain, "utf8"), {
      profile,
      port: opts.port,
      tunnel: opts.tunnel,
    });
  }
  let source: HostSource = opts.from ? captureSource(opts.from) : liveSource(await capsProbes(opts.ovsdb));
  if (opts.capture) source = recordingSource(source, opts.capture);
  const report = buildReport(await discover(source));
  if (opts.from) return opts.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report);
  // A live host: which mode the agent has active, and why.
  const socket = agentSocket(opts);
  const agent = await askAgent(socket, "status", 2000).catch((err: unknown) => errorMessage(err));
  if (opts.json) return `${JSON.stringify({ ...report, agent }, null, 2)}\n`;
  const mode = typeof agent === "string" ? `offload mode: unknown — ${agent}\n` : formatAgentStatus(agent);
  return `${formatReport(report)}\n${mode}`;
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

export function register(program: Command): void {
  program
    .command("caps")
    .description("report what this host's NICs can offload, and what to change so they do")
    .option("--json", "machine-readable report")
    .option("--from <dir>", "analyse a capture made with --capture instead of this host")
    .option(
      "--capture <dir>",
      "also save everything the report reads (sysfs, netlink answers, OVS settings) to DIR",
    )
    .option(
      "--ovsdb <remote>",
      "OVSDB to read other_config offload settings from",
      "unix:/var/run/openvswitch/db.sock",
    )
    .option(
      "--explain <flows>",
      "explain, flow by flow, what a flow set would offload: a saved file (ovs-ofctl text), a bridge " +
        "(unix:/var/run/openvswitch/br-int.mgmt; with --ovsdb the port map comes from OVSDB), or " +
        "'agent' (or agent:SOCKET): the running agent's installed state, counters included",
    )
    .option(
      "--agent <socket>",
      "the agent's offload socket (default: flowdrake.<bridge>.sock beside --ovsdb)",
    )
    .option("--bridge <name>", "the agent's bridge, to find its offload socket", "br-int")
    .option("--profile <id>", "NIC profile for --explain (default: this host's first NIC)")
    .option("--port <ofport=netdev>", "an eswitch port for --explain (repeatable)", collect, [])
    .option("--tunnel <ofport=vxlan|geneve>", "a tunnel port for --explain (repeatable)", collect, [])
    .action(async (opts: CapsOptions) => {
      process.stdout.write(await runCaps(opts));
    });
}
