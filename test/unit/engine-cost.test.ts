/**
 * What each model change costs in flow_mods, through the real chain — model
 * change → engine (only the touched owners) → reconciler (only the touched
 * keys) — against a switch that holds the state before the change. Also
 * pins which owners each change rebuilds, so that a change that quietly
 * starts touching more than it must shows up here.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_APPS, loadApps } from "../../src/apps/index.js";
import { Engine } from "../../src/controller/engine.js";
import type { LocalModel } from "../../src/controller/model.js";
import { OpenFlowReconciler } from "../../src/controller/reconciler.js";
import { binding, chassis, net, newModel, port, subnet } from "../harness/model-fixture.js";

function base(): LocalModel {
  const m = newModel();
  m.setNetwork("net1", net("net1", { segmentationId: 7 }));
  m.setSubnet("sub1", subnet("sub1", "net1", "10.0.0.0/24"));
  m.setChassis("hostB", chassis("hostB", "192.0.2.2"));
  m.setAlive("hostB", true);
  m.setPort("p1", port("p1", "net1", "fa:16:3e:00:00:01", [["sub1", "10.0.0.11"]]));
  m.setPort("p2", port("p2", "net1", "fa:16:3e:00:00:02", [["sub1", "10.0.0.12"]]));
  m.setBinding("p1", binding("p1", 3));
  m.setBinding("p2", binding("p2", 4));
  return m;
}

/** Install the base state, apply `change`, and report what the next sync would send. */
function cost(change: (m: LocalModel) => void) {
  const m = base();
  const e = new Engine(m, loadApps(DEFAULT_APPS));
  const r = new OpenFlowReconciler();
  r.update(e.recomputeAll());
  r.assumeInstalled([]);
  r.commitPlanned();
  change(m);
  const changes = e.recomputeChanged();
  r.update(changes);
  const ops = r.planFlows();
  const n = (k: string) => ops.filter((o) => o.kind === k).length;
  return {
    owners: changes.map((c) => c.owner).sort(),
    flowMods: { add: n("add"), modify: n("modify") + n("replace"), delete: n("delete") },
  };
}

describe("a model change costs exactly the flow_mods it must", () => {
  it("nothing changed: nothing rebuilt, nothing sent", () => {
    expect(cost(() => undefined)).toEqual({ owners: [], flowMods: { add: 0, modify: 0, delete: 0 } });
  });

  it("a peer appears on another chassis: its L2 entry, its ARP answer, and the flood set", () => {
    expect(
      cost((m) =>
        m.setPort(
          "r1",
          port("r1", "net1", "fa:16:3e:00:00:21", [["sub1", "10.0.0.21"]], { chassis: "hostB" }),
        ),
      ),
    ).toEqual({
      owners: ["arp/port/r1", "l2/network/net1", "l2/port/r1"],
      flowMods: { add: 2, modify: 1, delete: 0 },
    });
  });

  it("a second peer on a chassis already in the flood set: two adds only", () => {
    const m0 = (m: LocalModel) =>
      m.setPort("r1", port("r1", "net1", "fa:16:3e:00:00:21", [["sub1", "10.0.0.21"]], { chassis: "hostB" }));
    const r = cost((m) => {
      m0(m);
    });
    expect(r.flowMods.add).toBe(2);
    const m = base();
    m0(m);
    const e = new Engine(m, loadApps(DEFAULT_APPS));
    const rec = new OpenFlowReconciler();
    rec.update(e.recomputeAll());
    rec.assumeInstalled([]);
    rec.commitPlanned();
    m.setPort("r2", port("r2", "net1", "fa:16:3e:00:00:22", [["sub1", "10.0.0.22"]], { chassis: "hostB" }));
    rec.update(e.recomputeChanged());
    const ops = rec.planFlows();
    expect(ops.map((o) => o.kind)).toEqual(["add", "add"]);
  });

  it("a local port's address changes: its anti-spoofing and ARP flows are replaced, nothing else", () => {
    // portsec ip + arp, ARP responder + own-probe exclusion: 4 out, 4 in. Classifier, DHCP
    // and L2 owners are rebuilt too but come out the same, so they cost nothing.
    expect(
      cost((m) => m.setPort("p1", port("p1", "net1", "fa:16:3e:00:00:01", [["sub1", "10.0.0.111"]]))),
    ).toEqual({
      owners: ["arp/port/p1", "portsec/port/p1"],
      flowMods: { add: 4, modify: 0, delete: 4 },
    });
  });

  it("a local port is unplugged: its flows go and the flood set shrinks", () => {
    const r = cost((m) => m.setBinding("p2", undefined));
    expect(r.flowMods.add).toBe(0);
    expect(r.flowMods.modify).toBe(1); // the flood flow
    expect(r.flowMods.delete).toBe(22); // classifier 1, portsec 16, dhcp 1, arp 2, l2 2
  });

  it("the remote chassis' liveness lapses: its ports' L2 entries and its flood copy go", () => {
    const r = cost((m) => {
      m.setPort("r1", port("r1", "net1", "fa:16:3e:00:00:21", [["sub1", "10.0.0.21"]], { chassis: "hostB" }));
    });
    expect(r.flowMods.add).toBe(2);
    const m = base();
    m.setPort("r1", port("r1", "net1", "fa:16:3e:00:00:21", [["sub1", "10.0.0.21"]], { chassis: "hostB" }));
    const e = new Engine(m, loadApps(DEFAULT_APPS));
    const rec = new OpenFlowReconciler();
    rec.update(e.recomputeAll());
    rec.assumeInstalled([]);
    rec.commitPlanned();
    m.setAlive("hostB", false);
    rec.update(e.recomputeChanged());
    const kinds = rec
      .planFlows()
      .map((o) => o.kind)
      .sort();
    // r1's L2 entry and ARP answer are deleted, the flood flow loses hostB
    expect(kinds).toEqual(["delete", "delete", "modify"]);
    m.setAlive("hostB", true);
    rec.update(e.recomputeChanged());
    expect(
      rec
        .planFlows()
        .map((o) => o.kind)
        .sort(),
    ).toEqual([]);
  });
});
