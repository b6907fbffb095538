/**
 * What a flow_removed message ends: the switch expired a reactive flow (idle
 * or hard timeout), so the reactive owners that wanted exactly that flow —
 * same table, priority and match, found through the reconciler's index of
 * desired flows by key, and the same cookie — are dropped from the engine,
 * and the reconciler forgets the flow as installed without sending a delete.
 *
 * Looked up by key, the cost does not grow with the number of reactive
 * owners (at a thousand new routes a second with a 300 s idle timeout the
 * agent holds 300,000 of them, and as many expire each second as arrive);
 * and an owner whose cookie merely collides with the expired flow's (a
 * 32-bit hash of the owner key) keeps its flow. A removal the agent's own
 * delete explains (the reconciler's claim, see reconciler.ts) changes
 * nothing: the owners were changed when the delete was decided, and the key
 * may hold the same owner's flow again by now.
 */
import { appOfCookie, categoryOfCookie } from "../datapath/index.js";
import type { Flow } from "../openflow/flow.js";
import type { OfMessage } from "../openflow/message.js";
import type { Engine, OwnerChange } from "./engine.js";
import type { OpenFlowReconciler } from "./reconciler.js";

export type FlowRemoved = Extract<OfMessage, { type: "flow_removed" }>;

/** Forget the removed flow and drop its reactive owners; the changes to hand the reconciler. */
export function forgetRemovedFlow(
  m: FlowRemoved,
  engine: Engine,
  reconciler: OpenFlowReconciler,
): OwnerChange[] {
  const app = appOfCookie(m.cookie);
  if (!app || categoryOfCookie(m.cookie) !== "reactive") return [];
  // what identifies the flow (table, priority, match) and whose it was (cookie)
  const f: Flow = {
    table: m.tableId,
    priority: m.priority,
    cookie: m.cookie,
    match: m.match,
    instructions: [],
  };
  const key = reconciler.forgetInstalled(f);
  if (key === undefined) return []; // the agent's own delete: its owners were changed when it was sent
  const prefix = `${app}/reactive/`;
  const changes: OwnerChange[] = [];
  for (const d of reconciler.flows.all(key)) {
    if (!d.owner.startsWith(prefix) || d.flow.cookie !== m.cookie) continue;
    const ch = engine.dropReactive(d.owner);
    if (ch) changes.push(ch);
  }
  return changes;
}
