/**
 * `npm run bench -- control-plane`: flowdrake's control plane side by side
 * with OVN's, in one run on one machine, on the same logical topology, each
 * on a sandbox of its own (bench/control-plane-flowdrake.ts and
 * bench/control-plane-ovn.ts say how each side is built and timed):
 *
 *   bulk      N ports on one network, N = 200, 1,000, 5,000: NB write start →
 *             the chassis realised it (OVN `--wait=hv`; flowdrake its realised
 *             revision), cross-checked by reading br-int
 *   churn     at each N, one port added and one removed, 20 times: p50/p99
 *   cold      an agent (ovn-controller) starting with 50 local ports while the
 *             NB holds 10,000 ports on 100 networks over 100 other chassis
 *   RSS       of the agent and of ovn-controller at every point, and the
 *             growth per local port over the bulk write
 *
 * Ratios are flowdrake / OVN (lower is better for times; the goal is
 * ≤ 0.5 at every point and an RSS slope no steeper than OVN's). Sizes and
 * samples can be narrowed for a quick look: `-- control-plane --sizes 200
 * --samples 5 --no-cold`. JSON in bench/results/control-plane.json.
 */
import {
  type BulkResult,
  type ChurnResult,
  type ColdStartResult,
  OvnSandbox,
  bulk,
  churn,
  coldStart,
  ovnVersion,
} from "./control-plane-ovn.js";
import {
  FlowdrakeSandbox,
  type FdBulkResult,
  type FdChurnResult,
  type FdColdStartResult,
  fdBulk,
  fdChurn,
  fdColdStart,
} from "./control-plane-flowdrake.js";
import { printTable, writeResult } from "./report.js";

interface SizeResult {
  ports: number;
  flowdrake: { bulk: FdBulkResult; churn: FdChurnResult };
  ovn: { bulk: BulkResult; churn: ChurnResult };
  ratios: { bulk: number; addP50: number; addP99: number; removeP50: number; removeP99: number };
}

const ratio = (a: number, b: number): number => (b > 0 ? Math.round((a / b) * 1000) / 1000 : NaN);
const slope = (before: number, after: number, n: number): number =>
  Math.round(((after - before) / n) * 10) / 10;

function args(): { sizes: number[]; samples: number; cold: boolean } {
  const argv = process.argv.slice(2);
  const at = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    sizes: (at("--sizes") ?? "200,1000,5000").split(",").map(Number),
    samples: Number(at("--samples") ?? 20),
    cold: !argv.includes("--no-cold"),
  };
}

export async function controlPlane(): Promise<void> {
  const { sizes, samples, cold } = args();
  const results: SizeResult[] = [];
  for (const n of sizes) {
    const fd = await FlowdrakeSandbox.start();
    let fb: FdBulkResult;
    let fc: FdChurnResult;
    try {
      await fd.startAgent();
      fb = await fdBulk(fd, n);
      fc = await fdChurn(fd, n, samples);
    } finally {
      await fd.stop();
    }
    process.stdout.write(`flowdrake ${n} ports: bulk ${fb.seconds} s, add p50 ${fc.add.p50} s\n`);
    const ovn = await OvnSandbox.start();
    let ob: BulkResult;
    let oc: ChurnResult;
    try {
      ob = await bulk(ovn, n);
      oc = await churn(ovn, n, samples);
    } finally {
      await ovn.stop();
    }
    process.stdout.write(`ovn ${n} ports: bulk ${ob.seconds} s, add p50 ${oc.add.p50} s\n`);
    results.push({
      ports: n,
      flowdrake: { bulk: fb, churn: fc },
      ovn: { bulk: ob, churn: oc },
      ratios: {
        bulk: ratio(fb.seconds, ob.seconds),
        addP50: ratio(fc.add.p50, oc.add.p50),
        addP99: ratio(fc.add.p99, oc.add.p99),
        removeP50: ratio(fc.remove.p50, oc.remove.p50),
        removeP99: ratio(fc.remove.p99, oc.remove.p99),
      },
    });
  }
  let coldResult: { flowdrake: FdColdStartResult; ovn: ColdStartResult; ratio: number } | undefined;
  if (cold) {
    const f = await fdColdStart();
    const o = await coldStart();
    coldResult = { flowdrake: f, ovn: o, ratio: ratio(f.seconds, o.seconds) };
  }
  printTable(
    results.flatMap((r) => [
      {
        ports: r.ports,
        side: "flowdrake",
        "bulk s": r.flowdrake.bulk.seconds,
        flows: r.flowdrake.bulk.flows,
        "RSS MiB": +(r.flowdrake.bulk.rssAfterKiB / 1024).toFixed(1),
        "KiB/port": slope(r.flowdrake.bulk.rssBeforeKiB, r.flowdrake.bulk.rssAfterKiB, r.ports),
        "add p50/p99": `${r.flowdrake.churn.add.p50}/${r.flowdrake.churn.add.p99}`,
        "del p50/p99": `${r.flowdrake.churn.remove.p50}/${r.flowdrake.churn.remove.p99}`,
      },
      {
        ports: r.ports,
        side: "ovn",
        "bulk s": r.ovn.bulk.seconds,
        flows: r.ovn.bulk.flows,
        "RSS MiB": +(r.ovn.bulk.rssAfterKiB / 1024).toFixed(1),
        "KiB/port": slope(r.ovn.bulk.rssBeforeKiB, r.ovn.bulk.rssAfterKiB, r.ports),
        "add p50/p99": `${r.ovn.churn.add.p50}/${r.ovn.churn.add.p99}`,
        "del p50/p99": `${r.ovn.churn.remove.p50}/${r.ovn.churn.remove.p99}`,
      },
      {
        ports: r.ports,
        side: "ratio",
        "bulk s": r.ratios.bulk,
        flows: "",
        "RSS MiB": "",
        "KiB/port": "",
        "add p50/p99": `${r.ratios.addP50}/${r.ratios.addP99}`,
        "del p50/p99": `${r.ratios.removeP50}/${r.ratios.removeP99}`,
      },
    ]),
  );
  if (coldResult) {
    const { flowdrake: f, ovn: o } = coldResult;
    process.stdout.write(
      `cold start (${f.remotePorts} remote ports, ${f.localPorts} local): flowdrake ${f.seconds} s, ` +
        `${f.flows} flows, ${(f.rssKiB / 1024).toFixed(1)} MiB; OVN ${o.seconds} s, ${o.flows} flows, ` +
        `${(o.rssKiB / 1024).toFixed(1)} MiB; ratio ${coldResult.ratio}\n`,
    );
  }
  const path = writeResult("control-plane", {
    ovn: await ovnVersion(),
    samples,
    sizes: results,
    coldStart: coldResult,
  });
  process.stdout.write(`wrote ${path}\n`);
}
