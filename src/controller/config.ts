/**
 * The agent's configuration: one YAML file (`flowdrake agent --config FILE`),
 * every option also a command-line flag that wins over the file (src/cli/
 * agent.ts derives the flags from this schema). Validated
 * with zod; a bad file is refused with the field and the reason, before the
 * agent touches OVS or the NB.
 *
 *   chassis: host1                  # this node's name in the NB
 *   tunnelIp: 192.168.77.1          # local end of the Geneve/VXLAN tunnels
 *   encap: geneve                   # preferred encapsulation (geneve | vxlan)
 *   ovsdb: unix:/var/run/openvswitch/db.sock
 *   bridge: br-int
 *   bridgeMappings: { physnet1: br-ex }   # provider networks: physical network → bridge
 *   openflow: unix:/var/run/openvswitch/br-int.mgmt   # default: next to the ovsdb socket
 *   nb: embedded:/var/lib/flowdrake/nb                 # or etcd://h:p[,h:p], etcds://…?ca=&cert=&key=&user=
 *   pubsub: tcp://127.0.0.1:6650    # ZeroMQ publisher; absent = follow the store's watch
 *   pubsubServerKey: /etc/flowdrake/publisher.pub      # CURVE: the publisher's public key
 *   pubsubKey: /etc/flowdrake/agent.key                # CURVE: this agent's key pair (authorized-keys publishers)
 *   ssl: { privateKey: …/ctl-privkey.pem, certificate: …/ctl-cert.pem, caCert: …/switchca/cacert.pem }
 *                                   # for ssl: ovsdb/openflow remotes, as OVS's --private-key/--certificate/--ca-cert
 *   logLevel: info
 *   metrics: 127.0.0.1:9464         # Prometheus /metrics; "" = off
 *   metricsTls: { certificate: …, privateKey: … }   # serve https
 *   metricsAuthFile: /etc/flowdrake/metrics.auth    # basic auth, user:password lines
 *   apps: [classifier, portsec, secgroup, dhcp, arp, l2, l3, nat, tunnel, provider]
 *   dhcp: { ratePps: 100, leaseTime: 86400, domain: openstacklocal }   # ratePps: per-port DHCP punts
 *   punt: { hostRatePps: 1000, queuePerPort: 64, concurrency: 32, switchQueue: 512 }
 *                                   # host budget; agent queue per port; handlers at once; packet-ins
 *                                   # OVS holds for the agent (Bridge other_config:controller-queue-size)
 *   l2: { mode: proactive, idleTimeoutS: 300 }      # or reactive (remote ports' L2 flows and ARP
 *                                   # answers on demand, tunnelled networks only)
 *   l3: { mode: reactive, idleTimeoutS: 300 }       # or proactive (host routes ahead of time);
 *                                   # idleTimeoutS 0: routes without idle timeout (offloadable)
 *   nat: { nextHopIdleS: 300 }       # learned next hops on external networks; 0: no idle
 *                                   # timeout (offloadable)
 *   offload: { hwOffload: true, tcPolicy: none, maxIdleMs: 10000, nOffloadThreads: 1 }
 *                                   # mode ovs: OVS's own tc offload (other_config, above)
 *   offload: { mode: planner, profile: connectx-6-dx, capacity: 100000, ports: ["eth*_vf*"] }
 *                                   # mode planner: flowdrake's own tc rules (src/controller/tc-reconciler.ts);
 *                                   # none: OpenFlow only. Default: ovs when an OVS key is set, else none
 *   heartbeatSeconds: 5             # liveness heartbeat; the lease lasts 3 of them
 *   recoverySeconds: 300            # recovery pass interval (full NB re-read); 0 = off
 */
import { readFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import { dirname } from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { DEFAULT_APPS, isAppName } from "../apps/index.js";
import { DEFAULT_NB_URL } from "../nb/store/open.js";
import { UsageError } from "../util/errors.js";
import { checkOffloadMode, offloadDatapathKeys } from "./tc-reconciler-config.js";

const ipv4 = z.string().refine((s) => isIPv4(s), "is not an IPv4 address");

export const agentConfigSchema = z.strictObject({
  chassis: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/, "is not a valid chassis name"),
  tunnelIp: ipv4,
  encap: z.enum(["geneve", "vxlan"]).default("geneve"),
  ovsdb: z.string().default("unix:/var/run/openvswitch/db.sock"),
  bridge: z.string().min(1).default("br-int"),
  /** physical network → bridge holding its uplink (vlan/flat provider networks), as Neutron's bridge_mappings */
  bridgeMappings: z.record(z.string().min(1).max(64), z.string().min(1).max(15)).default({}),
  /** br-int's datapath type: "system" (kernel, and NIC offload) or "netdev" (userspace). */
  datapathType: z.enum(["system", "netdev"]).default("system"),
  openflow: z.string().optional(),
  nb: z.string().default(DEFAULT_NB_URL),
  pubsub: z.string().optional(),
  /** The publisher's CURVE public key file (`flowdrake publisher keygen`'s .pub): pub/sub over CURVE. */
  pubsubServerKey: z.string().min(1).optional(),
  /** This agent's CURVE key pair file (.key), for a publisher that admits listed keys only. */
  pubsubKey: z.string().min(1).optional(),
  /** OVS's SSL files, for `ssl:` ovsdb and openflow remotes (src/util/ssl.ts). */
  ssl: z
    .strictObject({
      privateKey: z.string().min(1),
      certificate: z.string().min(1),
      caCert: z.string().min(1),
    })
    .optional(),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  metrics: z.string().default("127.0.0.1:9464"),
  /** Serve /metrics over https with this certificate and key. */
  metricsTls: z.strictObject({ certificate: z.string().min(1), privateKey: z.string().min(1) }).optional(),
  /** Demand basic auth on /metrics: a file of user:password lines. */
  metricsAuthFile: z.string().min(1).optional(),
  apps: z.array(z.string().refine((a) => isAppName(a), "is not a known app")).default([...DEFAULT_APPS]),
  dhcp: z
    .strictObject({
      ratePps: z.number().int().positive().default(100),
      leaseTime: z.number().int().positive().optional(),
      domain: z.string().optional(),
    })
    .default({ ratePps: 100 }),
  /**
   * Remote ports' L2 flows (and ARP answers) on tunnelled networks: ahead of time (proactive) or
   * on the first frame a local VM sends them (reactive, with the l2 and arp apps' punts).
   */
  l2: z
    .strictObject({
      mode: z.enum(["proactive", "reactive"]).default("proactive"),
      /** Idle timeout of a reactive remote-port flow, seconds; 0 = none (see l3.idleTimeoutS). */
      idleTimeoutS: z.number().int().nonnegative().default(300),
    })
    .default({ mode: "proactive", idleTimeoutS: 300 }),
  /** The distributed router: host routes on the first packet (reactive) or ahead of time (proactive). */
  l3: z
    .strictObject({
      mode: z.enum(["reactive", "proactive"]).default("reactive"),
      /**
       * Idle timeout of a reactive host route, seconds; 0 = none (a route stays until the model
       * changes what it depends on — at most one per destination and source network). In
       * offload.mode planner only routes without one go to the NIC: OVS ages a flow by its own
       * counters, which the packets tc carries never reach.
       */
      idleTimeoutS: z.number().int().nonnegative().default(300),
    })
    .default({ mode: "reactive", idleTimeoutS: 300 }),
  /** The nat app: floating IPs and SNAT. */
  nat: z
    .strictObject({
      /**
       * Idle timeout of a learned next hop's flows on an external network, seconds; 0 = none (a
       * next hop then stays until the network, its subnets or the bridge mapping change, or ARP
       * shows it moved). In offload.mode planner only next hops without one go to the NIC, as
       * for l3.idleTimeoutS.
       */
      nextHopIdleS: z.number().int().nonnegative().default(300),
    })
    .default({ nextHopIdleS: 300 }),
  /** Packets the switch sends this agent (DHCP, ND, first packets): the host-wide budget. */
  punt: z
    .strictObject({
      /**
       * Punted packets this agent handles per second, all ports together (0 = no cap), shared
       * round-robin across the ports that have packets waiting (punt-queue.ts).
       */
      hostRatePps: z.number().int().nonnegative().default(1000),
      /**
       * OVS's "controller" meter on every punt of the host, packets per second: a guard on what
       * crosses the OpenFlow channel, kept above hostRatePps so that the agent's fair queue, not
       * the meter, decides whose packets wait. Unset: SWITCH_RATE_FACTOR × hostRatePps; 0 = none.
       */
      switchRatePps: z.number().int().nonnegative().optional(),
      /** Punted packets queued per port while the agent is busy; older ones are dropped first. */
      queuePerPort: z.number().int().positive().default(64),
      /** Punted packets handled at once (first packets that arrive during one pass share the next). */
      concurrency: z.number().int().positive().default(32),
      /**
       * Packet-ins OVS queues for the agent's connection before it drops them (br-int's
       * other_config:controller-queue-size, 1–512; OVS's own default is 100); 0 = leave it to OVS.
       * Under a flood the agent's per-port queue is fair, OVS's is not: it drops in arrival order,
       * so the longer one is OVS's, the less a neighbour's packet depends on the flooders' timing.
       */
      switchQueue: z.number().int().min(0).max(512).default(512),
    })
    .default({ hostRatePps: 1000, queuePerPort: 64, concurrency: 32, switchQueue: 512 }),
  offload: z
    .strictObject({
      hwOffload: z.boolean().optional(),
      tcPolicy: z.enum(["none", "skip_sw", "skip_hw"]).optional(),
      maxIdleMs: z.number().int().positive().optional(),
      nOffloadThreads: z.number().int().positive().optional(),
      ...offloadDatapathKeys,
    })
    .superRefine(checkOffloadMode)
    .prefault({}),
  /** Seconds between chassis heartbeats (the liveness lease lasts 3 of them). */
  heartbeatSeconds: z.number().int().positive().default(5),
  /** Seconds between recovery passes (a full NB re-read that repairs the cache); 0 = off. */
  recoverySeconds: z.number().int().nonnegative().default(300),
});

export type AgentConfig = z.output<typeof agentConfigSchema>;

/**
 * The switch's guard over the agent's budget when unset. OVS's meter drops whichever packet
 * finds no token, so it must not be the one that drops under an ordinary flood: at 4× the
 * budget it drops only when the ports' own meters together let through 4 times what the
 * agent takes.
 */
export const SWITCH_RATE_FACTOR = 4;

/** The "controller" meter's rate for a punt config (0 = no meter). */
export function switchRatePps(punt: AgentConfig["punt"]): number {
  return punt.switchRatePps ?? SWITCH_RATE_FACTOR * punt.hostRatePps;
}

export class ConfigError extends UsageError {}

/** Validate raw input (file contents merged with flags). */
export function parseAgentConfig(raw: unknown, source = "config"): AgentConfig {
  const r = agentConfigSchema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new ConfigError(`${source} is invalid:\n${lines.join("\n")}`, { source });
  }
  return r.data;
}

export interface LoadOptions {
  /** FLOWDRAKE_LOG_LEVEL: used when neither a flag nor the file sets logLevel. */
  envLogLevel?: string;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `over` on top of `base`, nested objects merged key by key. */
function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isPlain(v) && isPlain(out[k]) ? merge(out[k], v) : v;
  }
  return out;
}

/**
 * The config from a YAML file (optional) and flags: flags win, key by key,
 * also inside `dhcp` and `offload`; `logLevel` falls back to
 * FLOWDRAKE_LOG_LEVEL, then "info".
 */
export function loadAgentConfig(
  file: string | undefined,
  flags: Record<string, unknown>,
  opts: LoadOptions = {},
): AgentConfig {
  let raw: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, { file });
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text) ?? {};
    } catch (err) {
      throw new ConfigError(`${file} is not valid YAML: ${(err as Error).message}`, { file });
    }
    if (!isPlain(parsed)) throw new ConfigError(`${file}: expected a mapping`);
    raw = parsed;
  }
  const merged = merge(raw, flags);
  if (merged.logLevel === undefined && opts.envLogLevel) merged.logLevel = opts.envLogLevel;
  return parseAgentConfig(merged, file ?? "flags");
}

/** The OpenFlow target: configured, or br-int's management socket next to the ovsdb socket. */
export function openflowTarget(c: AgentConfig): string {
  if (c.openflow) return c.openflow;
  if (c.ovsdb.startsWith("unix:")) return `unix:${dirname(c.ovsdb.slice(5))}/${c.bridge}.mgmt`;
  throw new ConfigError(
    "openflow: required when ovsdb is not a unix socket (e.g. unix:/run/ovs/br-int.mgmt)",
  );
}
