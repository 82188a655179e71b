/**
 * Named pipes (FIFOs) between the dispatcher and a worker: their two ends and
 * the poller that reads them. What travels on them is framed by
 * `fifo_frames.ts`; a pair of them becomes a session in `fifo_pair.ts`.
 *
 * Opening a FIFO in blocking mode waits for the peer, so osps never does:
 * - the read end is opened `O_RDONLY|O_NONBLOCK` (always succeeds) and read
 *   without blocking, from the event loop ({@link FifoReader.drain}); a
 *   {@link FifoPoller} parks one `poll(2)` on a worker thread for all the
 *   process's read ends, so nothing waits on a thread per pipe;
 * - the write end is opened `O_WRONLY|O_NONBLOCK`, which fails with ENXIO
 *   while no reader exists; the writer retries until the peer is there.
 *
 * A read returning 0 (EOF) means no writer is left: the peer died. The read
 * end is then reopened, which clears the hang-up the kernel would otherwise
 * keep reporting, and waits for the next writer.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { SysError } from "../errors.ts";
import { MAX_LINK_MESSAGE } from "../net/protocol.ts";
import { encodeFrame, FifoFrame, FrameDecoder } from "./fifo_frames.ts";

/** Creates a FIFO with mode 0600 unless it exists; refuses anything at the path that is not our FIFO. */
export function ensureFifo(path: string): void {
  if (libc.mkfifo(path, 0o600)) return;
  const st = Deno.lstatSync(path);
  if (!st.isFifo || st.uid !== libc.getuid()) {
    throw new SysError("mkfifo", libc.E.EEXIST, `${path} exists and is not a FIFO owned by this user`);
  }
}

/** Removes a FIFO (never follows a link); false when absent. */
export function removeFifo(path: string): boolean {
  return libc.unlink(path);
}

/** Events a {@link FifoReader} reports. */
export interface FifoReaderEvents {
  /** A whole frame from the peer (`fifo_frames.ts`). */
  onFrame(type: number, payload: Uint8Array): void;
  /** Every writer closed after bytes came: the peer's end is gone (it died or stopped). */
  onEof(): void;
  /** A damaged frame was dropped (`why` says how); reading goes on at the next frame. */
  onDropped?(why: string): void;
}

/** The read end of a FIFO. Read it with {@link FifoReader.drain}, or let a {@link FifoPoller} do it. */
export class FifoReader {
  readonly path: string;
  #fd: number;
  /** True once bytes came since the end was (re)opened: an EOF then means a writer left. */
  #heard = false;
  readonly #buf = new Uint8Array(16 * 1024);
  readonly #decoder = new FrameDecoder();
  readonly #events: FifoReaderEvents;
  readonly #onFrame: (type: number, payload: Uint8Array) => void;
  readonly #onDrop: (why: string) => void;

  /** Opens the read end now (never blocks). */
  constructor(path: string, events: FifoReaderEvents) {
    this.path = path;
    this.#events = events;
    this.#onFrame = (type, payload) => events.onFrame(type, payload);
    this.#onDrop = (why) => events.onDropped?.(why);
    this.#fd = libc.open(path, libc.O.RDONLY | libc.O.NONBLOCK);
  }

  /** The descriptor to poll; -1 once closed. It changes when the end is reopened after EOF. */
  get fd(): number {
    return this.#fd;
  }

  /** Frames dropped so far as damaged. */
  get dropped(): number {
    return this.#decoder.dropped;
  }

  /**
   * Reads every byte waiting, without blocking, and reports the frames in
   * them. Returns true when the read end was reopened (its {@link FifoReader.fd} changed).
   */
  drain(): boolean {
    while (this.#fd >= 0) {
      const n = libc.readNow(this.#fd, this.#buf);
      if (n === -libc.E.EINTR) continue;
      if (n === -libc.E.EAGAIN) return false; // a writer is there, nothing more to read
      if (n < 0) throw new SysError("read", -n, this.path);
      if (n === 0) {
        // No writer left. Reopen so that poll(2) stops reporting the hang-up; a frame begun is lost with it.
        libc.close(this.#fd);
        this.#fd = libc.open(this.path, libc.O.RDONLY | libc.O.NONBLOCK);
        this.#decoder.reset();
        if (this.#heard) {
          this.#heard = false;
          this.#events.onEof();
        }
        return true;
      }
      this.#heard = true;
      this.#decoder.push(this.#buf.subarray(0, n), this.#onFrame, this.#onDrop);
    }
    return false;
  }

  /** Closes the read end (idempotent). */
  close(): void {
    if (this.#fd >= 0) libc.close(this.#fd);
    this.#fd = -1;
    this.#heard = false;
    this.#decoder.reset();
  }
}

/** The write end of a FIFO; connects when the reader is there. */
export class FifoWriter {
  readonly path: string;
  #fd = -1;
  /** Bytes not yet taken by a full pipe, written in order before anything new. */
  #backlog: Uint8Array[] = [];
  #backlogBytes = 0;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** Called when the end closes by itself (the reader went away: EPIPE), not on {@link FifoWriter.close}. */
  onGone: () => void = () => {};

  constructor(path: string) {
    this.path = path;
  }

  /** True while the write end is open (a reader existed when it was opened). */
  get connected(): boolean {
    return this.#fd >= 0;
  }

  /**
   * Tries once to open the write end without blocking. Returns false while
   * the reader is missing (ENXIO) or the FIFO is not there yet; throws on
   * anything else (the FIFO is broken).
   */
  tryConnect(): boolean {
    if (this.#fd >= 0) return true;
    const fd = libc.tryOpen(this.path, libc.O.WRONLY | libc.O.NONBLOCK);
    if (fd === -libc.E.ENXIO || fd === -libc.E.ENOENT) return false;
    if (fd < 0) throw new SysError("open", -fd, this.path);
    this.#fd = fd;
    return true;
  }

  /**
   * Writes one frame of `type` (`fifo_frames.ts`). Returns false when the
   * reader is gone (EPIPE: the end closes), or, for a message, when more than
   * `maxBacklog` bytes wait already (the reader is not reading: the message
   * is dropped, the caller decides). A doorbell (no payload) the full pipe
   * does not take is dropped, since the reader has 64 KiB of frames to read
   * first and one more ring adds nothing; a HELLO and a message never are:
   * what a full pipe does not take is written, in order, as the reader drains it.
   */
  sendFrame(type: number, payload?: Uint8Array, maxBacklog = 4 * MAX_LINK_MESSAGE): boolean {
    if (this.#fd < 0 || (payload?.length ?? 0) > MAX_LINK_MESSAGE) return false;
    const frame = encodeFrame(type, payload);
    const droppable = !payload?.length && type !== FifoFrame.HELLO;
    if (droppable && this.#backlog.length === 0) {
      for (;;) {
        // A frame this short is written whole or not at all (PIPE_BUF).
        const n = libc.write(this.#fd, frame as Uint8Array<ArrayBuffer>);
        if (n === frame.length || n === -libc.E.EAGAIN) return true;
        if (n === -libc.E.EINTR) continue;
        this.#gone();
        return false;
      }
    }
    if (!droppable && this.#backlogBytes + frame.length > maxBacklog) return false;
    this.#backlog.push(frame);
    this.#backlogBytes += frame.length;
    return this.#flush();
  }

  /** Writes what the pipe takes; schedules the rest. False when the reader is gone. */
  #flush(): boolean {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    while (this.#backlog.length > 0 && this.#fd >= 0) {
      const head = this.#backlog[0]!;
      const n = libc.write(this.#fd, head as Uint8Array<ArrayBuffer>);
      if (n === -libc.E.EINTR) continue;
      if (n === -libc.E.EAGAIN) {
        this.#flushTimer = setTimeout(() => this.#flush(), 1);
        return true;
      }
      if (n < 0) {
        this.#gone();
        return false;
      }
      this.#backlogBytes -= n;
      if (n === head.length) this.#backlog.shift();
      else this.#backlog[0] = head.subarray(n);
    }
    return this.#fd >= 0;
  }

  #gone(): void {
    this.close();
    this.onGone();
  }

  /** Closes the write end; the reader sees EOF once every writer is closed. Unsent bytes are dropped. */
  close(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    this.#backlog = [];
    this.#backlogBytes = 0;
    if (this.#fd >= 0) libc.close(this.#fd);
    this.#fd = -1;
  }
}

/** How often the event loop drains the FIFOs itself, whatever the parked poll says (see {@link FifoPoller}). */
export const BACKSTOP_MS = 50;

/**
 * Watches every FIFO read end of this process with one `poll(2)` parked on
 * one of Deno's worker threads, and drains the ready ones from the event loop
 * (where `read`'s errno can be trusted). A private pipe wakes the parked poll
 * when the set of ends changes or the poller stops.
 *
 * A timer of the event loop also drains every {@link BACKSTOP_MS}: the parked
 * poll's completion reaches the loop as any other does, and measured with
 * 10,000 chat clients on a worker it waited seconds behind their socket
 * completions while the loop itself turned — long enough for the dispatcher
 * to call the worker's pipes wedged. The timer runs whenever the loop turns.
 */
export class FifoPoller {
  readonly #readers = new Set<FifoReader>();
  readonly #wakeR: number;
  readonly #wakeW: number;
  readonly #scratch = new Uint8Array(64);
  #stopped = false;
  #loop: Promise<void> | undefined;
  #backstop: ReturnType<typeof setInterval> | undefined;
  /** Errors from a reader (a broken FIFO file), reported once per reader, never thrown into the loop. */
  onError: (reader: FifoReader, err: unknown) => void = () => {};

  constructor() {
    [this.#wakeR, this.#wakeW] = libc.pipe();
  }

  /** Starts watching `reader` (and drains it once now). */
  add(reader: FifoReader): void {
    this.#readers.add(reader);
    this.#drainOne(reader);
    this.#wake();
  }

  /** Stops watching `reader` (the caller closes it). */
  remove(reader: FifoReader): void {
    if (this.#readers.delete(reader)) this.#wake();
  }

  /** Drains every watched end now, without waiting (one `poll(2)` when there is nothing to read). */
  drain(): void {
    const fds = [...this.#readers].map((r) => r.fd).filter((fd) => fd >= 0);
    if (fds.length === 0) return;
    const ready = new Set(libc.pollNow(fds).map((p) => p.fd));
    for (const r of this.#readers) if (ready.has(r.fd)) this.#drainOne(r);
  }

  #drainOne(reader: FifoReader): void {
    try {
      if (reader.drain()) this.#wake(); // its fd changed: re-poll with the new one
    } catch (err) {
      this.#readers.delete(reader);
      this.onError(reader, err);
    }
  }

  #wake(): void {
    if (this.#loop) libc.write(this.#wakeW, this.#scratch.subarray(0, 1) as Uint8Array<ArrayBuffer>);
  }

  /** Parks the poll until {@link FifoPoller.stop}. */
  start(): void {
    this.#loop ??= this.#run();
    if (this.#backstop) return;
    this.#backstop = setInterval(() => this.drain(), BACKSTOP_MS);
    Deno.unrefTimer(this.#backstop); // it keeps nothing alive: the parked poll does, while it runs
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const fds = [this.#wakeR, ...[...this.#readers].map((r) => r.fd).filter((fd) => fd >= 0)];
      const ready = await libc.pollWait(fds, -1);
      if (this.#stopped) break;
      while (libc.readNow(this.#wakeR, this.#scratch) > 0) { /* emptied */ }
      const readable = new Set(ready.map((p) => p.fd));
      for (const r of [...this.#readers]) if (readable.has(r.fd)) this.#drainOne(r);
    }
  }

  /** Stops the parked poll and waits for it to return. Readers stay open (their owners close them). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#backstop);
    this.#wake();
    await this.#loop;
    libc.close(this.#wakeR);
    libc.close(this.#wakeW);
  }
}
