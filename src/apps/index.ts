/**
 * The app registry: every app flowdrake ships, by the name the config's
 * `apps:` list uses. The agent loads the enabled ones in this order.
 */
import type { App } from "./types.js";
import { arpApp } from "./arp.js";
import { classifierApp } from "./classifier.js";
import { dhcpApp, type DhcpAppOptions } from "./dhcp.js";
import { l2App } from "./l2.js";
import { portsecApp } from "./portsec.js";
import { providerApp } from "./provider.js";
import { tunnelApp } from "./tunnel.js";

export interface AppOptions {
  dhcp?: DhcpAppOptions;
}

export const APP_FACTORIES: Record<string, (o: AppOptions) => App> = {
  classifier: () => classifierApp,
  portsec: () => portsecApp,
  dhcp: (o) => dhcpApp(o.dhcp),
  arp: () => arpApp,
  l2: () => l2App,
  tunnel: () => tunnelApp,
  provider: () => providerApp,
};

export const DEFAULT_APPS = ["classifier", "portsec", "dhcp", "arp", "l2", "tunnel", "provider"];

export function loadApps(names: readonly string[], opts: AppOptions = {}): App[] {
  return names.map((n) => {
    const f = APP_FACTORIES[n];
    if (!f) throw new Error(`unknown app "${n}" (known: ${Object.keys(APP_FACTORIES).join(", ")})`);
    return f(opts);
  });
}

export type { App } from "./types.js";
