/**
 * `flowdrake agent --config FILE`: run the node agent (src/controller/agent.ts)
 * until SIGINT/SIGTERM. Every config key is also a flag (flags win).
 * `flowdrake pipeline`: print the pipeline's table map.
 */
import type { Command } from "commander";
import { Agent } from "../controller/agent.js";
import { loadAgentConfig } from "../controller/config.js";
import { formatPipeline, PIPELINE } from "../datapath/index.js";
import { setLogLevel, logger } from "../util/log.js";

const log = logger("cli-agent");

interface AgentFlags {
  config?: string;
  chassis?: string;
  tunnelIp?: string;
  encap?: string;
  ovsdb?: string;
  bridge?: string;
  datapathType?: string;
  openflow?: string;
  db?: string;
  pubsub?: string;
  logLevel?: string;
  metrics?: string;
  apps?: string;
}

export function register(program: Command): void {
  program
    .command("agent")
    .description("run the node agent: bind local ports, sync the NB, program br-int")
    .option("-c, --config <file>", "YAML config file (see examples/agent.yaml)")
    .option("--chassis <name>", "this node's chassis name")
    .option("--tunnel-ip <ip>", "local tunnel endpoint (IPv4)")
    .option("--encap <type>", "preferred encapsulation: geneve | vxlan")
    .option("--ovsdb <remote>", "OVSDB remote (unix:PATH or tcp:HOST:PORT)")
    .option("--bridge <name>", "integration bridge")
    .option("--datapath-type <type>", "br-int datapath: system | netdev")
    .option("--openflow <target>", "OpenFlow target (default: <ovsdb dir>/<bridge>.mgmt)")
    .option("--db <url>", "NB store: embedded:PATH | etcd://host:port[,…]")
    .option("--pubsub <endpoint>", "ZeroMQ publisher endpoint (default: follow the store's watch)")
    .option("--log-level <level>", "fatal | error | warn | info | debug | trace")
    .option("--metrics <host:port>", 'Prometheus listen address ("" = off)')
    .option("--apps <list>", "comma-separated apps to enable")
    .action(async (f: AgentFlags) => {
      const config = loadAgentConfig(f.config, {
        chassis: f.chassis,
        tunnelIp: f.tunnelIp,
        encap: f.encap,
        ovsdb: f.ovsdb,
        bridge: f.bridge,
        datapathType: f.datapathType,
        openflow: f.openflow,
        nb: f.db,
        pubsub: f.pubsub,
        logLevel: f.logLevel ?? process.env.FLOWDRAKE_LOG_LEVEL,
        metrics: f.metrics,
        apps: f.apps?.split(",").map((s) => s.trim()),
      });
      setLogLevel(config.logLevel);
      const agent = await Agent.start(config);
      process.stdout.write(
        `flowdrake agent ${config.chassis}: ready (${agent.lastPass?.localPorts ?? 0} local ports, ` +
          `${agent.lastPass?.flows ?? 0} flows${agent.metricsPort ? `, metrics on :${agent.metricsPort}` : ""})\n`,
      );
      await new Promise<void>((resolve) => {
        const done = (sig: string) => {
          log.info({ signal: sig }, "stopping agent (flows stay installed)");
          resolve();
        };
        process.once("SIGINT", () => done("SIGINT"));
        process.once("SIGTERM", () => done("SIGTERM"));
      });
      await agent.stop();
    });

  program
    .command("pipeline")
    .description("print the OpenFlow pipeline: table ids, names, miss behaviour, purpose")
    .option("--json", "machine-readable")
    .action((o: { json?: boolean }) => {
      process.stdout.write(o.json ? `${JSON.stringify(PIPELINE, null, 2)}\n` : `${formatPipeline()}\n`);
    });
}
