/**
 * One byte reader and one byte writer for every wire format flowdrake speaks:
 * OpenFlow (big-endian, lengths that include their header), netlink (host
 * order, 4-byte aligned TLVs), packets (big-endian) and DHCP options.
 *
 * The writer grows as needed; a length that is only known after the body is
 * written is handled by reserving its slot (`reserve`) and patching it
 * (`setU16` …) — or, for the common case, by `nested`, which runs a callback
 * and hands it back the number of bytes it wrote.
 *
 * The reader never reads past its window: every read is bounds-checked and a
 * short buffer raises a DecodeError naming what was being read, where, and how
 * many bytes were missing. `sub(n)` returns a reader confined to the next n
 * bytes (a TLV body, a message, an option), so a lying inner length cannot
 * make a decoder wander into the next message.
 */
import { DecodeError, EncodeError } from "./errors.js";

export class ByteWriter {
  private buf: Buffer;
  private len = 0;

  constructor(initialCapacity = 256) {
    this.buf = Buffer.allocUnsafe(initialCapacity);
  }

  get length(): number {
    return this.len;
  }

  private grow(n: number): number {
    const at = this.len;
    const need = at + n;
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const next = Buffer.allocUnsafe(cap);
      this.buf.copy(next, 0, 0, at);
      this.buf = next;
    }
    this.len = need;
    return at;
  }

  u8(v: number): this {
    checkRange(v, 0xff, "u8");
    const at = this.grow(1);
    this.buf[at] = v;
    return this;
  }
  u16(v: number): this {
    checkRange(v, 0xffff, "u16");
    const at = this.grow(2);
    this.buf.writeUInt16BE(v, at);
    return this;
  }
  u32(v: number): this {
    checkRange(v, 0xffffffff, "u32");
    const at = this.grow(4);
    this.buf.writeUInt32BE(v, at);
    return this;
  }
  u64(v: bigint): this {
    const at = this.grow(8);
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), at);
    return this;
  }
  u16le(v: number): this {
    checkRange(v, 0xffff, "u16");
    const at = this.grow(2);
    this.buf.writeUInt16LE(v, at);
    return this;
  }
  u32le(v: number): this {
    checkRange(v, 0xffffffff, "u32");
    const at = this.grow(4);
    this.buf.writeUInt32LE(v, at);
    return this;
  }
  i32le(v: number): this {
    const at = this.grow(4);
    this.buf.writeInt32LE(v, at);
    return this;
  }
  u64le(v: bigint): this {
    const at = this.grow(8);
    this.buf.writeBigUInt64LE(BigInt.asUintN(64, v), at);
    return this;
  }
  bytes(b: Uint8Array): this {
    const at = this.grow(b.length);
    this.buf.set(b, at);
    return this;
  }
  zeros(n: number): this {
    const at = this.grow(n);
    this.buf.fill(0, at, at + n);
    return this;
  }
  /** Zero-pad so that (length - from) is a multiple of `align`. */
  padTo(align: number, from = 0): this {
    const rem = (this.len - from) % align;
    return rem === 0 ? this : this.zeros(align - rem);
  }
  /** Reserve n zero bytes and return their offset, to be patched later. */
  reserve(n: number): number {
    const at = this.len;
    this.zeros(n);
    return at;
  }
  setU8(at: number, v: number): this {
    this.buf[at] = v;
    return this;
  }
  setU16(at: number, v: number): this {
    checkRange(v, 0xffff, "u16 length");
    this.buf.writeUInt16BE(v, at);
    return this;
  }
  setU32(at: number, v: number): this {
    this.buf.writeUInt32BE(v, at);
    return this;
  }
  setU16le(at: number, v: number): this {
    checkRange(v, 0xffff, "u16 length");
    this.buf.writeUInt16LE(v, at);
    return this;
  }
  setU32le(at: number, v: number): this {
    this.buf.writeUInt32LE(v, at);
    return this;
  }
  /** Run `body` and return how many bytes it appended. */
  nested(body: (w: this) => void): number {
    const start = this.len;
    body(this);
    return this.len - start;
  }
  /** A copy of the bytes written so far. */
  finish(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.len));
  }
}

function checkRange(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new EncodeError(`value ${v} does not fit in ${what}`, { value: v, max });
  }
}

export class ByteReader {
  private pos: number;

  /**
   * @param what names the structure being decoded, for error messages.
   */
  constructor(
    readonly buf: Buffer,
    start = 0,
    readonly end = buf.length,
    readonly what = "message",
  ) {
    if (start < 0 || end > buf.length || start > end) {
      throw new DecodeError(`${what}: window ${start}..${end} outside a ${buf.length}-byte buffer`);
    }
    this.pos = start;
  }

  get offset(): number {
    return this.pos;
  }
  get remaining(): number {
    return this.end - this.pos;
  }
  atEnd(): boolean {
    return this.pos >= this.end;
  }

  ensure(n: number, field: string): void {
    if (n < 0 || this.pos + n > this.end) {
      throw new DecodeError(
        `${this.what}: truncated reading ${field}: need ${n} bytes, ${this.remaining} left`,
        {
          what: this.what,
          field,
          offset: this.pos,
          need: n,
          have: this.remaining,
        },
      );
    }
  }

  u8(field = "u8"): number {
    this.ensure(1, field);
    return this.buf[this.pos++]!;
  }
  u16(field = "u16"): number {
    this.ensure(2, field);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(field = "u32"): number {
    this.ensure(4, field);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(field = "u64"): bigint {
    this.ensure(8, field);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  u16le(field = "u16"): number {
    this.ensure(2, field);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u32le(field = "u32"): number {
    this.ensure(4, field);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  i32le(field = "i32"): number {
    this.ensure(4, field);
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64le(field = "u64"): bigint {
    this.ensure(8, field);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  /** The next n bytes as a view (not a copy). */
  bytes(n: number, field = "bytes"): Buffer {
    this.ensure(n, field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  rest(): Buffer {
    return this.bytes(this.remaining, "rest");
  }
  skip(n: number, field = "padding"): this {
    this.ensure(n, field);
    this.pos += n;
    return this;
  }
  /** Skip forward so that (offset - from) is a multiple of align, or to the end if less remains. */
  alignTo(align: number, from = 0): this {
    const rem = (this.pos - from) % align;
    if (rem !== 0) this.pos = Math.min(this.end, this.pos + (align - rem));
    return this;
  }
  /** A reader confined to the next n bytes; this reader moves past them. */
  sub(n: number, what: string): ByteReader {
    this.ensure(n, what);
    const r = new ByteReader(this.buf, this.pos, this.pos + n, what);
    this.pos += n;
    return r;
  }
  peekU16(field = "u16"): number {
    this.ensure(2, field);
    return this.buf.readUInt16BE(this.pos);
  }
}
