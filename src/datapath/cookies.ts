/**
 * The app registry and flow cookies: who installed a flow, and for what.
 *
 * Every app has one entry in APP_IDS — its name (what the config's `apps:`
 * list says) and its cookie id. The factories in src/apps/index.ts are
 * keyed by `AppName`, so an app without an id, or an id without an app, is
 * a compile error: the two lists cannot drift apart.
 *
 * A cookie is a structured 64-bit value (Antrea's cookie allocator):
 *
 *   bits 63..56  0xfd, flowdrake's mark (a flow with another mark is not ours)
 *   bits 55..48  app id (APP_IDS)
 *   bits 47..44  category: 0 proactive (computed from the model),
 *                1 reactive (installed by a packet-in handler, with timeouts)
 *   bits 43..32  reserved (0)
 *   bits 31..0   FNV-1a hash of the owner key (the object the flow belongs to)
 *
 * Cookies are deterministic, so a restarted agent computes the same cookie
 * for the same owner and finds nothing to change. A packet_in carries the
 * cookie of the flow that sent it, which is how the agent dispatches it to
 * the app that asked for it. A flow_removed carries it too, which is how a
 * reactive flow's expiry reaches its owner. Flows whose mark is not 0xfd
 * are never touched by the agent.
 */
import { fnv1a32 } from "./fields.js";

export const APP_IDS = {
  pipeline: 1,
  classifier: 2,
  portsec: 3,
  dhcp: 4,
  arp: 5,
  l2: 6,
  tunnel: 7,
  l3: 8,
  secgroup: 9,
  nat: 10,
  provider: 11,
} as const;

/** Every app name, the pipeline's own miss flows included. */
export type CookieAppName = keyof typeof APP_IDS;

export const FLOWDRAKE_MARK = 0xfdn;
export const MARK_MASK = 0xff00_0000_0000_0000n;
export const APP_MASK = 0xffff_0000_0000_0000n;
export const CATEGORY_MASK = 0x0000_f000_0000_0000n;

export type CookieCategory = "proactive" | "reactive";
const CATEGORY_BITS: Record<CookieCategory, bigint> = { proactive: 0n, reactive: 1n };

const NAME_BY_ID = new Map<number, CookieAppName>(
  (Object.entries(APP_IDS) as [CookieAppName, number][]).map(([n, id]) => [id, n]),
);
if (NAME_BY_ID.size !== Object.keys(APP_IDS).length) throw new Error("cookies: two apps share an id");

export function appCookieBase(app: CookieAppName): bigint {
  return (FLOWDRAKE_MARK << 56n) | (BigInt(APP_IDS[app]) << 48n);
}

/** The cookie of a flow of `app` for the owner `ownerKey`. */
export function cookieFor(
  app: CookieAppName,
  ownerKey: string,
  category: CookieCategory = "proactive",
): bigint {
  return appCookieBase(app) | (CATEGORY_BITS[category] << 44n) | BigInt(fnv1a32(ownerKey));
}

export function isOurs(cookie: bigint): boolean {
  return cookie >> 56n === FLOWDRAKE_MARK;
}

/** The app that owns a cookie, or undefined when the flow is not flowdrake's. */
export function appOfCookie(cookie: bigint): CookieAppName | undefined {
  if (!isOurs(cookie)) return undefined;
  return NAME_BY_ID.get(Number((cookie >> 48n) & 0xffn));
}

export function categoryOfCookie(cookie: bigint): CookieCategory {
  return (cookie & CATEGORY_MASK) >> 44n === 1n ? "reactive" : "proactive";
}
