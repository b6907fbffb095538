/**
 * `flowdrake nb`: write and read the northbound model from the command line.
 * Each object noun (network, subnet, port, router, secgroup, fip, snat,
 * chassis, tenant) gets create/list/show/update/delete with one flag per
 * common field (the table in nb-fields.ts) and `--set '<json>'` for anything
 * else; routers get add-interface/remove-interface, security groups
 * rule-add/rule-delete, and `nb apply` (nb-apply.ts) seeds a whole topology.
 *
 * Output is a table (list) or a `field: value` block (show, create, update)
 * for people and the stored objects as JSON with `--json` for scripts. Every
 * failure is one line on stderr and an exit code scripts can rely on
 * (NB_EXIT, also printed by every `--help`).
 *
 * A stored object that is malformed (not JSON, or not its kind's schema; see
 * src/nb/api.ts) never breaks a list: `list` prints the good objects, one
 * warning line per malformed one on stderr, and exits 0; with `--json` the
 * malformed ones are entries of the same array with a `malformed` reason and
 * no `value` (plus `raw`, the stored JSON, when it parsed). `show` and
 * `update` of one exit 1 naming the reason; `delete` removes it.
 */
import type { Command } from "commander";
import type { NbApi } from "../nb/api.js";
import { KINDS, NotFoundError, OBJECT_KINDS, type ObjectKind, ValidationError } from "../nb/model/index.js";
import { register as registerApply } from "./nb-apply.js";
import { addFieldFlags, fieldsFromFlags } from "./nb-fields.js";
import { formatList, formatShow } from "./nb-format.js";
import {
  NB_EXIT_HELP,
  WAIT_OPTION,
  type NbOpts,
  common,
  json,
  parseSet,
  parseVersion,
  warnMalformed,
  withApi,
} from "./nb-run.js";

type Obj = Record<string, unknown>;

const NOUN_HELP: Record<ObjectKind, string> = {
  chassis: "compute nodes running the agent (tunnel IPs, encaps, bridge mappings)",
  tenant: "tenants (projects)",
  lswitch: "logical switches: geneve, vxlan, vlan or flat networks",
  subnet: "IPv4/IPv6 subnets of a network, with DHCP settings",
  lport: "logical ports: MAC, fixed IPs, chassis binding, port security",
  lrouter: "logical routers, their interfaces and static routes",
  secgroup: "security groups and their rules",
  fip: "floating IPs (DNAT from an external network to a port)",
  snat: "SNAT gateways of routers on external networks",
};

function registerNoun(nb: Command, kind: ObjectKind): void {
  const info = KINDS[kind];
  const noun = nb.command(info.noun).description(NOUN_HELP[kind]).addHelpText("after", NB_EXIT_HELP);
  const keyArg = info.keyField === "name" ? "<name>" : "[id]";
  const show = (o: NbOpts, v: Parameters<typeof formatShow>[1]): string =>
    o.json ? json(v) : formatShow(kind, v);

  addFieldFlags(
    common(
      noun
        .command("create")
        .description(`create a ${info.noun}${info.keyField === "id" ? " (id generated when absent)" : ""}`)
        .argument(keyArg, `${info.noun} ${info.keyField}`),
    ),
    kind,
  )
    .option("--set <json>", "more fields as a JSON object (flags win)")
    .option(...WAIT_OPTION)
    .action((key: string | undefined, o: NbOpts) =>
      withApi(o, async (api) => {
        const input: Obj = { ...parseSet(o.set) };
        if (key !== undefined) input[info.keyField] = key;
        Object.assign(input, await fieldsFromFlags(kind, key ?? "", o, api, true));
        return show(o, await api.create(kind, input));
      }),
    );

  common(
    noun
      .command("list")
      .description(`list ${info.noun} objects`)
      .option("--tenant <id>", "only this tenant")
      .option("--network <id>", "only this network (subnets, ports)"),
  ).action((o: NbOpts) =>
    withApi(o, async (api) => {
      const filter = {
        ...(o.tenant ? { tenantId: o.tenant } : {}),
        ...(o.network ? { networkId: o.network } : {}),
      };
      const { objects, malformed } = await api.scan(kind, filter);
      warnMalformed(malformed);
      if (!o.json) return formatList(kind, objects);
      return json([...objects, ...malformed].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)));
    }),
  );

  common(noun.command("show").description(`show one ${info.noun}`).argument(`<${info.keyField}>`)).action(
    (key: string, o: NbOpts) => withApi(o, async (api) => show(o, await api.get(kind, key))),
  );

  addFieldFlags(
    common(
      noun
        .command("update")
        .description(`change fields of a ${info.noun} (list flags replace the whole list)`)
        .argument(`<${info.keyField}>`),
    ),
    kind,
  )
    .option("--set <json>", "more fields as a JSON object (flags win)")
    .option("--version <n>", "compare-and-swap: only if the stored version is n")
    .option(...WAIT_OPTION)
    .action((key: string, o: NbOpts) =>
      withApi(o, async (api) => {
        await api.get(kind, key);
        const patch = { ...parseSet(o.set), ...(await fieldsFromFlags(kind, key, o, api, false)) };
        return show(o, await api.update(kind, key, patch, parseVersion(o.version)));
      }),
    );

  common(
    noun
      .command("delete")
      .description(`delete a ${info.noun}`)
      .argument(`<${info.keyField}>`)
      .option("--version <n>", "compare-and-swap: only if the stored version is n")
      .option(...WAIT_OPTION),
  ).action((key: string, o: NbOpts) =>
    withApi(o, async (api) => {
      await api.delete(kind, key, parseVersion(o.version));
      return o.json ? json({ deleted: { kind, key } }) : `deleted ${info.noun} ${key}\n`;
    }),
  );

  if (kind === "lrouter") registerRouterOps(noun, show);
  if (kind === "secgroup") registerRuleOps(noun, show);
}

type Show = (o: NbOpts, v: Parameters<typeof formatShow>[1]) => string;

/** A router by id or name, and a subnet by id or by a name unique in the router's tenant. */
async function resolveRouterSubnet(
  api: NbApi,
  router: string,
  subnet: string,
): Promise<{ r: string; s: string }> {
  const r = await api.resolve("lrouter", router);
  const tenantId = (await api.get("lrouter", r)).value.tenantId;
  return { r, s: await resolveOrKeep(api, "subnet", subnet, tenantId) };
}

function registerRouterOps(noun: Command, show: Show): void {
  common(
    noun
      .command("add-interface")
      .description("attach a subnet: creates the router's port on it (the subnet gateway by default)")
      .argument("<router>", "router id or name")
      .argument("<subnet>", "subnet id or name")
      .option("--ip <address>", "interface address (default: the subnet's gateway)")
      .option("--version <n>", "compare-and-swap on the router")
      .option(...WAIT_OPTION),
  ).action((router: string, subnet: string, o: NbOpts) =>
    withApi(o, async (api) => {
      const { r, s } = await resolveRouterSubnet(api, router, subnet);
      const ip = typeof o.ip === "string" ? { ipAddress: o.ip } : {};
      const res = await api.routerAddInterface(r, { subnetId: s, ...ip }, parseVersion(o.version));
      return o.json ? json(res) : show(o, res.router);
    }),
  );
  common(
    noun
      .command("remove-interface")
      .description("detach a subnet: deletes the router's port on it")
      .argument("<router>", "router id or name")
      .argument("<subnet>", "subnet id or name")
      .option("--version <n>", "compare-and-swap on the router")
      .option(...WAIT_OPTION),
  ).action((router: string, subnet: string, o: NbOpts) =>
    withApi(o, async (api) => {
      const { r, s } = await resolveRouterSubnet(api, router, subnet);
      return show(o, await api.routerRemoveInterface(r, { subnetId: s }, parseVersion(o.version)));
    }),
  );
}

function registerRuleOps(noun: Command, show: Show): void {
  common(
    noun
      .command("rule-add")
      .description("add a rule to a security group")
      .argument("<secgroup>", "security group id or name")
      .requiredOption("--direction <dir>", "ingress|egress")
      .option("--ethertype <type>", "IPv4|IPv6 (default IPv4)")
      .option("--protocol <proto>", "tcp|udp|icmp|icmpv6|sctp or an IANA number (default: any)")
      .option("--port <n>", "one port (tcp/udp/sctp)")
      .option("--port-range <min:max>", "a port range, or ICMP type:code")
      .option("--remote-ip <cidr>", "remote address prefix")
      .option("--remote-group <sg>", "remote security group (id or name)")
      .option("--id <id>", "rule id (generated when absent)")
      .option("--version <n>", "compare-and-swap on the group")
      .option(...WAIT_OPTION),
  ).action((sg: string, o: NbOpts) =>
    withApi(o, async (api) => {
      const g = await api.resolve("secgroup", sg);
      const tenantId = (await api.get("secgroup", g)).value.tenantId;
      const rule = await ruleFromFlags(api, g, tenantId, o);
      const res = await api.secgroupRuleAdd(g, rule, parseVersion(o.version));
      return o.json ? json(res) : `rule ${res.rule.id}\n${show(o, res.group)}`;
    }),
  );
  common(
    noun
      .command("rule-delete")
      .description("delete a rule from a security group")
      .argument("<secgroup>", "security group id or name")
      .argument("<rule>", "rule id")
      .option("--version <n>", "compare-and-swap on the group")
      .option(...WAIT_OPTION),
  ).action((sg: string, ruleId: string, o: NbOpts) =>
    withApi(o, async (api) => {
      const g = await api.resolve("secgroup", sg);
      const group = await api.get("secgroup", g);
      if (!group.value.rules.some((r) => r.id === ruleId))
        throw new NotFoundError("secgroup rule", `${g}/${ruleId}`);
      return show(o, await api.secgroupRuleDelete(g, ruleId, parseVersion(o.version)));
    }),
  );
}

async function resolveOrKeep(api: NbApi, kind: ObjectKind, v: string, tenantId: string): Promise<string> {
  try {
    return await api.resolve(kind, v, tenantId);
  } catch (err) {
    if (err instanceof NotFoundError) return v;
    throw err;
  }
}

async function ruleFromFlags(api: NbApi, sg: string, tenantId: string, o: NbOpts): Promise<Obj> {
  const bad = (field: string, reason: string): never => {
    throw new ValidationError("secgroup", sg, `rules.${field}`, reason);
  };
  const rule: Obj = { direction: o.direction };
  if (typeof o.id === "string") rule.id = o.id;
  if (typeof o.ethertype === "string") rule.ethertype = o.ethertype;
  if (typeof o.protocol === "string")
    rule.protocol = /^\d+$/.test(o.protocol) ? Number(o.protocol) : o.protocol;
  if (typeof o.port === "string" && typeof o.portRange === "string")
    bad("portRangeMin", "give --port or --port-range, not both");
  if (typeof o.port === "string") {
    if (!/^\d+$/.test(o.port)) bad("portRangeMin", `"${o.port}" is not a port number`);
    rule.portRangeMin = rule.portRangeMax = Number(o.port);
  }
  if (typeof o.portRange === "string") {
    const m = /^(\d+)[:-](\d+)$/.exec(o.portRange);
    if (!m) bad("portRangeMin", `"${o.portRange}" is not MIN:MAX`);
    rule.portRangeMin = Number(m![1]);
    rule.portRangeMax = Number(m![2]);
  }
  if (typeof o.remoteIp === "string") rule.remoteIpPrefix = o.remoteIp;
  if (typeof o.remoteGroup === "string")
    rule.remoteGroupId = await resolveOrKeep(api, "secgroup", o.remoteGroup, tenantId);
  return rule;
}

export function register(program: Command): void {
  const nb = program
    .command("nb")
    .description("write and read the northbound model")
    .addHelpText("after", NB_EXIT_HELP);
  for (const kind of OBJECT_KINDS) registerNoun(nb, kind);
  registerApply(nb);
}
