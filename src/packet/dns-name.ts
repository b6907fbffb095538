/**
 * Domain names in DNS wire form (RFC 1035 §3.1): a sequence of labels, each
 * a length byte (1–63) and that many bytes, closed by the zero-length root
 * label. Two IPv6 configuration options carry lists of them back to back:
 * the DHCPv6 Domain Search List (RFC 3646 §4, option 24) and the NDP DNS
 * Search List option (RFC 8106 §5.2, DNSSL). Both forbid name compression
 * (RFC 8415 §10), so a length byte with either of its top two bits set (a
 * compression pointer or a reserved label type) is a DecodeError here, as is
 * a name running past its option or longer than 255 bytes.
 *
 * Text form: labels joined by "." with no trailing dot ("example.com"); the
 * root name alone is "". Both directions take the labels of host names and
 * service names only — letters, digits, "-" and "_" — so every name decoded
 * encodes back to the same bytes and every name encoded decodes to the same
 * text: a label with any other byte is a DecodeError on the wire and an
 * EncodeError as text (the encoder also accepts a trailing dot).
 */
import { ByteWriter, type ByteReader } from "../util/bytes.js";
import { DecodeError, EncodeError } from "../util/errors.js";

export const DNS_MAX_NAME = 255;
export const DNS_MAX_LABEL = 63;
const LABEL_RE = /^[A-Za-z0-9_-]{1,63}$/;

/** Wire form of one name, root label included. */
export function encodeDnsName(name: string): Buffer {
  const text = name.endsWith(".") ? name.slice(0, -1) : name;
  const labels = text === "" ? [] : text.split(".");
  const w = new ByteWriter(text.length + 2);
  for (const l of labels) {
    if (!LABEL_RE.test(l)) {
      throw new EncodeError(`dns name "${name}": label "${l}" is not 1–63 letters, digits, "-" or "_"`, {
        name,
      });
    }
    w.u8(l.length).bytes(Buffer.from(l, "latin1"));
  }
  w.u8(0);
  if (w.length > DNS_MAX_NAME) {
    throw new EncodeError(`dns name "${name}" is ${w.length} bytes on the wire, over ${DNS_MAX_NAME}`, {
      name,
    });
  }
  return w.finish();
}

/** Wire form of a list of names, back to back. */
export function encodeDnsNames(names: readonly string[]): Buffer {
  return Buffer.concat(names.map(encodeDnsName));
}

/** One name from `r`; `layer` names the option for error messages. */
export function decodeDnsName(r: ByteReader, layer: string): string {
  const labels: string[] = [];
  let size = 0;
  for (;;) {
    const len = r.u8("dns label length");
    size += 1 + len;
    if (size > DNS_MAX_NAME) {
      throw new DecodeError(`${layer}: domain name longer than ${DNS_MAX_NAME} bytes`, {
        layer,
        field: "domain name",
      });
    }
    if (len === 0) return labels.join(".");
    if (len > DNS_MAX_LABEL) {
      throw new DecodeError(`${layer}: label length byte 0x${len.toString(16)} (compressed or reserved)`, {
        layer,
        field: "dns label length",
      });
    }
    const label = r.bytes(len, "dns label").toString("latin1");
    if (!LABEL_RE.test(label)) {
      throw new DecodeError(`${layer}: label is not letters, digits, "-" or "_"`, {
        layer,
        field: "dns label",
      });
    }
    labels.push(label);
  }
}

/** Names back to back until the end of `r`. */
export function decodeDnsNames(r: ByteReader, layer: string): string[] {
  const out: string[] = [];
  while (!r.atEnd()) out.push(decodeDnsName(r, layer));
  return out;
}
