/**
 * The Internet checksum (RFC 1071): the 16-bit one's complement of the one's
 * complement sum of 16-bit big-endian words, an odd trailing byte padded with
 * zero. IPv4 headers, ICMP, UDP and TCP use it; UDP, TCP and ICMPv6 add a
 * pseudo-header (RFC 768 / RFC 793 for IPv4, RFC 8200 §8.1 for IPv6) so that
 * a segment delivered to the wrong address fails its check.
 *
 * `sum*` functions return the running 32-bit sum; `finish` folds and
 * complements it. A received block verifies when its sum, checksum field
 * included, folds to 0xffff.
 */

export function sumBytes(b: Uint8Array, start = 0, end = b.length, acc = 0): number {
  let s = acc;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  // Keep the accumulator well inside 2^53 whatever the length.
  return (s & 0xffff) + Math.floor(s / 0x10000);
}

export function fold(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

export function internetChecksum(b: Uint8Array, start = 0, end = b.length): number {
  return finish(sumBytes(b, start, end));
}

/** IPv4 pseudo-header: src, dst, zero, protocol, upper-layer length. */
export function pseudoSumV4(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  return sumBytes(src) + sumBytes(dst) + protocol + length;
}

/** IPv6 pseudo-header: src, dst, 32-bit upper-layer length, 24 zero bits, next header. */
export function pseudoSumV6(src: Uint8Array, dst: Uint8Array, nextHeader: number, length: number): number {
  return sumBytes(src) + sumBytes(dst) + Math.floor(length / 0x10000) + (length & 0xffff) + nextHeader;
}
