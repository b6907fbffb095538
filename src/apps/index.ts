/**
 * The app registry: every app flowdrake ships, by the name the config's
 * `apps:` list uses (src/apps/registry.ts; cookie ids in src/datapath/
 * cookies.ts). The agent loads the enabled ones in the order given.
 * `networkNeeds` says which apps a kind of network cannot work without, so
 * the agent can warn at start when the config leaves one out.
 */
import type { App } from "./types.js";
import type { AppName } from "./registry.js";
import { arpApp } from "./arp.js";
import { classifierApp } from "./classifier.js";
import { dhcpApp, type DhcpAppOptions } from "./dhcp.js";
import { l2App, type L2AppOptions } from "./l2.js";
import { l3App, type L3AppOptions } from "./l3.js";
import { natApp, type NatAppOptions } from "./nat.js";
import { portsecApp } from "./portsec.js";
import { providerApp } from "./provider.js";
import { secgroupApp } from "./secgroup.js";
import { tunnelApp } from "./tunnel.js";

export interface AppOptions {
  dhcp?: DhcpAppOptions;
  l2?: L2AppOptions;
  l3?: L3AppOptions;
  nat?: NatAppOptions;
}

export const APP_FACTORIES: { readonly [K in AppName]: (o: AppOptions) => App } = {
  classifier: () => classifierApp,
  portsec: () => portsecApp,
  secgroup: () => secgroupApp,
  dhcp: (o) => dhcpApp(o.dhcp),
  arp: (o) => arpApp(o.l2),
  l2: (o) => l2App(o.l2),
  l3: (o) => l3App({ ...o.l3, ...(o.dhcp?.domain !== undefined ? { domain: o.dhcp.domain } : {}) }),
  nat: (o) => natApp(o.nat),
  tunnel: () => tunnelApp,
  provider: () => providerApp,
};

export const DEFAULT_APPS: AppName[] = [
  "classifier",
  "portsec",
  "secgroup",
  "dhcp",
  "arp",
  "l2",
  "l3",
  "nat",
  "tunnel",
  "provider",
];

export function isAppName(n: string): n is AppName {
  return Object.hasOwn(APP_FACTORIES, n);
}

/** Apps without which a network of this type gets no working datapath. */
export function networkNeeds(networkType: string): AppName[] {
  const base: AppName[] = ["classifier", "portsec", "l2"];
  if (networkType === "geneve" || networkType === "vxlan") return [...base, "tunnel"];
  if (networkType === "vlan" || networkType === "flat") return [...base, "provider"];
  return base;
}

/** For each kind of network, the apps it needs that `enabled` leaves out (empty kinds omitted). */
export function missingApps(enabled: readonly string[]): Map<string, AppName[]> {
  const out = new Map<string, AppName[]>();
  for (const t of ["geneve", "vxlan", "vlan", "flat"]) {
    const missing = networkNeeds(t).filter((a) => !enabled.includes(a));
    if (missing.length) out.set(t, missing);
  }
  return out;
}

export function loadApps(names: readonly string[], opts: AppOptions = {}): App[] {
  return names.map((n) => {
    if (!isAppName(n)) {
      throw new Error(`unknown app "${n}" (known: ${Object.keys(APP_FACTORIES).join(", ")})`);
    }
    const app = APP_FACTORIES[n](opts);
    if (app.name !== n) throw new Error(`app factory ${n} returned app ${app.name}`);
    return app;
  });
}

export type { App } from "./types.js";
export type { AppName } from "./registry.js";
