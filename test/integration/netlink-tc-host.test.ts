/**
 * TcClient and `flowdrake tc` against the host kernel, in a namespace of
 * their own. This kernel has sch_ingress/clsact built in but no cls_flower
 * (the kernel lane covers flower itself), so:
 *   - clsact add / dump / delete through the koffi socket works, with the
 *     kernel's EEXIST/EINVAL answers as typed errors;
 *   - a flower filter is refused, and the refusal arrives as a NetlinkError
 *     carrying the kernel's errno and extended-ack text, one per batch entry;
 *   - `flowdrake tc` (runTcLive) raises the same refusal, with a hint.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runTcLive } from "../../src/cli/tc.js";
import { NetlinkError } from "../../src/offload/netlink/errors.js";
import { TcClient } from "../../src/offload/netlink/tc/client.js";
import type { FlowerRule } from "../../src/offload/netlink/tc/rule.js";
import { createNetns, createVeth } from "../../src/sandbox/netns.js";
import { Cleanup, makeRunDir } from "../../src/sandbox/rundir.js";
import { UsageError } from "../../src/util/errors.js";
import { run } from "../../src/util/exec.js";

const cleanup = new Cleanup();
let ns = "";
let tc: TcClient;
let v0 = 0;

const rule = (i: number): FlowerRule => ({
  prio: 10,
  protocol: 0x0800,
  match: { dstIp: { value: `10.9.0.${i}`, mask: "255.255.255.255" } },
  flags: { skipHw: true },
  actions: [{ kind: "gact", control: 2 }],
});

beforeAll(async () => {
  ns = await createNetns("tchost", cleanup);
  await createVeth({ name: "fdv0", netns: ns }, { name: "fdv1", netns: ns });
  tc = TcClient.open({ netns: ns });
  cleanup.add("tc socket", () => tc.close());
  v0 = await tc.ifindex("fdv0");
});

afterAll(async () => {
  await cleanup.run();
});

describe("TcClient on the host kernel (own namespace)", () => {
  it("resolves devices inside the namespace only", async () => {
    const links = await tc.links();
    expect(links.get(v0)).toBe("fdv0");
    expect([...links.values()]).toContain("fdv1");
    const host = await run(["ip", "link", "show", "fdv0"], { allowFailure: true });
    expect(host.code).not.toBe(0);
  });

  it("adds, dumps and deletes a clsact qdisc", async () => {
    await tc.addQdisc(v0, "clsact");
    const qd = await tc.dumpQdiscs(v0);
    expect(qd).toContainEqual({ ifindex: v0, kind: "clsact", handle: 0xffff0000, parent: 0xfffffff1 });
    const again = await tc.addQdisc(v0, "clsact").catch((e: unknown) => e);
    expect(again).toBeInstanceOf(NetlinkError);
    expect((again as NetlinkError).errnoName).toBe("EEXIST");
    expect((again as NetlinkError).message).toBe(
      "RTM_NEWQDISC clsact failed: EEXIST, object already exists: Exclusivity flag on, cannot modify",
    );
    // iproute2 agrees about what is there.
    const shown = await run(["tc", "qdisc", "show", "dev", "fdv0"], { netns: ns });
    expect(shown.stdout).toMatch(/qdisc clsact ffff: parent ffff:fff1/);
  });

  it("refuses a flower filter with the kernel's extended ack (no cls_flower here)", async () => {
    const err = await tc.addFilter({ ifindex: v0, hook: "ingress" }, rule(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    const ne = err as NetlinkError;
    expect(ne.code).toBe("NETLINK");
    expect(ne.errno).toBe(2);
    expect(ne.errnoName).toBe("ENOENT");
    expect(ne.extack.msg).toBe("TC classifier not found");
    expect(ne.request.typeName).toBe("RTM_NEWTFILTER flower");
    expect(ne.message).toBe("RTM_NEWTFILTER flower failed: ENOENT, no such object: TC classifier not found");
    expect(await tc.dumpFilters({ ifindex: v0, hook: "ingress" })).toEqual([]);
  });

  it("reports every refused message of a batch with its index", async () => {
    const res = await tc.installFlowerRules({ ifindex: v0, hook: "ingress" }, [1, 2, 3].map(rule), {
      batchSize: 2,
    });
    expect(res.sent).toBe(3);
    expect(res.failed.map((f) => f.index)).toEqual([0, 1, 2]);
    for (const f of res.failed) {
      expect(f.error).toBeInstanceOf(NetlinkError);
      expect(f.error.extack.msg).toBe("TC classifier not found");
      expect(f.error.message).toContain(`(message ${f.index} of the batch)`);
    }
  });

  it("flowdrake tc raises the refusal as a NETLINK error; show and qdisc del work", async () => {
    const printed: string[] = [];
    const io = { out: (s: string) => void printed.push(s) };
    const add = ["--netns", ns, "filter", "add", "dev", "fdv0", "ingress", "prio", "1", "protocol", "ip"];
    const err = await runTcLive(
      [...add, "flower", "skip_hw", "dst_ip", "10.9.0.9", "action", "drop"],
      io,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    expect((err as Error).message).toBe(
      "RTM_NEWTFILTER flower failed: ENOENT, no such object: TC classifier not found " +
        "(hint: the kernel has no cls_flower (modprobe cls_flower))",
    );
    // main.ts maps code NETLINK to exit status 1, USAGE to 2.
    expect((err as NetlinkError).code).toBe("NETLINK");
    await runTcLive(["--netns", ns, "--json", "filter", "show", "dev", "fdv0", "ingress"], io);
    expect(JSON.parse(printed.pop()!)).toEqual([]);
    await runTcLive(["--netns", ns, "qdisc", "del", "dev", "fdv0", "clsact"], io);
    expect((await tc.dumpQdiscs(v0)).map((q) => q.kind)).not.toContain("clsact");
    const gone = await tc.delQdisc(v0, "clsact").catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(NetlinkError);
    expect((gone as NetlinkError).errnoName).toBe("EINVAL");
  });

  it("batch: a bad line fails the whole file before anything is sent", async () => {
    const dir = makeRunDir("tcbatch");
    cleanup.add("batch dir", () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "bad.tc");
    writeFileSync(
      file,
      "# comment\nqdisc add dev fdv0 clsact\nfilter add dev fdv0 ingress flower bogus_key 1\n",
    );
    const err = await runTcLive(["--netns", ns, "batch", file], { out: () => undefined }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(new RegExp(`^${file}:3: .*bogus_key.*\\(nothing was sent\\)$`));
    expect((await tc.dumpQdiscs(v0)).map((q) => q.kind)).not.toContain("clsact");

    const good = join(dir, "good.tc");
    writeFileSync(
      good,
      "qdisc add dev fdv0 clsact\nfilter show dev fdv0 ingress\nqdisc del dev fdv0 clsact\n",
    );
    const printed: string[] = [];
    await runTcLive(["--netns", ns, "--json", "batch", good], { out: (s) => void printed.push(s) });
    expect(printed).toEqual(["[]\n"]);
    expect((await tc.dumpQdiscs(v0)).map((q) => q.kind)).not.toContain("clsact");
  });

  it("rejects an unknown device as a usage error before sending anything", async () => {
    const err = await runTcLive(
      ["--netns", ns, "filter", "add", "dev", "fdnope", "ingress", "flower", "action", "drop"],
      { out: () => undefined },
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe(`no such device: fdnope in network namespace ${ns}`);
    expect((err as UsageError).code).toBe("USAGE");
  });
});
