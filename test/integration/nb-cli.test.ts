/**
 * The `flowdrake nb` command as a script sees it: the built binary
 * (`node dist/src/cli/main.js nb …`, built in beforeAll) run as a child
 * process against a real embedded store in a temp run dir and against a real
 * etcd. Every subcommand; exit codes (0 ok, 1 validation, 2 usage, 3 not
 * found, 4 conflict, 5 unreachable); bad input names object and field and
 * writes nothing (the store revision does not move); `nb apply` creates,
 * is idempotent, updates, prunes and dry-runs; a malformed stored object
 * (etcd: bytes put with `etcdctl` that are not JSON; embedded: JSON that is
 * not a port) is listed with a warning, refused by show/update, and deleted.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { NbApi } from "../../src/nb/api.js";
import { executePlan, formatChange, loadState, parseTopology, planApply } from "../../src/nb/apply.js";
import { IPAM_KINDS, OBJECT_KINDS } from "../../src/nb/model/index.js";
import { ConflictError } from "../../src/nb/store/errors.js";
import { nbExitCode } from "../../src/cli/nb-run.js";
import { openStore } from "../../src/nb/store/open.js";
import { freeTcpPort, makeRunDir } from "../harness/index.js";
import { useEtcd } from "../harness/etcd.js";

const ROOT = join(import.meta.dirname, "..", "..");
const MAIN = join(ROOT, "dist", "src", "cli", "main.js");
const EXAMPLE = join(ROOT, "examples", "topology.yaml");

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function runBin(args: string[], env: Record<string, string>): Promise<Result> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [MAIN, ...args],
      { cwd: ROOT, env: { ...process.env, FLOWDRAKE_LOG_LEVEL: "silent", ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let runDir: string;

beforeAll(async () => {
  runDir = makeRunDir("nb-cli");
  const build = await new Promise<Result>((resolve) => {
    execFile(
      "npx",
      ["tsc", "-p", "tsconfig.build.json"],
      { cwd: ROOT, timeout: 110_000 },
      (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
    );
  });
  // Type errors elsewhere in the tree do not stop tsc from emitting; a missing output does.
  expect(readFileSync(join(ROOT, "dist", "src", "cli", "nb-apply.js"), "utf8"), build.stdout).toContain(
    "--prune",
  );
}, 120_000);

afterAll(() => {
  if (runDir) rmSync(runDir, { recursive: true, force: true });
});

/** The CLI suite against one store URL. */
function cliSuite(name: string, url: () => string): void {
  // Each command is a fresh node process (~1 s on a loaded 2-core machine): generous per-test time.
  describe(`flowdrake nb against ${name}`, { timeout: 240_000 }, () => {
    const nb = (...args: string[]): Promise<Result> => runBin(["nb", ...args], { FLOWDRAKE_NB: url() });
    const json = async (...args: string[]): Promise<Record<string, unknown>> => {
      const r = await nb(...args, "--json");
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const value = async (...args: string[]): Promise<Record<string, unknown>> =>
      (await json(...args)).value as Record<string, unknown>;
    /**
     * Every NB object and IPAM reservation with its version: what "nothing was
     * written" compares (etcd's own revision also moves for lock keys).
     */
    const revision = async (): Promise<string> => {
      const store = await openStore(url());
      try {
        const kinds = [...OBJECT_KINDS, ...Object.values(IPAM_KINDS)];
        const all = await Promise.all(kinds.map((k) => store.list(k)));
        return JSON.stringify(all.flat().map((o) => [o.kind, o.key, o.version]));
      } finally {
        await store.close();
      }
    };
    /** Run, expect `code` and a stderr line matching `msg`, and no store write. */
    const refused = async (code: number, msg: RegExp, ...args: string[]): Promise<Result> => {
      const before = await revision();
      const r = await nb(...args);
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code, stderr: expect.stringMatching(msg) });
      expect(await revision()).toBe(before);
      return r;
    };

    it("creates a tenant, network, subnet and port from per-field flags", async () => {
      let r = await nb("tenant", "create", "t1", "--name", "team one");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^tenant t1 {2}\(version 1\)\n {2}id: +t1\n/);
      r = await nb(
        "network",
        "create",
        "net1",
        "--type",
        "geneve",
        "--segmentation-id",
        "100",
        "--mtu",
        "1442",
        "--tenant",
        "t1",
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/ {2}segmentationId: +100\n/);
      const sub = await value(
        "subnet",
        "create",
        "sub1",
        "--network",
        "net1",
        "--cidr",
        "10.0.0.0/24",
        "--gateway",
        "10.0.0.1",
        "--dns",
        "8.8.8.8",
        "--no-dhcp",
        "--host-route",
        "0.0.0.0/0,10.0.0.254",
        "--dhcp-option",
        "mtu=1400",
      );
      expect(sub).toMatchObject({
        tenantId: "t1",
        networkId: "net1",
        gatewayIp: "10.0.0.1",
        enableDhcp: false,
        dnsNameservers: ["8.8.8.8"],
        hostRoutes: [{ destination: "0.0.0.0/0", nexthop: "10.0.0.254" }],
        dhcpOptions: { mtu: "1400" },
      });
      await json("secgroup", "create", "sg1", "--tenant", "t1");
      const port = await value(
        "port",
        "create",
        "p1",
        "--network",
        "net1",
        "--mac",
        "FA:16:3E:00:00:01",
        "--ip",
        "sub1=10.0.0.5",
        "--chassis",
        "host1",
        "--security-group",
        "sg1",
        "--allowed-address-pair",
        "10.0.1.0/24",
      );
      expect(port).toMatchObject({
        tenantId: "t1",
        macAddress: "fa:16:3e:00:00:01",
        fixedIps: [{ subnetId: "sub1", ipAddress: "10.0.0.5" }],
        chassis: "host1",
        securityGroups: ["sg1"],
        allowedAddressPairs: [{ ipAddress: "10.0.1.0/24" }],
      });
      const p2 = await value("port", "create", "p2", "--network", "net1", "--no-port-security");
      expect(p2).toMatchObject({
        portSecurityEnabled: false,
        fixedIps: [{ subnetId: "sub1", ipAddress: "10.0.0.2" }],
      });
    });

    it("lists as an aligned table and as JSON", async () => {
      const r = await nb("port", "list", "--tenant", "t1");
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trimEnd().split("\n");
      expect(lines[0]).toMatch(
        /^ID {2}TENANT {2}NETWORK {2}MAC {16}FIXED-IPS {6}CHASSIS {2}SECGROUPS {2}OWNER {2}VER$/,
      );
      expect(lines[1]).toMatch(
        /^p1 {2}t1 {6}net1 {5}fa:16:3e:00:00:01 {2}sub1=10.0.0.5 {2}host1 {4}sg1 {8}- {6}1$/,
      );
      expect(lines).toHaveLength(3);
      const list = (await json("network", "list")) as unknown as { key: string; version: number }[];
      expect(list.map((o) => o.key)).toEqual(["net1"]);
      expect((await nb("subnet", "list", "--network", "nope")).stdout).toBe(
        "ID  TENANT  NETWORK  CIDR  GATEWAY  DHCP  DNS  NAME  VER\n",
      );
    });

    it("updates with flags and --set, and compare-and-swaps on --version", async () => {
      const o = await json("port", "update", "p1", "--chassis", "host2", "--set", '{"description":"web"}');
      expect(o).toMatchObject({ version: 2, value: { chassis: "host2", description: "web" } });
      await refused(
        4,
        /conflict: .*expected version 1, found 2/,
        "port",
        "update",
        "p1",
        "--chassis",
        "h3",
        "--version",
        "1",
      );
      const ok = await json("port", "update", "p1", "--chassis", "host3", "--version", "2");
      expect(ok).toMatchObject({ version: 3, value: { chassis: "host3" } });
      await refused(4, /conflict/, "port", "delete", "p2", "--version", "9");
    });

    it("refuses bad input with exit 1 naming object and field, writing nothing", async () => {
      await refused(
        1,
        /^flowdrake nb: subnet sub2: cidr: is not a CIDR/,
        "subnet",
        "create",
        "sub2",
        "--network",
        "net1",
        "--cidr",
        "10.0.0.300/24",
      );
      await refused(
        1,
        /^flowdrake nb: network net2: mtu: "abc" is not an integer/,
        "network",
        "create",
        "net2",
        "--tenant",
        "t1",
        "--mtu",
        "abc",
      );
      await refused(
        1,
        /network net2: mtu: must be at most 9216/,
        "network",
        "create",
        "net2",
        "--tenant",
        "t1",
        "--mtu",
        "9999",
      );
      await refused(
        1,
        /port p3: fixedIps\[0\]\.ipAddress: 10\.0\.0\.5 is already used by lport\/p1/,
        "port",
        "create",
        "p3",
        "--network",
        "net1",
        "--ip",
        "sub1=10.0.0.5",
      );
      await refused(
        1,
        /port p3: fixedIps\[0\]\.ipAddress: 10\.9\.0\.5 is not inside subnet sub1/,
        "port",
        "create",
        "p3",
        "--network",
        "net1",
        "--ip",
        "sub1=10.9.0.5",
      );
      await refused(
        1,
        /port p3: networkId: network nonet does not exist/,
        "port",
        "create",
        "p3",
        "--network",
        "nonet",
      );
      await refused(
        1,
        /port p3: securityGroups: must be empty when portSecurityEnabled is false/,
        "port",
        "create",
        "p3",
        "--network",
        "net1",
        "--no-port-security",
        "--security-group",
        "sg1",
      );
      await refused(
        1,
        /network net1: network has 3 port\(s\)|network net1: network has \d+ port/,
        "network",
        "delete",
        "net1",
      );
      await refused(
        1,
        /network net1: networkType: cannot be changed after create/,
        "network",
        "update",
        "net1",
        "--type",
        "vxlan",
      );
      await refused(
        1,
        /secgroup sg1: rules\[0\]\.portRangeMax: 70000|secgroup sg1: rules\[0\]\.port/,
        "secgroup",
        "rule-add",
        "sg1",
        "--direction",
        "ingress",
        "--protocol",
        "tcp",
        "--port",
        "70000",
      );
    });

    it("exits 3 for what does not exist, 4 for what already does, 2 for usage errors", async () => {
      await refused(3, /network nope does not exist/, "network", "show", "nope");
      await refused(3, /port nope does not exist/, "port", "update", "nope", "--chassis", "x");
      await refused(3, /subnet nope does not exist/, "subnet", "delete", "nope");
      await refused(3, /router nope does not exist/, "router", "add-interface", "nope", "sub1");
      await refused(3, /does not exist/, "secgroup", "rule-delete", "sg1", "no-such-rule");
      await refused(4, /network net1: id: already exists/, "network", "create", "net1", "--tenant", "t1");
      await refused(2, /unknown option '--bogus'/, "network", "create", "n9", "--bogus");
      await refused(2, /--set must be a JSON object/, "network", "create", "n9", "--set", "{bad");
      await refused(2, /missing required argument/, "network", "show");
      await refused(2, /unknown command 'frob'/, "network", "frob");
    });

    it("attaches and detaches router interfaces", async () => {
      await json("router", "create", "r1", "--tenant", "t1", "--name", "edge");
      const res = (await json("router", "add-interface", "edge", "sub1")) as {
        router: { value: { interfaces: { subnetId: string; ipAddress: string; portId: string }[] } };
        port: { value: { deviceOwner: string } };
      };
      expect(res.router.value.interfaces).toMatchObject([{ subnetId: "sub1", ipAddress: "10.0.0.1" }]);
      expect(res.port.value.deviceOwner).toBe("network:router_interface");
      let r = await nb("router", "update", "r1", "--route", "192.168.0.0/16,10.0.0.254");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(
        /routes:\n {4}destination +nexthop\n {4}192\.168\.0\.0\/16 {2}10\.0\.0\.254\n/,
      );
      await refused(
        1,
        /router r1: routes: route 192\.168\.0\.0\/16 via 10\.0\.0\.254 needs this interface/,
        "router",
        "remove-interface",
        "r1",
        "sub1",
      );
      await refused(
        1,
        /router r1: interfaces\.subnetId: subnet sub1 is already attached/,
        "router",
        "add-interface",
        "r1",
        "sub1",
      );
      expect((await nb("router", "update", "r1", "--set", '{"routes":[]}')).code).toBe(0);
      r = await nb("router", "remove-interface", "r1", "sub1");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/ {2}interfaces: +-\n/);
      expect((await value("router", "show", "r1")).interfaces).toEqual([]);
    });

    it("adds and deletes security group rules", async () => {
      await json("secgroup", "create", "sg2", "--tenant", "t1");
      const a = (await json(
        "secgroup",
        "rule-add",
        "sg1",
        "--direction",
        "ingress",
        "--protocol",
        "tcp",
        "--port",
        "22",
        "--remote-ip",
        "0.0.0.0/0",
      )) as {
        rule: { id: string };
      };
      const b = (await json(
        "secgroup",
        "rule-add",
        "sg1",
        "--direction",
        "ingress",
        "--protocol",
        "udp",
        "--port-range",
        "1000:2000",
        "--remote-group",
        "sg2",
        "--id",
        "udp-range",
      )) as {
        group: { value: { rules: unknown[] } };
      };
      expect(b.group.value.rules).toEqual([
        {
          id: a.rule.id,
          direction: "ingress",
          ethertype: "IPv4",
          protocol: "tcp",
          portRangeMin: 22,
          portRangeMax: 22,
          remoteIpPrefix: "0.0.0.0/0",
        },
        {
          id: "udp-range",
          direction: "ingress",
          ethertype: "IPv4",
          protocol: "udp",
          portRangeMin: 1000,
          portRangeMax: 2000,
          remoteGroupId: "sg2",
        },
      ]);
      const shown = await nb("secgroup", "show", "sg1");
      expect(shown.stdout).toMatch(/ {4}udp-range +ingress +IPv4 +udp +1000 +2000 +- +sg2\n/);
      await refused(
        1,
        /secgroup sg2: security group secgroup sg1 refers|security group sg1 refers to it/,
        "secgroup",
        "delete",
        "sg2",
      );
      const left = (await json("secgroup", "rule-delete", "sg1", "udp-range")) as {
        value: { rules: { id: string }[] };
      };
      expect(left.value.rules.map((x) => x.id)).toEqual([a.rule.id]);
      expect((await nb("secgroup", "delete", "sg2")).code).toBe(0);
    });

    it("manages floating IPs, SNAT gateways, chassis and tenants", async () => {
      await json("network", "create", "ext", "--tenant", "t1", "--external");
      await json("subnet", "create", "ext-sub", "--network", "ext", "--cidr", "203.0.113.0/24");
      const fip = await value("fip", "create", "f1", "--network", "ext", "--port", "p1");
      expect(fip).toMatchObject({
        tenantId: "t1",
        floatingIpAddress: "203.0.113.2",
        fixedIpAddress: "10.0.0.5",
      });
      const snat = await value(
        "snat",
        "create",
        "s1",
        "--router",
        "r1",
        "--network",
        "ext",
        "--external-ip",
        "203.0.113.9",
        "--gateway-chassis",
        "host1,host2",
        "--gateway-chassis",
        "host3",
      );
      expect(snat).toMatchObject({
        tenantId: "t1",
        routerId: "r1",
        externalIpAddress: "203.0.113.9",
        enabled: true,
        gatewayChassis: ["host1", "host2", "host3"],
      });
      expect((await nb("snat", "list")).stdout).toMatch(
        /\ns1 +t1 +r1 +ext +203\.0\.113\.9 +yes +host1,host2,host3 /,
      );
      await refused(
        1,
        /gatewayChassis\[1\]: host1 is listed twice/,
        "snat",
        "update",
        "s1",
        "--gateway-chassis",
        "host1,host1",
      );
      expect((await value("snat", "update", "s1", "--no-enabled")).enabled).toBe(false);
      const dist = await value(
        "snat",
        "update",
        "s1",
        "--chassis-address",
        "host1=203.0.113.21",
        "--chassis-address",
        "host2=203.0.113.22,fa:16:3e:00:22:22",
      );
      expect(dist.chassisAddresses).toMatchObject([
        { chassis: "host1", ipAddress: "203.0.113.21", macAddress: expect.stringMatching(/^fa:16:3e:/) },
        { chassis: "host2", ipAddress: "203.0.113.22", macAddress: "fa:16:3e:00:22:22" },
      ]);
      await refused(
        1,
        /is not CHASSIS=IP\[,MAC\]/,
        "snat",
        "update",
        "s1",
        "--chassis-address",
        "203.0.113.23",
      );
      expect((await nb("fip", "list")).stdout).toMatch(/\nf1 +t1 +203\.0\.113\.2 +ext +p1 +10\.0\.0\.5 +1\n/);
      await refused(1, /port p1: floating IP f1 points to this port/, "port", "delete", "p1");
      const del = await nb("fip", "delete", "f1");
      expect({ code: del.code, stdout: del.stdout, stderr: del.stderr }).toEqual({
        code: 0,
        stdout: "deleted fip f1\n",
        stderr: "",
      });
      expect((await nb("snat", "delete", "s1", "--json")).stdout).toContain('"key": "s1"');

      const ch = await value(
        "chassis",
        "create",
        "host1",
        "--tunnel-ip",
        "192.0.2.1",
        "--encap",
        "geneve",
        "--bridge-mapping",
        "physnet1=br-ex",
      );
      expect(ch).toMatchObject({
        name: "host1",
        tunnelIps: ["192.0.2.1"],
        encapTypes: ["geneve"],
        bridgeMappings: { physnet1: "br-ex" },
      });
      await refused(
        1,
        /chassis host2: tunnelIps: needs at least one tunnel IP|chassis host2: tunnelIps/,
        "chassis",
        "create",
        "host2",
      );
      expect((await value("chassis", "update", "host1", "--hostname", "compute-1")).hostname).toBe(
        "compute-1",
      );
      expect((await nb("chassis", "list")).stdout).toMatch(
        /^NAME {3}HOSTNAME {3}TUNNEL-IPS {2}ENCAPS {2}HEARTBEAT {2}VER\nhost1 {2}compute-1 {2}192\.0\.2\.1 {3}geneve {2}- {10}2\n$/,
      );
      expect((await nb("chassis", "delete", "host1")).code).toBe(0);
      await refused(3, /chassis host1 does not exist/, "chassis", "show", "host1");

      expect((await value("tenant", "update", "t1", "--description", "lab")).description).toBe("lab");
      expect((await nb("tenant", "list")).stdout).toMatch(/\nt1 +team one +lab +2\n/);
      await json("tenant", "create", "t-gone");
      expect((await nb("tenant", "delete", "t-gone")).code).toBe(0);
    });

    it("a malformed stored port costs only itself: list warns, show/update refuse, delete removes it", async () => {
      // etcd: what an operator's typo in `etcdctl put` leaves; embedded (JSON only): a port without a network
      const isEtcd = url().startsWith("etcd://");
      const reason = isEtcd ? /not JSON: / : /networkId: is required/;
      if (isEtcd) {
        await promisify(execFile)(
          "etcdctl",
          [
            `--endpoints=${url().slice("etcd://".length)}`,
            "put",
            "/flowdrake/nb/lport/bad1",
            '{"id":"bad1",',
          ],
          { env: { ...process.env, ETCDCTL_API: "3" } },
        );
      } else {
        const store = await openStore(url());
        await store
          .txn([{ op: "put", kind: "lport", key: "bad1", value: { id: "bad1", tenantId: "t1" } }])
          .finally(() => store.close());
      }
      let r = await nb("port", "list");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^ID .*\np1 .*\np2 .*\n$/);
      expect(r.stderr).toMatch(/^flowdrake nb: warning: port bad1 \(version 1\) is malformed: /);
      expect(r.stderr).toMatch(reason);
      expect(r.stderr).toContain("delete it with: flowdrake nb port delete bad1\n");
      r = await nb("port", "list", "--json");
      expect(r.code, r.stderr).toBe(0);
      const entries = JSON.parse(r.stdout) as Record<string, unknown>[];
      expect(entries.map((e) => e.key)).toEqual(["bad1", "p1", "p2"]);
      expect(entries[0]).toMatchObject({
        kind: "lport",
        key: "bad1",
        version: 1,
        malformed: expect.stringMatching(reason),
      });
      expect(entries[0]).not.toHaveProperty("value");
      expect(entries[1]).toHaveProperty("value.macAddress", "fa:16:3e:00:00:01");
      await refused(
        1,
        /port bad1: the stored value is malformed \(.+\); .*flowdrake nb port delete bad1/,
        "port",
        "show",
        "bad1",
      );
      await refused(1, /port bad1: the stored value is malformed/, "port", "update", "bad1", "--name", "x");
      await refused(
        4,
        /port bad1: id: already exists \(its stored value is malformed/,
        "port",
        "create",
        "bad1",
        "--network",
        "net1",
      );
      // other writes go on: a port on the same network, with an address allocated next to the others
      const p3 = await value("port", "create", "p3", "--network", "net1");
      expect(p3.fixedIps).toEqual([{ subnetId: "sub1", ipAddress: "10.0.0.3" }]);
      expect((await nb("port", "delete", "p3")).code).toBe(0);
      r = await nb("port", "delete", "bad1");
      expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
        code: 0,
        stdout: "deleted port bad1\n",
        stderr: "",
      });
      r = await nb("port", "list");
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    });

    it("nb apply: refuses to move an object to another tenant; a dry run writes nothing", async () => {
      // router r1 of tenant t1 (from the tests above) is the example's router of tenant demo
      await refused(1, /router r1: tenantId: cannot be changed after create/, "apply", "-f", EXAMPLE);
      expect((await nb("router", "delete", "r1")).code).toBe(0);
      const before = await revision();
      const r = await nb("apply", "-f", EXAMPLE, "--dry-run");
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("+ network net-a\n");
      expect(r.stdout).toContain("+ router r1 interface subnet-b\n");
      expect(r.stdout).toMatch(/\(dry run: nothing written\)\n$/);
      expect(await revision()).toBe(before);
    });

    it("nb apply on a clean tenant: create, idempotence, update, prune", async () => {
      let r = await nb("apply", "-f", EXAMPLE);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split("\n")).toEqual([
        "+ tenant demo",
        "+ secgroup sg-ssh-icmp",
        "+ network net-a",
        "+ network net-b",
        "+ subnet subnet-a",
        "+ subnet subnet-b",
        "+ router r1",
        "+ router r1 interface subnet-a",
        "+ router r1 interface subnet-b",
        "+ port vm1",
        "+ port vm2",
        "+ port vm3",
        "12 changes applied",
        "",
      ]);
      const rev = await revision();
      r = await nb("apply", "-f", EXAMPLE, "--prune");
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: "no changes\n" });
      expect(await revision()).toBe(rev);

      // A port outside the file in tenant demo, and a changed MAC.
      expect((await nb("port", "create", "p9", "--network", "net-a")).code).toBe(0);
      const changed = readFileSync(EXAMPLE, "utf8").replace("fa:16:3e:0a:00:11", "fa:16:3e:0a:00:99");
      const file = join(runDir, `${name}-changed.yaml`);
      writeFileSync(file, changed);
      r = await nb("apply", "-f", file);
      expect(r.stdout).toBe("~ port vm1 (macAddress)\n1 change applied\n");
      expect((await value("port", "show", "vm1")).macAddress).toBe("fa:16:3e:0a:00:99");
      expect((await value("port", "show", "p9")).tenantId).toBe("demo");
      const dry = await nb("apply", "-f", file, "--prune", "--dry-run");
      expect(dry.stdout).toBe("- port p9\n(dry run: nothing written)\n");
      r = await nb("apply", "-f", file, "--prune", "--json");
      expect(JSON.parse(r.stdout)).toMatchObject({
        dryRun: false,
        changes: [{ sign: "-", kind: "lport", key: "p9", line: "- port p9" }],
      });
      await refused(3, /port p9 does not exist/, "port", "show", "p9");
      // Objects of other tenants are outside the prune scope.
      expect((await nb("port", "show", "p1")).code).toBe(0);
      expect((await nb("apply", "-f", file, "--prune")).stdout).toBe("no changes\n");
    });

    it("nb apply stops with a conflict (exit 4) when another writer changed an object after planning", async () => {
      const store = await openStore(url());
      try {
        const api = new NbApi(store);
        const text = readFileSync(join(runDir, `${name}-changed.yaml`), "utf8").replace(
          "fa:16:3e:0a:00:12",
          "fa:16:3e:0a:00:88",
        );
        const plan = planApply(parseTopology(parseYaml(text)), await loadState(api));
        expect(plan.changes.map(formatChange)).toEqual(["~ port vm2 (macAddress)"]);
        await api.update("lport", "vm2", { description: "racing writer" });
        const err: unknown = await executePlan(api, plan).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ConflictError);
        expect(nbExitCode(err)).toBe(4);
        expect((await api.get("lport", "vm2")).value).toMatchObject({
          macAddress: "fa:16:3e:0a:00:12",
          description: "racing writer",
        });
        await api.update("lport", "vm2", { description: "" });
      } finally {
        await store.close();
      }
    });

    it("nb apply refuses a bad file before writing anything", async () => {
      const bad = readFileSync(EXAMPLE, "utf8").replace("cidr: 10.20.0.0/24", "cidr: 10.20.0.0/33");
      const file = join(runDir, `${name}-bad.yaml`);
      writeFileSync(file, bad.replace("fa:16:3e:0a:00:12", "fa:16:3e:0a:00:77"));
      await refused(1, /subnet subnet-b: cidr: is not a CIDR/, "apply", "-f", file);
      writeFileSync(file, readFileSync(EXAMPLE, "utf8").replace("networkId: net-b", "networkId: net-c"));
      await refused(
        1,
        /subnet subnet-b: networkId: network net-c is neither in the file nor in the store/,
        "apply",
        "-f",
        file,
      );
      writeFileSync(
        file,
        readFileSync(EXAMPLE, "utf8").replace(
          "networkType: geneve, segmentationId: 1002",
          "networkType: vxlan, segmentationId: 1002",
        ),
      );
      await refused(1, /network net-b: networkType: cannot be changed after create/, "apply", "-f", file);
      writeFileSync(file, "tenant: demo\nnetwork:\n  - id: x\n");
      await refused(1, /topology .*: network: is not a section/, "apply", "-f", file);
      await refused(2, /-f .*nope\.yaml/, "apply", "-f", join(runDir, "nope.yaml"));
    });

    it("--help documents flags and exit codes for every command", async () => {
      for (const args of [
        ["--help"],
        ["network", "create", "--help"],
        ["subnet", "update", "--help"],
        ["port", "list", "--help"],
        ["router", "add-interface", "--help"],
        ["secgroup", "rule-add", "--help"],
        ["apply", "--help"],
      ]) {
        const r = await nb(...args);
        expect(r.code, args.join(" ")).toBe(0);
        expect(r.stdout, args.join(" ")).toMatch(
          /Exit codes:\n {2}0 {2}ok\n {2}1 {2}validation[^\n]*\n {2}2 {2}usage[^\n]*\n {2}3 {2}not found[^\n]*\n {2}4 {2}conflict[^\n]*\n {2}5 {2}store unreachable/,
        );
      }
      expect((await nb("network", "create", "--help")).stdout).toMatch(/--segmentation-id <n>/);
      expect((await nb("subnet", "create", "--help")).stdout).toMatch(/--no-dhcp/);
      expect((await nb("port", "create", "--help")).stdout).toMatch(
        /--allowed-address-pair <ip\|cidr\[,mac\]>/,
      );
    });
  });
}

const embeddedUrl = (): string => `embedded:${join(runDir, "db")}`;
cliSuite("an embedded store", embeddedUrl);

const etcd = useEtcd({ label: "nb-cli-etcd" });
cliSuite(
  "etcd",
  () =>
    `etcd://${etcd()
      .endpoints.map((e) => e.replace(/^https?:\/\//, ""))
      .join(",")}`,
);

describe("flowdrake nb store errors", () => {
  it("exits 5 when etcd cannot be reached", async () => {
    const port = await freeTcpPort();
    const r = await runBin(["nb", "network", "list", "--db", `etcd://127.0.0.1:${port}`], {});
    expect(r.code).toBe(5);
    expect(r.stderr).toMatch(/flowdrake nb: cannot reach etcd at http:\/\/127\.0\.0\.1:\d+/);
  });

  it("exits 2 for a malformed --db", async () => {
    const r = await runBin(["nb", "network", "list", "--db", "mysql://x"], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /--db mysql:\/\/x: expected embedded:\/path, etcd:\/\/host:port.* or etcds:\/\//,
    );
  });
});
