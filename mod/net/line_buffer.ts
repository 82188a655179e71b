/**
 * Framing, bytes to lines, without a socket: the protocol's line rules
 * (LF ends a line, a CR before it is dropped, at most `maxLineBytes` bytes,
 * strict UTF-8 without NUL) over one buffer that never holds more than one
 * longest line plus CR and LF. {@link LineConn} reads a socket into it.
 *
 * Linear in the bytes, however they are split or pipelined: each byte is
 * looked at once for a LF (a scan resumes where the last one stopped), a
 * line is decoded once, and a partial line is moved to the front of the
 * buffer at most once (the buffer grows by doubling).
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { Status } from "./protocol.ts";

const INITIAL_BUFFER = 4096;
/** One strict decoder for every buffer of the process: lines are decoded whole, so it keeps no state. */
const utf8 = new TextDecoder("utf-8", { fatal: true });
/** Longest line decoded in JavaScript when it is plain ASCII (one op call saved per line). */
const ASCII_FAST_BYTES = 256;
/** Most bytes one socket read brings in. */
export const READ_CHUNK = 16 * 1024;

/** A header before the lines (the PROXY protocol's), as {@link LineBuffer.header} finds it. */
export interface HeaderScan<T> {
  /** Names the header in errors ("PROXY protocol header"). */
  readonly what: string;
  /** The longest header: past it without a complete one, the bytes are refused. */
  readonly maxBytes: number;
  /**
   * Shown the bytes received so far: returns the header and its length once
   * complete, or null while more bytes are needed; throws a
   * {@link ProtocolError} for bytes that can never become one.
   */
  scan(bytes: Uint8Array): { readonly value: T; readonly length: number } | null;
}

/** Bytes in, protocol lines out. */
export class LineBuffer {
  readonly #max: number;
  #checkFirstBytes: ((bytes: Uint8Array) => void) | undefined;
  #buf = new Uint8Array(INITIAL_BUFFER);
  /** Unconsumed bytes are #buf[#start, #end); bytes before #scan hold no LF. */
  #start = 0;
  #end = 0;
  #scan = 0;

  /**
   * `checkFirstBytes` looks at the first bytes of the stream once its first
   * line is complete (or the stream ended), and may throw to refuse it.
   */
  constructor(maxLineBytes: number, checkFirstBytes?: (bytes: Uint8Array) => void) {
    this.#max = maxLineBytes;
    this.#checkFirstBytes = checkFirstBytes;
  }

  /** True when no byte is waiting to become a line. */
  get empty(): boolean {
    return this.#end === this.#start;
  }

  /**
   * The next line (LF removed, a CR before it removed); at the end of the
   * stream (`ended`) the bytes after the last LF, then null. `undefined` when
   * more bytes are needed. Throws {@link ProtocolError}: 413 as soon as the
   * line is known to be too long, 400 for invalid UTF-8 or a NUL byte.
   */
  next(ended: boolean): string | null | undefined {
    const nl = this.#buf.subarray(this.#scan, this.#end).indexOf(0x0a);
    if (nl >= 0) {
      if (this.#checkFirstBytes) this.#firstBytes();
      const lf = this.#scan + nl;
      const cut = lf > this.#start && this.#buf[lf - 1] === 0x0d ? lf - 1 : lf;
      const raw = this.#buf.subarray(this.#start, cut);
      this.#start = this.#scan = lf + 1;
      if (raw.length > this.#max) throw this.#tooLong();
      return this.#decode(raw);
    }
    this.#scan = this.#end;
    // Too long as soon as that is known: more than the limit without a LF, unless the last byte is a CR, which
    // may yet be the one before the LF.
    const waiting = this.#end - this.#start;
    if (waiting > this.#max + 1 || (waiting === this.#max + 1 && this.#buf[this.#end - 1] !== 0x0d)) {
      throw this.#tooLong();
    }
    if (!ended) return undefined;
    if (this.#checkFirstBytes && this.#end > 0) this.#firstBytes();
    if (waiting === 0) return null;
    const rest = this.#buf.subarray(this.#start, this.#end);
    this.#start = this.#scan = this.#end;
    if (rest.length > this.#max) throw this.#tooLong();
    return this.#decode(rest); // last line without LF
  }

  /**
   * Where the next read goes: room after the unconsumed bytes, made by moving
   * them to the front or growing the buffer, up to one longest line plus CR
   * and LF. Call {@link LineBuffer.filled} with the count read.
   */
  space(): Uint8Array {
    if (this.#end === this.#buf.length && this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#scan -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const grown = new Uint8Array(Math.max(this.#buf.length, Math.min(this.#buf.length * 2, this.#max + 2)));
      grown.set(this.#buf.subarray(0, this.#end));
      this.#buf = grown;
    }
    return this.#buf.subarray(this.#end, Math.min(this.#buf.length, this.#end + READ_CHUNK));
  }

  /** Counts `n` bytes read into the last {@link LineBuffer.space}. */
  filled(n: number): void {
    this.#end += n;
  }

  /**
   * A header before the lines: the header once complete (its bytes are
   * consumed), or null while more are needed; throws as `scan.scan` does, or
   * 400 past `scan.maxBytes`. Only before the first line.
   */
  header<T>(scan: HeaderScan<T>): T | null {
    if (this.#start > 0) throw new Error("a header comes before any line");
    if (this.#buf.length < scan.maxBytes) {
      const grown = new Uint8Array(scan.maxBytes);
      grown.set(this.#buf.subarray(0, this.#end));
      this.#buf = grown;
    }
    const found = scan.scan(this.#buf.subarray(0, this.#end));
    if (found) {
      this.#start = this.#scan = found.length;
      return found.value;
    }
    if (this.#end >= scan.maxBytes) {
      throw new ProtocolError(`${scan.what} longer than ${scan.maxBytes} bytes`, Status.BAD_REQUEST);
    }
    return null;
  }

  /** Hands over the bytes not yet returned as lines, and forgets them. */
  takeBuffered(): Uint8Array {
    const rest = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#scan = this.#end = 0;
    return rest;
  }

  /** Runs the check of the stream's first bytes, once. */
  #firstBytes(): void {
    const check = this.#checkFirstBytes!;
    this.#checkFirstBytes = undefined;
    check(this.#buf.subarray(0, this.#end));
  }

  #tooLong(): ProtocolError {
    return new ProtocolError(`line longer than ${this.#max} bytes`, Status.TOO_LONG);
  }

  #decode(raw: Uint8Array): string {
    // The protocol's own lines are short ASCII: they become a string here, without the decoder's op call.
    if (raw.length <= ASCII_FAST_BYTES) {
      let ascii = true;
      for (let i = 0; i < raw.length; i++) {
        const b = raw[i]!;
        if (b === 0) throw new ProtocolError("NUL byte in line", Status.BAD_REQUEST);
        if (b >= 0x80) {
          ascii = false;
          break;
        }
      }
      if (ascii) return String.fromCharCode.apply(null, raw as unknown as number[]);
    }
    if (raw.includes(0)) throw new ProtocolError("NUL byte in line", Status.BAD_REQUEST);
    try {
      return utf8.decode(raw);
    } catch (err) {
      throw new ProtocolError("line is not valid UTF-8", Status.BAD_REQUEST, { cause: err });
    }
  }
}
