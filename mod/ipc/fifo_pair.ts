/**
 * A FIFO pair as a session between two processes (a dispatcher and one of
 * its workers): one end reads the peer's FIFO, the other writes ours, and
 * either process may be replaced at any moment by a new one that opens the
 * same FIFOs.
 *
 * A pipe outlives its processes: it may still hold what a killed writer left
 * half-written, or what a killed reader had not read yet, when the
 * replacement opens it; and a busy survivor may read the replacement's first
 * bytes before the EOF that says the old one died, or never see that EOF at
 * all. Frames (`fifo_frames.ts`) make every frame boundary findable; sessions
 * make the old bytes worthless:
 *
 * - every time a process opens its write end it starts a session: a fresh
 *   random id, announced in a HELLO frame that also carries the last session
 *   it heard from the peer;
 * - a HELLO with a session not heard before means a new peer (or a new
 *   session of the same peer): the previous one is over, and the answer is a
 *   HELLO naming it;
 * - only frames that follow a HELLO naming our current session are the
 *   peer's words to us. Everything before it (a dead peer's frames, frames
 *   meant for our predecessor, stray bytes) is dropped, whatever it says.
 *
 * Two new ends need four HELLOs, a new end and a survivor three; then the
 * pair is connected both ways. A dropped frame never stops the pair: the
 * reader goes on at the next one.
 * @module
 */
import { logger } from "../log.ts";
import { FifoFrame } from "./fifo_frames.ts";
import { type FifoPoller, FifoReader, FifoWriter } from "./fifo.ts";

/** How often an unconnected write end retries, in ms. */
export const FIFO_RETRY_MS = 20;

/** What a {@link FifoPair} tells its owner. */
export interface FifoPairEvents {
  /** A session with the peer is up both ways: frames flow. */
  onConnect(): void;
  /** The peer's session is over: it died, stopped, or a new peer took its place. */
  onClose(): void;
  /** A doorbell or message of the current session. */
  onFrame(type: number, payload: Uint8Array): void;
  /** A damaged frame was dropped. */
  onDropped?(why: string): void;
}

/** A random session id: 48 bits, never 0 (0 means "none heard"). */
function newSession(): number {
  const [hi, lo] = crypto.getRandomValues(new Uint32Array(2));
  return ((hi! & 0xffff) * 2 ** 32 + lo!) || 1;
}

function helloPayload(mine: number, heard: number): Uint8Array {
  const p = new Uint8Array(16);
  const v = new DataView(p.buffer);
  v.setBigUint64(0, BigInt(mine), true);
  v.setBigUint64(8, BigInt(heard), true);
  return p;
}

/** Both ends of one process's side of a FIFO pair, kept connected and in session with the peer's. */
export class FifoPair {
  readonly #reader: FifoReader;
  readonly #writer: FifoWriter;
  readonly #events: FifoPairEvents;
  readonly #retryMs: () => number;
  #poller: FifoPoller | undefined;
  /** Our write end's session, 0 while it is closed. */
  #mine = 0;
  /** The peer's session we heard last, 0 when none. */
  #peer = 0;
  /** True when the peer's last HELLO named our current session. */
  #acked = false;
  #up = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /**
   * Opens the read end of `readPath` now; the write end of `writePath`
   * connects once {@link FifoPair.start} is called and the peer reads it.
   * `retryMs`: the wait between two tries to open the write end.
   */
  constructor(
    readPath: string,
    writePath: string,
    events: FifoPairEvents,
    retryMs: () => number = () => FIFO_RETRY_MS,
  ) {
    this.#events = events;
    this.#retryMs = retryMs;
    this.#writer = new FifoWriter(writePath);
    this.#writer.onGone = () => this.#writerGone();
    this.#reader = new FifoReader(readPath, {
      onFrame: (type, payload) => this.#onFrame(type, payload),
      onEof: () => this.#onEof(),
      onDropped: (why) => events.onDropped?.(why),
    });
  }

  /** True while a session is up both ways. */
  get connected(): boolean {
    return this.#up;
  }

  /** Frames dropped so far as damaged. */
  get dropped(): number {
    return this.#reader.dropped;
  }

  /** Starts reading (through `poller`) and connecting. */
  start(poller: FifoPoller): void {
    this.#poller = poller;
    poller.add(this.#reader);
    this.#connect();
  }

  /** Rings a doorbell; false when no session is up (the ring would be dropped by the peer). */
  ring(type: number): boolean {
    return this.#up && this.#writer.sendFrame(type);
  }

  /** Sends a data-channel message; false when no session is up or the peer is not reading. */
  send(message: Uint8Array): boolean {
    return this.#up && this.#writer.sendFrame(FifoFrame.MESSAGE, message);
  }

  #onFrame(type: number, payload: Uint8Array): void {
    if (type !== FifoFrame.HELLO) {
      if (this.#up) this.#events.onFrame(type, payload);
      return; // not (yet) ours: a dead peer's, or meant for our predecessor
    }
    if (payload.length !== 16) return;
    const v = new DataView(payload.buffer, payload.byteOffset, 16);
    const theirs = Number(v.getBigUint64(0, true));
    const heard = Number(v.getBigUint64(8, true));
    if (theirs === 0) return; // no session says 0
    if (theirs !== this.#peer) {
      // A new peer, or a new session of it: the old one is over, and the new one has not heard ours yet.
      this.#peer = theirs;
      this.#acked = false;
      this.#update();
      this.#announce();
    }
    this.#acked = this.#mine !== 0 && heard === this.#mine;
    this.#update();
  }

  /** Tells the peer our session and that we heard its own (a HELLO); connects first if need be. */
  #announce(): void {
    if (!this.#writer.connected) return this.#kick();
    this.#writer.sendFrame(FifoFrame.HELLO, helloPayload(this.#mine, this.#peer));
  }

  #onEof(): void {
    // Every writer of the peer's FIFO is gone: so is the peer. Ours goes too (what waits in it was for the
    // peer), and connects again for the next one.
    this.#peer = 0;
    this.#acked = false;
    this.#writer.close();
    this.#mine = 0;
    this.#update();
    this.#connect();
  }

  #writerGone(): void {
    // The peer's read end closed: it is going. Its successor's HELLO brings us back at once (a kick).
    this.#mine = 0;
    this.#acked = false;
    this.#update();
    if (!this.#closed) this.#timer ??= setTimeout(() => this.#retry(), this.#retryMs());
  }

  #update(): void {
    const up = this.#acked && this.#peer !== 0 && this.#writer.connected;
    if (up === this.#up) return;
    this.#up = up;
    if (up) this.#events.onConnect();
    else this.#events.onClose();
  }

  /** Tries to open the write end at once, whatever retry is pending (the peer just showed up). */
  #kick(): void {
    clearTimeout(this.#timer);
    this.#retry();
  }

  #connect(): void {
    if (this.#timer === undefined) this.#retry();
  }

  /** One try to open the write end (and start a session); tries again later while the peer is missing. */
  #retry(): void {
    this.#timer = undefined;
    if (this.#closed || this.#writer.connected) return;
    let open = false;
    try {
      open = this.#writer.tryConnect();
    } catch (err) {
      // Not ENXIO: the FIFO is broken (removed, replaced). Keep trying; the watchdog repairs or replaces.
      logger().warn("fifo {path}: {err}; retrying", { path: this.#writer.path, err: String(err) });
    }
    if (!open) {
      this.#timer = setTimeout(() => this.#retry(), this.#retryMs());
      return;
    }
    this.#mine = newSession();
    this.#acked = false;
    this.#writer.sendFrame(FifoFrame.HELLO, helloPayload(this.#mine, this.#peer));
    this.#update();
  }

  /** Closes both ends (idempotent). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#poller?.remove(this.#reader);
    this.#reader.close();
    this.#writer.close();
    this.#up = false;
  }
}
