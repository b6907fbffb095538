/**
 * Many writers racing on the same NB objects through NbApi, on both drivers
 * (the embedded store shared by in-process writers; etcd with one client per
 * writer, as separate processes would have):
 *   - CAS counters: N writers × M read-modify-write increments with
 *     `expectVersion`, retried on ConflictError, end at exactly N×M;
 *   - security group rules added concurrently (each add is a CAS update of
 *     the group): all N×M rules are there, none twice;
 *   - ports created concurrently on one subnet (IPAM under the tenant lock):
 *     all N×M exist, with distinct IPs and MACs, and the IPAM reservations
 *     match the ports one to one.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NbApi } from "../../src/nb/api.js";
import { IPAM_KINDS } from "../../src/nb/model/index.js";
import { EmbeddedStore } from "../../src/nb/store/embedded.js";
import { openEtcdStore } from "../../src/nb/store/etcd.js";
import { ConflictError } from "../../src/nb/store/errors.js";
import type { NbStore } from "../../src/nb/store/types.js";
import { EtcdCluster } from "../harness/etcd.js";
import { Cleanup, makeRunDir } from "../harness/index.js";

const cleanup = new Cleanup();
afterAll(() => cleanup.run());

const WRITERS = 6;
const PER_WRITER = 8;

/** Retry `fn` while it loses a CAS race. */
async function onConflictRetry<T>(fn: () => Promise<T>, conflicts: { n: number }): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ConflictError)) throw err;
      conflicts.n++;
    }
  }
}

function raceSuite(name: string, openWriters: () => Promise<NbStore[]>): void {
  describe(`concurrent NbApi writers: ${name}`, () => {
    let stores: NbStore[] = [];
    const apis = (): NbApi[] => stores.map((s) => new NbApi(s));
    let n = 0;
    const tenant = (): string => `race-${name.replace(/\W/g, "")}-${Date.now().toString(36)}-${n++}`;

    it("CAS counters: N writers × M increments end at N×M", async () => {
      stores = await openWriters();
      const t = tenant();
      const api0 = apis()[0]!;
      const nets = await Promise.all(
        ["a", "b"].map((name) => api0.create("lswitch", { tenantId: t, name, description: "0" })),
      );
      const conflicts = { n: 0 };
      await Promise.all(
        apis().map(async (api, w) => {
          for (let i = 0; i < PER_WRITER; i++) {
            const net = nets[(w + i) % nets.length]!;
            await onConflictRetry(async () => {
              const cur = await api.get("lswitch", net.key);
              const next = String(Number(cur.value.description) + 1);
              await api.update("lswitch", net.key, { description: next }, { expectVersion: cur.version });
            }, conflicts);
          }
        }),
      );
      let total = 0;
      for (const net of nets) {
        const o = await api0.get("lswitch", net.key);
        total += Number(o.value.description);
        // one version per committed increment: nothing applied twice, nothing lost
        expect(o.version).toBe(Number(o.value.description) + 1);
      }
      expect(total).toBe(WRITERS * PER_WRITER);
      // the writers really raced: with this many of them some CAS must have lost
      expect(conflicts.n).toBeGreaterThan(0);
    }, 120_000);

    it("security group rules added concurrently: all N×M there, none twice", async () => {
      const t = tenant();
      const api0 = apis()[0]!;
      const sg = await api0.create("secgroup", { tenantId: t, name: "race" });
      const before = (await api0.get("secgroup", sg.key)).value.rules.length;
      const conflicts = { n: 0 };
      await Promise.all(
        apis().map(async (api, w) => {
          for (let i = 0; i < PER_WRITER; i++) {
            await onConflictRetry(
              () =>
                api.secgroupRuleAdd(sg.key, {
                  id: `r-${w}-${i}`,
                  direction: "ingress",
                  ethertype: "IPv4",
                  protocol: "tcp",
                  portRangeMin: 1000 + w * 100 + i,
                  portRangeMax: 1000 + w * 100 + i,
                }),
              conflicts,
            );
          }
        }),
      );
      const rules = (await api0.get("secgroup", sg.key)).value.rules;
      const ids = rules.map((r) => r.id).filter((id) => id.startsWith("r-"));
      expect(rules.length).toBe(before + WRITERS * PER_WRITER);
      expect(new Set(ids).size).toBe(WRITERS * PER_WRITER);
    }, 120_000);

    it("ports created concurrently on one subnet get distinct IPs and MACs", async () => {
      const t = tenant();
      const api0 = apis()[0]!;
      const net = await api0.create("lswitch", { tenantId: t, name: "ipam" });
      const sub = await api0.create("subnet", { tenantId: t, networkId: net.key, cidr: "10.77.0.0/24" });
      await Promise.all(
        apis().map(async (api) => {
          for (let i = 0; i < PER_WRITER; i++) {
            await api.create("lport", { tenantId: t, networkId: net.key, fixedIps: [{ subnetId: sub.key }] });
          }
        }),
      );
      const ports = await api0.list("lport", { networkId: net.key });
      expect(ports.length).toBe(WRITERS * PER_WRITER);
      const ips = ports.flatMap((p) => p.value.fixedIps.map((f) => f.ipAddress));
      const macs = ports.map((p) => p.value.macAddress);
      expect(ips.length).toBe(WRITERS * PER_WRITER);
      expect(new Set(ips).size).toBe(ips.length);
      expect(new Set(macs).size).toBe(macs.length);
      // IPAM reservations name exactly these ports' addresses
      const ipRes = (await stores[0]!.list(IPAM_KINDS.ip)).filter((o) =>
        ips.some((ip) => o.key === `${net.key}/${ip}`),
      );
      expect(ipRes.length).toBe(ips.length);
    }, 120_000);
  });
}

raceSuite("embedded", async () => {
  const dir = makeRunDir("nb-race-embedded");
  cleanup.add(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  const store = await EmbeddedStore.open(join(dir, "db"));
  cleanup.add("embedded store", () => store.close());
  // one process owns an embedded store: its writers share it
  return Array.from({ length: WRITERS }, () => store);
});

raceSuite("etcd", async () => {
  const etcd = await EtcdCluster.start({ label: "nb-race-etcd" });
  cleanup.add("etcd", () => etcd.stop());
  const stores: NbStore[] = [];
  for (let i = 0; i < WRITERS; i++) {
    const s = await openEtcdStore(etcd.endpoints);
    cleanup.add(`etcd client ${i}`, () => s.close());
    stores.push(s);
  }
  return stores;
});
