/**
 * Request/answer discipline on top of the socket and the framing: sequence
 * numbers, acks, multipart dumps and batches. Family code (tc, genetlink)
 * builds payloads; this module sends them and matches answers by nlmsg_seq.
 *
 * - `request`: one message with NLM_F_ACK; resolves with any echoed/answer
 *   messages once the ack arrives, rejects with a NetlinkError otherwise.
 * - `dump`: NLM_F_DUMP; collects NLM_F_MULTI parts until NLMSG_DONE.
 * - `batch`: many messages packed into as few sendto(2) calls as possible.
 *   Ack mode "each" asks an ack of every message; "last" asks it only of the
 *   last message of each chunk (the kernel always answers failures, so every
 *   error is still reported, with its index in the batch). Chunks bound the
 *   number of answers queued at once, so the receive buffer cannot overflow.
 *
 * Operations are serialised: one in flight per client, as a netlink socket is
 * one ordered stream and interleaving answers buys nothing here.
 */
import { ByteWriter } from "../../util/bytes.js";
import { ConnectionError } from "../../util/errors.js";
import { NetlinkError } from "./errors.js";
import {
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_MULTI,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  decodeNlmsgerr,
  decodeNlmsgs,
  type NlMsg,
  writeNlmsg,
} from "./framing.js";
import { NetlinkSocket, type NetlinkSocketOptions } from "./socket.js";

export interface OutMessage {
  type: number;
  /** Flags besides NLM_F_REQUEST/NLM_F_ACK, which the client sets. */
  flags: number;
  body: (w: ByteWriter) => void;
  /** For error messages: "RTM_NEWTFILTER" … */
  typeName?: string;
}

export interface BatchResult {
  sent: number;
  failed: { index: number; error: NetlinkError }[];
}

export interface BatchOptions {
  /** Messages per sendto(2). */
  batchSize?: number;
  ack?: "each" | "last";
}

export class NetlinkClient {
  private seq: number;
  private chain: Promise<unknown> = Promise.resolve();
  timeoutMs = 10_000;

  constructor(readonly sock: NetlinkSocket) {
    this.seq = (Date.now() & 0x3fffffff) >>> 0;
  }

  static open(protocol: number, opts: NetlinkSocketOptions = {}): NetlinkClient {
    return new NetlinkClient(NetlinkSocket.open(protocol, opts));
  }

  close(): void {
    this.sock.close();
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    if (this.seq === 0) this.seq = 1;
    return this.seq;
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.chain.then(op, op);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** One request with an ack; resolves with the answers that came before the ack. */
  request(msg: OutMessage): Promise<NlMsg[]> {
    return this.serial(async () => {
      const seq = this.nextSeq();
      const w = new ByteWriter(512);
      writeNlmsg(w, { type: msg.type, flags: msg.flags | NLM_F_REQUEST | NLM_F_ACK, seq }, msg.body);
      const bytes = w.finish();
      this.sock.send(bytes);
      const answers: NlMsg[] = [];
      await this.receive((m) => {
        if (m.seq !== seq) return false;
        if (m.type === NLMSG_ERROR) {
          const e = decodeNlmsgerr(m);
          if (e.errno !== 0) throw this.error(e, msg, seq, bytes);
          return true;
        }
        answers.push(m);
        return false;
      });
      return answers;
    });
  }

  /** A dump: every NLM_F_MULTI part until NLMSG_DONE. */
  dump(msg: OutMessage): Promise<NlMsg[]> {
    return this.serial(async () => {
      const seq = this.nextSeq();
      const w = new ByteWriter(256);
      writeNlmsg(w, { type: msg.type, flags: msg.flags | NLM_F_REQUEST | NLM_F_DUMP, seq }, msg.body);
      const bytes = w.finish();
      this.sock.send(bytes);
      const parts: NlMsg[] = [];
      await this.receive((m) => {
        if (m.seq !== seq) return false;
        if (m.type === NLMSG_DONE) return true;
        if (m.type === NLMSG_ERROR) {
          const e = decodeNlmsgerr(m);
          if (e.errno !== 0) throw this.error(e, msg, seq, bytes);
          return true;
        }
        parts.push(m);
        return !(m.flags & NLM_F_MULTI);
      });
      return parts;
    });
  }

  /** Send many messages; report which ones failed. */
  batch(messages: OutMessage[], opts: BatchOptions = {}): Promise<BatchResult> {
    return this.serial(async () => {
      const size = Math.max(1, opts.batchSize ?? 256);
      const ackEach = opts.ack === "each";
      const failed: BatchResult["failed"] = [];
      for (let start = 0; start < messages.length; start += size) {
        const end = Math.min(messages.length, start + size);
        const w = new ByteWriter(end - start > 1 ? 64 * 1024 : 512);
        const seqs: number[] = [];
        const offsets: number[] = [];
        for (let i = start; i < end; i++) {
          const m = messages[i]!;
          const seq = this.nextSeq();
          const ack = ackEach || i === end - 1 ? NLM_F_ACK : 0;
          seqs.push(seq);
          offsets.push(writeNlmsg(w, { type: m.type, flags: m.flags | NLM_F_REQUEST | ack, seq }, m.body));
        }
        const buf = w.finish();
        this.sock.send(buf);
        const first = seqs[0]!;
        const last = seqs[seqs.length - 1]!;
        let pending = ackEach ? seqs.length : 1;
        await this.receive((m) => {
          if (m.type !== NLMSG_ERROR) return false;
          const e = decodeNlmsgerr(m);
          const k = (e.request.seq - first) >>> 0;
          if (k >= seqs.length) return false;
          const index = start + k;
          if (e.errno !== 0) {
            const at = offsets[k]!;
            const next = k + 1 < offsets.length ? offsets[k + 1]! : buf.length;
            const err = this.error(e, messages[index]!, e.request.seq, buf.subarray(at, next), index);
            failed.push({ index, error: err });
          }
          if (ackEach) pending--;
          else if (e.request.seq === last) pending = 0;
          return pending === 0;
        });
      }
      return { sent: messages.length, failed };
    });
  }

  private error(
    e: ReturnType<typeof decodeNlmsgerr>,
    msg: OutMessage,
    seq: number,
    bytes: Buffer,
    index?: number,
  ): NetlinkError {
    const req = {
      type: msg.type,
      flags: msg.flags,
      seq,
      bytes,
      ...(msg.typeName ? { typeName: msg.typeName } : {}),
    };
    return new NetlinkError(e.errno, e.extack, index === undefined ? req : { ...req, index });
  }

  /** Feed answers to `handle` until it returns true. */
  private async receive(handle: (m: NlMsg) => boolean): Promise<void> {
    for (;;) {
      const dgram = await this.sock.recv(this.timeoutMs);
      if (!dgram) {
        throw new ConnectionError(`netlink: no answer from the kernel within ${this.timeoutMs} ms`, {
          portId: this.sock.portId,
        });
      }
      for (const m of decodeNlmsgs(dgram)) {
        if (m.type === NLMSG_NOOP) continue;
        if (m.type === NLMSG_OVERRUN) throw new ConnectionError("netlink: NLMSG_OVERRUN, answers were lost");
        if (handle(m)) return;
      }
    }
  }
}
