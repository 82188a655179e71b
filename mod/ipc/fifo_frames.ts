/**
 * The frames on a dispatcher↔worker FIFO, as bytes: the one place that writes
 * and reads them (docs/PROTOCOL.md, "Frames on the FIFOs").
 *
 * A frame is `0x00 | COBS(type u8 | length u32 LE | payload) | 0x00`.
 * Consistent Overhead Byte Stuffing (Cheshire and Baker, 1999) rewrites the
 * body so that it holds no zero byte, for one byte in 254, so a zero always
 * marks a frame boundary and never anything a payload carries: whatever bytes
 * a pipe holds (the half-written frame of a killed writer, the unread tail of
 * a killed reader's stream, stray bytes), a reader finds the next frame at the
 * next zero. A frame whose length field disagrees with its body (a cut one),
 * whose type is unknown, or that grows past the largest possible frame costs
 * only itself: {@link FrameDecoder} drops it and reads on from the next zero.
 * The leading zero makes a frame written after stray bytes start clean, so
 * stray bytes cost nothing but themselves.
 * @module
 */
import { MAX_LINK_MESSAGE } from "../net/protocol.ts";

/** Frame types on the FIFOs (checked against the table in docs/PROTOCOL.md). */
export const FifoFrame = {
  /**
   * A writer's session: its own session id and the last one it heard from
   * the peer (u64 LE each), sent first by every newly opened write end and as
   * the answer to a session it had not heard yet (see `fifo_pair.ts`).
   */
  HELLO: 0x68, // h
  /** dispatcher → worker doorbell: an assignment is in your slot (reserved: never rung, see PROTOCOL.md). */
  ASSIGN: 0x61, // a
  /** worker → dispatcher doorbell: done (or an expired ticket given back), idle again. */
  DONE: 0x64, // d
  /** dispatcher → worker: end-to-end probe of the pipe pair. */
  PROBE: 0x70, // p
  /** worker → dispatcher: the answer to a probe, rung from the worker's event loop. */
  ECHO: 0x65, // e
  /** either way: a message of the link's data channel (chat events), at most 64 KiB. */
  MESSAGE: 0x6d, // m
} as const;

/** Bytes of a frame's head: its type and its payload's length. */
const HEAD = 5;
/** Longest encoded frame between its zeros (COBS adds a byte per 254). */
export const MAX_ENCODED = HEAD + MAX_LINK_MESSAGE + Math.ceil((HEAD + MAX_LINK_MESSAGE) / 254) + 1;
const KNOWN = new Set<number>(Object.values(FifoFrame));

/** COBS-encodes `src` into `out` at `o`; returns the offset after it. */
function stuff(src: Uint8Array, out: Uint8Array, o: number): number {
  for (let i = 0;;) {
    const zero = src.indexOf(0, i);
    const end = zero < 0 ? src.length : zero;
    for (; end - i >= 254; i += 254, o += 255) {
      out[o] = 0xff;
      out.set(src.subarray(i, i + 254), o + 1);
    }
    out[o] = end - i + 1;
    out.set(src.subarray(i, end), o + 1);
    o += end - i + 1;
    if (zero < 0) return o;
    i = zero + 1;
  }
}

/** Decodes a COBS body (no zero inside); null when it is malformed. */
function unstuff(src: Uint8Array): Uint8Array | null {
  const out = new Uint8Array(src.length);
  let o = 0;
  for (let i = 0; i < src.length;) {
    const code = src[i++]!;
    if (i + code - 1 > src.length) return null;
    out.set(src.subarray(i, i + code - 1), o);
    o += code - 1;
    i += code - 1;
    if (code < 0xff && i < src.length) out[o++] = 0;
  }
  return out.subarray(0, o);
}

/** The last message encoded, kept because the dispatcher sends one message to every other worker in a row. */
let lastEncoded: { payload: Uint8Array; frame: Uint8Array } | undefined;

/** Doorbells (frames without payload) by type, encoded once: ringing allocates nothing. */
const bells = new Map<number, Uint8Array>();

/** One frame of `type` carrying `payload`, ready to write (never modify it: it may be shared). */
export function encodeFrame(type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (payload.length === 0) {
    let bell = bells.get(type);
    if (!bell) bells.set(type, bell = encode(type, payload));
    return bell;
  }
  if (lastEncoded?.payload === payload) return lastEncoded.frame;
  const frame = encode(type, payload);
  lastEncoded = { payload, frame };
  return frame;
}

function encode(type: number, payload: Uint8Array): Uint8Array {
  const body = new Uint8Array(HEAD + payload.length);
  body[0] = type;
  new DataView(body.buffer).setUint32(1, payload.length, true);
  body.set(payload, HEAD);
  const out = new Uint8Array(body.length + Math.ceil(body.length / 254) + 3);
  const end = stuff(body, out, 1); // out[0] is the leading zero
  return out.subarray(0, end + 1); // and out[end] the trailing one
}

/** Reads frames out of a byte stream, dropping what is not one. */
export class FrameDecoder {
  #buf = new Uint8Array(4096);
  #len = 0;
  /** True while bytes past {@link MAX_ENCODED} are skipped up to the next zero. */
  #skipping = false;
  /** Frames dropped so far (damaged, cut, unknown, too long). */
  dropped = 0;

  /**
   * Feeds bytes; calls `onFrame` for each whole frame, in order, and
   * `onDrop` with a reason for each one dropped.
   */
  push(
    bytes: Uint8Array,
    onFrame: (type: number, payload: Uint8Array) => void,
    onDrop: (why: string) => void,
  ): void {
    for (let i = 0; i < bytes.length;) {
      const zero = bytes.indexOf(0, i);
      const end = zero < 0 ? bytes.length : zero;
      this.#take(bytes.subarray(i, end));
      if (zero < 0) return;
      i = zero + 1;
      if (this.#skipping) {
        this.#skipping = false;
        this.#drop(onDrop, `a frame longer than ${MAX_ENCODED} bytes`);
      } else if (this.#len > 0) {
        const body = unstuff(this.#buf.subarray(0, this.#len));
        this.#len = 0;
        const why = body ? this.#damage(body) : "a malformed frame";
        if (why) this.#drop(onDrop, why);
        else onFrame(body![0]!, body!.subarray(HEAD));
      }
    }
  }

  /** Forgets a frame begun (its writer is gone). */
  reset(): void {
    this.#len = 0;
    this.#skipping = false;
  }

  #take(part: Uint8Array): void {
    if (this.#skipping || part.length === 0) return;
    if (this.#len + part.length > MAX_ENCODED) {
      this.#len = 0;
      this.#skipping = true;
      return;
    }
    if (this.#len + part.length > this.#buf.length) {
      const next = new Uint8Array(
        Math.min(MAX_ENCODED, Math.max(2 * this.#buf.length, this.#len + part.length)),
      );
      next.set(this.#buf.subarray(0, this.#len));
      this.#buf = next;
    }
    this.#buf.set(part, this.#len);
    this.#len += part.length;
  }

  #damage(body: Uint8Array): string | null {
    if (body.length < HEAD) return "a frame shorter than its head";
    const len = (body[1]! | (body[2]! << 8) | (body[3]! << 16)) + body[4]! * 2 ** 24;
    if (len !== body.length - HEAD) return `a frame saying ${len} bytes but holding ${body.length - HEAD}`;
    if (!KNOWN.has(body[0]!)) return `a frame of unknown type ${body[0]}`;
    return null;
  }

  #drop(onDrop: (why: string) => void, why: string): void {
    this.dropped++;
    onDrop(why);
  }
}
