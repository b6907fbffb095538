/**
 * The NB change message carried on the ZeroMQ channel, and the topic scheme.
 *
 * Every message is a two-frame ZeroMQ message: [topic, JSON body]. Topics are
 * prefixes a subscriber can ask for (ZeroMQ matches on prefix, so every topic
 * ends in "/" to keep `n/net1/` from matching `n/net10/`):
 *
 *   t/<tenant>/      objects of a tenant (routers, security groups, …)
 *   n/<network>/     a network and everything on it (subnets, ports, router interfaces)
 *   r/<router>/      a router and its interfaces (so an agent hears of a network
 *                    newly attached behind a router it already follows)
 *   g/<group>/       ports in a security group, besides their network's topic (an
 *                    agent whose rules name the group as remote group follows its
 *                    members wherever they are)
 *   c/               chassis (every agent needs the chassis of its peers)
 *   all/             objects without a tenant or network, and deletes of unknown objects
 *   hb/              publisher heartbeats (publisher id, last revision)
 *
 * The body names the publisher (a random id per start) and a sequence number
 * per (publisher, topic): a subscriber that sees a sequence skip on a topic, or
 * a new publisher id, knows it missed something and resyncs from the store.
 * Heartbeats carry the last sequence number of every topic, so a subscriber
 * also notices a lost message when nothing follows it on that topic, and a
 * fresh subscription gets its baseline without waiting for traffic.
 */
import { DecodeError } from "../../util/errors.js";

export const TOPIC_ALL = "all/";
export const TOPIC_HEARTBEAT = "hb/";
export const TOPIC_CHASSIS = "c/";

export const tenantTopic = (tenant: string): string => `t/${tenant}/`;
export const networkTopic = (network: string): string => `n/${network}/`;
export const routerTopic = (router: string): string => `r/${router}/`;
export const groupTopic = (group: string): string => `g/${group}/`;

export interface ChangeMessage {
  type: "put" | "delete";
  /** Publisher id, random per publisher start. */
  pub: string;
  /** Sequence number on this topic for this publisher, from 1. */
  seq: number;
  topic: string;
  kind: string;
  key: string;
  /** Object version after the change (the previous version for a delete). */
  version: number;
  /** Store revision of the change. */
  revision: number;
  /** The object's value (puts only). */
  value?: unknown;
  /** Set when the stored value is not a JSON document (StoredObject.malformed); `value` is then absent. */
  malformed?: string;
}

export interface HeartbeatMessage {
  type: "heartbeat";
  pub: string;
  seq: number;
  topic: string;
  /** Highest store revision the publisher has forwarded. */
  revision: number;
  /** The last sequence number sent on every topic so far. */
  seqs: Record<string, number>;
}

export type PubsubMessage = ChangeMessage | HeartbeatMessage;

function field(o: Record<string, unknown>, name: string, type: "string" | "number"): void {
  if (typeof o[name] !== type)
    throw new DecodeError(`pubsub message: field ${name} is not a ${type}`, { field: name });
}

/** Decode a message body; anything malformed is a DecodeError, never another exception. */
export function decodeMessage(topic: Buffer | string, body: Buffer | string): PubsubMessage {
  let o: unknown;
  try {
    o = JSON.parse(body.toString());
  } catch {
    throw new DecodeError("pubsub message: body is not JSON", { topic: topic.toString() });
  }
  if (!o || typeof o !== "object" || Array.isArray(o))
    throw new DecodeError("pubsub message: body is not an object");
  const m = o as Record<string, unknown>;
  field(m, "pub", "string");
  field(m, "seq", "number");
  field(m, "revision", "number");
  if (m.topic !== topic.toString()) throw new DecodeError("pubsub message: topic frame and body disagree");
  if (m.type === "heartbeat") {
    const seqs = m.seqs;
    if (
      !seqs ||
      typeof seqs !== "object" ||
      Array.isArray(seqs) ||
      Object.values(seqs).some((v) => typeof v !== "number")
    ) {
      throw new DecodeError("pubsub heartbeat: seqs is not a map of numbers");
    }
    return m as unknown as HeartbeatMessage;
  }
  if (m.type !== "put" && m.type !== "delete")
    throw new DecodeError("pubsub message: unknown type", { type: m.type });
  field(m, "kind", "string");
  field(m, "key", "string");
  field(m, "version", "number");
  if (m.malformed !== undefined) field(m, "malformed", "string");
  return m as unknown as ChangeMessage;
}

export function encodeMessage(m: PubsubMessage): [string, string] {
  return [m.topic, JSON.stringify(m)];
}
