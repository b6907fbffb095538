/**
 * The agent's guard against malformed NB objects. The NB API validates every
 * write, but the store is shared: another writer, an older flowdrake or a
 * hand edit in etcd can put anything there. The agent re-checks each object
 * it uses against the model schema, plus the fields the API always fills in
 * (a port's MAC and addresses, a subnet's IP version, the address and MAC of
 * a floating IP or SNAT gateway), and leaves out — with
 * one log line naming the object, field and reason — what does not pass, so
 * one bad object costs its own flows and nothing else.
 *
 * An object whose stored bytes are not even JSON (`StoredObject.malformed`)
 * is refused the same way, with the store's reason.
 *
 * Results are remembered per stored object (the cache replaces objects on
 * change), so only what changed is checked again; fixing the object in the
 * store brings it back.
 */
import { KINDS, parseObject, type ObjectKind } from "../nb/model/index.js";
import { errorMessage } from "../util/errors.js";
import { logger } from "../util/log.js";

const log = logger("model-guard");

type Obj = Record<string, unknown>;

const KIND_BY_STORE = new Map<string, ObjectKind>(
  (Object.keys(KINDS) as ObjectKind[]).map((k) => [KINDS[k].kind, k]),
);

function filled(kind: ObjectKind, v: Obj): string | undefined {
  if (kind === "lport") {
    if (typeof v.macAddress !== "string") return "macAddress: is missing";
    if (!Array.isArray(v.fixedIps)) return "fixedIps: is missing";
    for (const [i, f] of (v.fixedIps as Obj[]).entries()) {
      if (typeof f.ipAddress !== "string") return `fixedIps.${i}.ipAddress: is missing`;
    }
  }
  if (kind === "subnet" && v.ipVersion !== 4 && v.ipVersion !== 6) return "ipVersion: is missing";
  if (kind === "fip" || kind === "snat") {
    const ip = kind === "fip" ? "floatingIpAddress" : "externalIpAddress";
    if (typeof v[ip] !== "string") return `${ip}: is missing`;
    if (typeof v.macAddress !== "string") return "macAddress: is missing";
  }
  if (kind === "snat" && Array.isArray(v.chassisAddresses)) {
    for (const [i, a] of (v.chassisAddresses as Obj[]).entries()) {
      if (typeof a.macAddress !== "string") return `chassisAddresses.${i}.macAddress: is missing`;
    }
  }
  return undefined;
}

export class ModelGuard {
  private seen = new WeakMap<object, { value: unknown } | undefined>();
  /** Objects refused so far (kind/key → reason), for tests and status. */
  readonly refused = new Map<string, string>();

  /** The object is gone from the store: it is no longer refused. */
  forget(storeKind: string, key: string): void {
    this.refused.delete(`${storeKind}/${key}`);
  }

  /**
   * The object as the model defines it (defaults filled in) when it is
   * well-formed, else undefined (logged once per distinct problem).
   */
  admit(storeKind: string, key: string, stored: { value: unknown; malformed?: string }): unknown {
    const kind = KIND_BY_STORE.get(storeKind);
    if (!kind) return stored.value;
    if (this.seen.has(stored)) return this.seen.get(stored)?.value;
    let reason: string | undefined;
    let parsed: unknown;
    if (stored.malformed !== undefined) reason = `stored value is malformed: ${stored.malformed}`;
    else {
      try {
        parsed = parseObject(kind, stored.value, key);
        reason = filled(kind, parsed as Obj);
      } catch (err) {
        reason = errorMessage(err);
      }
    }
    const result = reason === undefined ? { value: parsed } : undefined;
    this.seen.set(stored, result);
    const id = `${storeKind}/${key}`;
    if (result) this.refused.delete(id);
    else if (this.refused.get(id) !== reason) {
      this.refused.set(id, reason!);
      log.error({ kind: storeKind, key, reason }, "malformed NB object left out of the agent's view");
    }
    return result?.value;
  }
}
