/**
 * Netlink errors a person can read. The kernel answers a failed request with
 * NLMSG_ERROR carrying a negative errno and, when NETLINK_EXT_ACK is on, an
 * extended-ack message ("TC classifier not found") and the offset of the
 * attribute it disliked. NetlinkError keeps all of that plus which request
 * failed (type, sequence number, index inside a batch), so a log line or a CLI
 * error says what went wrong without a packet capture.
 */
import koffi from "koffi";
import { ConnectionError, FlowdrakeError } from "../../util/errors.js";

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(koffi.os.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}
// EOPNOTSUPP and ENOTSUP share a value on Linux; the kernel means the former.
errnoNames.set(95, "EOPNOTSUPP");

const errnoText: Record<string, string> = {
  EPERM: "operation not permitted",
  ENOENT: "no such object",
  EEXIST: "object already exists",
  EINVAL: "invalid argument",
  EOPNOTSUPP: "operation not supported",
  ENODEV: "no such device",
  EBUSY: "device or resource busy",
  ENOBUFS: "no buffer space (socket receive queue overflowed)",
  ENOMEM: "out of memory",
  E2BIG: "argument list too long",
  ERANGE: "value out of range",
  EAGAIN: "try again",
};

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

export function errnoNumber(name: string): number | undefined {
  return (koffi.os.errno as Record<string, number>)[name];
}

export interface FailedRequest {
  type: number;
  typeName?: string;
  flags: number;
  seq: number;
  /** Position inside a batch, when the request was part of one. */
  index?: number;
  /** The request bytes as sent. */
  bytes?: Buffer;
}

export interface ExtAck {
  msg?: string;
  /** Byte offset of the offending attribute inside the request. */
  offset?: number;
  missingType?: number;
}

export class NetlinkError extends FlowdrakeError {
  readonly errno: number;
  readonly errnoName: string;
  readonly extack: ExtAck;
  readonly request: FailedRequest;

  constructor(errno: number, extack: ExtAck, request: FailedRequest) {
    const name = errnoName(errno);
    const what = request.typeName ?? `netlink message type ${request.type}`;
    const where = request.index === undefined ? "" : ` (message ${request.index} of the batch)`;
    const text = errnoText[name] ? `${name}, ${errnoText[name]}` : name;
    const detail = extack.msg ? `: ${extack.msg}` : "";
    super("NETLINK", `${what}${where} failed: ${text}${detail}`, {
      errno,
      errnoName: name,
      extack,
      request: { type: request.type, flags: request.flags, seq: request.seq, index: request.index },
    });
    this.errno = errno;
    this.errnoName = name;
    this.extack = extack;
    this.request = request;
  }
}

/** A libc call on the netlink socket failed (socket, bind, setns, sendto, recv …). */
export class NetlinkSocketError extends ConnectionError {
  readonly errno: number;
  readonly errnoName: string;
  constructor(call: string, errno: number, context: Record<string, unknown> = {}) {
    const name = errnoName(errno);
    super(`netlink ${call} failed: ${name}${errnoText[name] ? `, ${errnoText[name]}` : ""}`, {
      call,
      errno,
      errnoName: name,
      ...context,
    });
    this.errno = errno;
    this.errnoName = name;
  }
}
