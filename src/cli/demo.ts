/**
 * `flowdrake demo` (what `npm run demo` runs after setup): one machine, the
 * embedded defaults, real parts. It starts a private OVS (userspace netdev
 * datapath) in its own namespace, plugs two "VMs" (namespaces with a real IP
 * stack) by external_ids:iface-id, connects flowdrake's own OpenFlow 1.3
 * session to br-int, installs a small multi-table pipeline as one bundle,
 * runs a real ping between the VMs, shows what happened (flows per table
 * with their packet counts, as flowdrake reads them back over OpenFlow, and
 * what the offload planner would put on a ConnectX-6 Dx), and tears
 * everything down — also on failure or Ctrl-C. `--keep` leaves it running.
 *
 *   table 0   classification: in_port → reg6 = network 1, goto 10; else drop
 *   table 10  L2: ARP and broadcast flood; eth_dst → output to the VM's port
 */
import type { Command } from "commander";
import { installFlows } from "../controller/flow-installer.js";
import { ruleFromFlow } from "../offload/planner/from-openflow.js";
import { OffloadPlanner } from "../offload/planner/plan.js";
import { profileById } from "../offload/profiles/index.js";
import { connectOpenFlow } from "../openflow/client.js";
import { flowToFlowMod } from "../openflow/flow.js";
import { formatFlow, parseFlow } from "../openflow/text.js";
import { OvsSandbox } from "../sandbox/ovs.js";
import { run } from "../util/exec.js";

function pipeline(a: { ofport: number; mac: string }, b: { ofport: number; mac: string }): string[] {
  return [
    `table=0, priority=100, in_port=${a.ofport}, actions=set_field:0x1->reg6,goto_table:10`,
    `table=0, priority=100, in_port=${b.ofport}, actions=set_field:0x1->reg6,goto_table:10`,
    "table=0, priority=0, actions=drop",
    `table=10, priority=200, reg6=0x1, dl_dst=ff:ff:ff:ff:ff:ff, actions=output:${a.ofport},output:${b.ofport}`,
    `table=10, priority=100, reg6=0x1, dl_dst=${a.mac}, actions=output:${a.ofport}`,
    `table=10, priority=100, reg6=0x1, dl_dst=${b.mac}, actions=output:${b.ofport}`,
    "table=10, priority=0, actions=drop",
  ];
}

export async function runDemo(
  opts: { keep?: boolean; out?: (s: string) => void } = {},
): Promise<{ ping: boolean }> {
  const say = opts.out ?? ((s: string) => process.stdout.write(`${s}\n`));
  say("flowdrake demo: starting a private Open vSwitch (userspace datapath) in its own namespace");
  const sb = await OvsSandbox.start({ label: "demo", datapath: "netdev" });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await sb.stop();
  };
  const onSignal = () => {
    void stop().then(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const vm1 = await sb.addVm("vm1", {
      ipCidr: "10.0.0.11/24",
      ifaceId: "port-vm1",
      mac: "fa:16:3e:00:00:11",
    });
    const vm2 = await sb.addVm("vm2", {
      ipCidr: "10.0.0.12/24",
      ifaceId: "port-vm2",
      mac: "fa:16:3e:00:00:12",
    });
    say(
      `plugged vm1 (iface-id ${vm1.ifaceId}, ofport ${vm1.ofport}) and vm2 (iface-id ${vm2.ifaceId}, ofport ${vm2.ofport})`,
    );

    const conn = await connectOpenFlow(sb.mgmtRemote());
    try {
      const flows = pipeline(vm1, vm2).map(parseFlow);
      const result = await installFlows(
        conn,
        flows.map((f) => flowToFlowMod(f)),
        { bundle: true },
      );
      say(
        `installed ${result.messages} flows over OpenFlow 1.3 in one bundle (${result.durationMs.toFixed(1)} ms)`,
      );

      const ping = await run(["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.12"], {
        netns: vm1.netns,
        allowFailure: true,
      });
      const summary =
        ping.stdout.split("\n").find((l) => l.includes("packets transmitted")) ?? ping.stderr.trim();
      const ok = ping.code === 0;
      say(`ping vm1 → vm2: ${ok ? "OK" : "FAILED"} (${summary})`);

      const stats = await conn.flowStats();
      const perTable = new Map<number, { flows: number; packets: bigint }>();
      for (const s of stats) {
        const t = perTable.get(s.tableId) ?? { flows: 0, packets: 0n };
        t.flows++;
        t.packets += s.packetCount;
        perTable.set(s.tableId, t);
      }
      say("flows per table (read back over OpenFlow):");
      for (const [table, t] of [...perTable].sort(([a], [b]) => a - b)) {
        say(`  table ${table}: ${t.flows} flows, ${t.packets} packets`);
      }

      const ports = {
        hardware: new Map([
          [vm1.ofport, "pf0vf0"],
          [vm2.ofport, "pf0vf1"],
        ]),
        tunnels: new Map(),
      };
      const rules = flows.map((f, i) => ruleFromFlow(f, ports, `flow${i}`));
      const plan = OffloadPlanner.plan({ rules, profile: profileById("connectx-6-dx"), ports });
      say("what a ConnectX-6 Dx in switchdev mode would carry (VM ports as representors pf0vf0/pf0vf1):");
      flows.forEach((f, i) => say(`  ${plan.decisions.get(`flow${i}`)!.reason.padEnd(22)} ${formatFlow(f)}`));

      if (opts.keep) {
        say("");
        say("--keep: left running. Explore with:");
        say(`  ovs-ofctl -O OpenFlow13 dump-flows ${sb.mgmtRemote()}`);
        say(`  ip netns exec ${vm1.netns} ping 10.0.0.12`);
        say(`  ovs-vsctl --db=${sb.dbRemote} show`);
        say(`run dir ${sb.dir}; press Ctrl-C to tear down`);
        conn.close();
        await new Promise<never>(() => {});
      }
      return { ping: ok };
    } finally {
      conn.close();
    }
  } finally {
    if (!opts.keep) {
      await stop();
      say("torn down: namespaces, OVS daemons and run dir removed");
    }
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

export function register(program: Command): void {
  program
    .command("demo")
    .description(
      "run flowdrake on one machine: private OVS, two VMs, a flowdrake-programmed pipeline, real ping",
    )
    .option("--keep", "leave everything running for exploration (Ctrl-C tears it down)")
    .action(async (opts: { keep?: boolean }) => {
      const { ping } = await runDemo(opts);
      if (!ping) process.exitCode = 1;
    });
}
