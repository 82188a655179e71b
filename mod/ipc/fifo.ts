/**
 * Named pipes (FIFOs) used as doorbells between the dispatcher and a worker.
 *
 * Opening a FIFO in blocking mode waits for the peer, so osps never does:
 * - the read end is opened `O_RDONLY|O_NONBLOCK` (always succeeds) and read
 *   without blocking, from the event loop ({@link FifoReader.drain}); a
 *   {@link FifoPoller} parks one `poll(2)` on a worker thread for all the
 *   process's read ends, so nothing waits on a thread per pipe;
 * - the write end is opened `O_WRONLY|O_NONBLOCK`, which fails with ENXIO
 *   while no reader exists; the writer retries until the peer is there.
 *
 * A read returning 0 (EOF) means no writer is left: after the peer's hello,
 * that the peer died. The read end is then reopened, which clears the
 * hang-up the kernel would otherwise keep reporting, and waits for the next
 * writer's hello.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { SysError } from "../errors.ts";
import { Doorbell, MAX_LINK_MESSAGE } from "../net/protocol.ts";

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
  /** One doorbell byte from the peer (hello is reported as `onConnect`). */
  onByte(byte: number): void;
  /** The peer opened its end and said hello. */
  onConnect(): void;
  /** The peer's end closed (EOF after hello): it died or stopped. */
  onClose(): void;
  /** A framed message (`m`, length, bytes) from the peer. */
  onMessage?(message: Uint8Array): void;
}

/** The read end of a doorbell FIFO. Read it with {@link FifoReader.drain}, or let a {@link FifoPoller} do it. */
export class FifoReader {
  readonly path: string;
  #fd: number;
  #connected = false;
  readonly #buf = new Uint8Array(16 * 1024);
  readonly #events: FifoReaderEvents;
  /** A message being received: its length header, then its bytes, possibly across reads. */
  #frame: { header: number[]; body?: Uint8Array; filled: number } | undefined;

  /** Opens the read end now (never blocks). */
  constructor(path: string, events: FifoReaderEvents) {
    this.path = path;
    this.#events = events;
    this.#fd = libc.open(path, libc.O.RDONLY | libc.O.NONBLOCK);
  }

  /** The descriptor to poll; -1 once closed. It changes when the end is reopened after EOF. */
  get fd(): number {
    return this.#fd;
  }

  /** True between the peer's hello and its EOF. */
  get connected(): boolean {
    return this.#connected;
  }

  /**
   * Reads every byte waiting, without blocking, and reports them. Returns
   * true when the read end was reopened (its {@link FifoReader.fd} changed).
   */
  drain(): boolean {
    while (this.#fd >= 0) {
      const n = libc.readNow(this.#fd, this.#buf);
      if (n === -libc.E.EINTR) continue;
      if (n === -libc.E.EAGAIN) return false; // a writer is there, nothing more to read
      if (n < 0) throw new SysError("read", -n, this.path);
      if (n === 0) {
        // No writer left. Reopen so that poll(2) stops reporting the hang-up.
        libc.close(this.#fd);
        this.#fd = libc.open(this.path, libc.O.RDONLY | libc.O.NONBLOCK);
        if (this.#connected) {
          this.#connected = false;
          this.#events.onClose();
        }
        return true;
      }
      for (let i = 0; i < n; i++) {
        if (this.#frame) {
          i = this.#frameBytes(i, n) - 1;
          continue;
        }
        const byte = this.#buf[i]!;
        if (byte === Doorbell.HELLO) {
          this.#connected = true;
          this.#frame = undefined;
          this.#events.onConnect();
        } else if (!this.#connected) {
          continue;
        } else if (byte === Doorbell.MESSAGE) {
          this.#frame = { header: [], filled: 0 };
        } else {
          this.#events.onByte(byte);
        }
      }
    }
    return false;
  }

  /** Consumes message bytes from #buf[i, n); returns the index after the last one used. */
  #frameBytes(i: number, n: number): number {
    const f = this.#frame!;
    while (f.header.length < 4 && i < n) f.header.push(this.#buf[i++]!);
    if (f.header.length < 4) return i;
    if (!f.body) {
      const len = f.header[0]! | (f.header[1]! << 8) | (f.header[2]! << 16) | (f.header[3]! << 24);
      if (len < 0 || len > MAX_LINK_MESSAGE) {
        throw new SysError("read", libc.E.EINVAL, `${this.path}: message of ${len} bytes`);
      }
      f.body = new Uint8Array(len);
    }
    const take = Math.min(n - i, f.body.length - f.filled);
    f.body.set(this.#buf.subarray(i, i + take), f.filled);
    f.filled += take;
    if (f.filled === f.body.length) {
      this.#frame = undefined;
      this.#events.onMessage?.(f.body);
    }
    return i + take;
  }

  /** Closes the read end (idempotent). */
  close(): void {
    if (this.#fd >= 0) libc.close(this.#fd);
    this.#fd = -1;
    this.#connected = false;
    this.#frame = undefined;
  }
}

/** The write end of a doorbell FIFO; connects when the reader is there and reconnects after it restarts. */
export class FifoWriter {
  readonly path: string;
  #fd = -1;
  /** Bytes not yet taken by a full pipe, written in order before anything new. */
  #backlog: Uint8Array[] = [];
  #backlogBytes = 0;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #one = new Uint8Array(1);

  constructor(path: string) {
    this.path = path;
  }

  /** True while the write end is open (a reader existed when it was opened). */
  get connected(): boolean {
    return this.#fd >= 0;
  }

  /**
   * Tries once to open the write end without blocking; on success says hello.
   * Returns false while the reader is missing (ENXIO) or the FIFO is not there yet.
   */
  tryConnect(): boolean {
    if (this.#fd >= 0) return true;
    const fd = libc.tryOpen(this.path, libc.O.WRONLY | libc.O.NONBLOCK);
    if (fd === -libc.E.ENXIO || fd === -libc.E.ENOENT) return false;
    if (fd < 0) throw new SysError("open", -fd, this.path);
    this.#fd = fd;
    return this.send(Doorbell.HELLO);
  }

  /**
   * Rings: writes one byte. Returns false (and disconnects) when the reader is
   * gone (EPIPE). On a full pipe (EAGAIN) a bare doorbell is dropped (the
   * reader has 64 KiB of unread ones, so one more adds nothing) unless
   * messages are waiting, which keep their order with it.
   */
  send(byte: number): boolean {
    if (this.#fd < 0) return false;
    if (this.#backlog.length > 0) return this.#queue(Uint8Array.of(byte));
    this.#one[0] = byte;
    for (;;) {
      const n = libc.write(this.#fd, this.#one);
      if (n === 1 || n === -libc.E.EAGAIN) return true;
      if (n === -libc.E.EINTR) continue;
      this.close();
      return false;
    }
  }

  /**
   * Sends a framed message (`m`, 4-byte length, bytes). What a full pipe does
   * not take now is written as the reader drains it, in order. Returns false
   * when the reader is gone or more than `maxBacklog` bytes are waiting (the
   * reader is not reading: the message is dropped, the caller decides).
   */
  sendMessage(message: Uint8Array, maxBacklog = 4 * MAX_LINK_MESSAGE): boolean {
    if (this.#fd < 0 || message.length > MAX_LINK_MESSAGE) return false;
    if (this.#backlogBytes + message.length > maxBacklog) return false;
    const frame = new Uint8Array(5 + message.length);
    frame[0] = Doorbell.MESSAGE;
    new DataView(frame.buffer).setUint32(1, message.length, true);
    frame.set(message, 5);
    return this.#queue(frame);
  }

  #queue(bytes: Uint8Array): boolean {
    this.#backlog.push(bytes);
    this.#backlogBytes += bytes.length;
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
        this.close();
        return false;
      }
      this.#backlogBytes -= n;
      if (n === head.length) this.#backlog.shift();
      else this.#backlog[0] = head.subarray(n);
    }
    return this.#fd >= 0;
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

/**
 * Watches every FIFO read end of this process with one `poll(2)` parked on
 * one of Deno's worker threads, and drains the ready ones from the event loop
 * (where `read`'s errno can be trusted). A private pipe wakes the parked poll
 * when the set of ends changes or the poller stops.
 */
export class FifoPoller {
  readonly #readers = new Set<FifoReader>();
  readonly #wakeR: number;
  readonly #wakeW: number;
  readonly #scratch = new Uint8Array(64);
  #stopped = false;
  #loop: Promise<void> | undefined;
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

  /** Drains every watched end now, without waiting (cheap when there is nothing to read). */
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
    this.#wake();
    await this.#loop;
    libc.close(this.#wakeR);
    libc.close(this.#wakeW);
  }
}
