/**
 * Flow cookies: who installed a flow and for which NB object.
 *
 *   bits 63..56  0xfd, flowdrake's mark (flows with another mark are not ours)
 *   bits 55..48  app id (APP_IDS)
 *   bits 47..32  reserved (0)
 *   bits 31..0   FNV-1a hash of the object key the flow was derived from
 *
 * Cookies are deterministic, so a restarted agent computes the same cookies
 * for the same model and its reconcile pass finds nothing to change. A
 * packet_in carries the cookie of the flow that sent it, which is how the
 * agent dispatches it to the app that asked for it; `deleteByCookie` with the
 * app mask removes one app's flows.
 */
export const FLOWDRAKE_MARK = 0xfdn;

export const APP_IDS: Record<string, number> = {
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
};

export const APP_MASK = 0xffff_0000_0000_0000n;

export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export function appCookieBase(app: string): bigint {
  const id = APP_IDS[app];
  if (id === undefined) throw new Error(`unknown app "${app}" (add it to APP_IDS)`);
  return (FLOWDRAKE_MARK << 56n) | (BigInt(id) << 48n);
}

export function cookieFor(app: string, objectKey: string): bigint {
  return appCookieBase(app) | BigInt(fnv1a32(objectKey));
}

/** The app that owns a cookie, or undefined when the flow is not flowdrake's. */
export function appOfCookie(cookie: bigint): string | undefined {
  if (cookie >> 56n !== FLOWDRAKE_MARK) return undefined;
  const id = Number((cookie >> 48n) & 0xffn);
  return Object.entries(APP_IDS).find(([, v]) => v === id)?.[0];
}
