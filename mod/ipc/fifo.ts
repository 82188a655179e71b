/**
 * Named pipes (FIFOs) used as doorbells between the dispatcher and a worker.
 *
 * Opening a FIFO blocks until the peer opens the other end, so osps never
 * opens one in blocking mode:
 * - the read end is opened `O_RDONLY|O_NONBLOCK` (always succeeds), then made
 *   blocking, and read on a Deno worker thread (`read` FFI `nonblocking: true`)
 *   so the event loop stays free;
 * - the write end is opened `O_WRONLY|O_NONBLOCK`, which fails with ENXIO
 *   while no reader exists; the writer retries until the peer is there.
 *
 * A read returning 0 (EOF) after the peer said hello means every writer is
 * gone: the peer died. Before hello, EOF only means "not connected yet".
 * @module
 */
import * as libc from "../sys/libc.ts";
import { SysError } from "../errors.ts";
import { Doorbell } from "../net/protocol.ts";

/** How often an unconnected end retries, in ms. */
export const FIFO_RETRY_MS = 20;

/** Creates a FIFO with mode 0600 unless it exists; refuses anything at the path that is not our FIFO. */
export function ensureFifo(path: string): void {
  if (libc.mkfifo(path, 0o600)) return;
  const st = Deno.lstatSync(path);
  if (!st.isFifo || st.uid !== libc.getuid()) {
    throw new SysError("mkfifo", 17, `${path} exists and is not a FIFO owned by this user`);
  }
}

/** Removes a FIFO (never follows a link); false when absent. */
export function removeFifo(path: string): boolean {
  return libc.unlink(path);
}

/** Events a {@link FifoReader} reports. */
export interface FifoReaderEvents {
  /** One doorbell byte from the peer (hello is handled internally and reported as `onConnect`). */
  onByte(byte: number): void;
  /** The peer opened its end and said hello. */
  onConnect(): void;
  /** The peer's end closed (EOF after hello): it died or stopped. */
  onClose(): void;
}

/** The read end of a doorbell FIFO. Start with {@link FifoReader.run}. */
export class FifoReader {
  readonly path: string;
  #fd = -1;
  #stopped = false;
  #connected = false;

  constructor(path: string) {
    this.path = path;
  }

  /** True between the peer's hello and its EOF. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Reads until {@link FifoReader.stop}; never throws for a missing peer. */
  async run(events: FifoReaderEvents): Promise<void> {
    this.#fd = libc.open(this.path, libc.O.RDONLY | libc.O.NONBLOCK);
    libc.setNonBlocking(this.#fd, false);
    const buf = new Uint8Array(256);
    while (!this.#stopped) {
      const n = await libc.readAsync(this.#fd, buf);
      if (this.#stopped) break;
      if (n === -libc.E.EINTR || n === -libc.E.EAGAIN) continue;
      if (n < 0) throw new SysError("read", -n, this.path);
      if (n === 0) {
        if (this.#connected) {
          this.#connected = false;
          events.onClose();
        }
        // No writer: nobody to wait for on a thread. Poll until one appears.
        await new Promise((r) => setTimeout(r, FIFO_RETRY_MS));
        continue;
      }
      for (const byte of buf.subarray(0, n)) {
        if (byte === Doorbell.HELLO) {
          this.#connected = true;
          events.onConnect();
        } else if (this.#connected) {
          events.onByte(byte);
        }
      }
    }
  }

  /** Stops the loop at its next wake-up and closes the fd. */
  stop(): void {
    this.#stopped = true;
    // The pending read on a worker thread keeps the fd; closing it is safe on Linux
    // (the read returns when a byte arrives or the writer closes).
    if (this.#fd >= 0) libc.close(this.#fd);
    this.#fd = -1;
  }
}

/** The write end of a doorbell FIFO; connects lazily and reconnects after the peer restarts. */
export class FifoWriter {
  readonly path: string;
  #fd = -1;
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
   * Returns false while the reader is missing (ENXIO).
   */
  tryConnect(): boolean {
    if (this.#fd >= 0) return true;
    const fd = libc.tryOpen(this.path, libc.O.WRONLY | libc.O.NONBLOCK);
    if (fd === -libc.E.ENXIO || fd === -libc.E.ENOENT) return false;
    if (fd < 0) throw new SysError("open", -fd, this.path);
    this.#fd = fd;
    return this.send(Doorbell.HELLO);
  }

  /** Rings: writes one byte. Returns false (and disconnects) when the reader is gone or the pipe is full. */
  send(byte: number): boolean {
    if (this.#fd < 0) return false;
    this.#one[0] = byte;
    const n = libc.write(this.#fd, this.#one);
    if (n === 1) return true;
    this.close();
    return false;
  }

  /** Closes the write end; the reader sees EOF once every writer is closed. */
  close(): void {
    if (this.#fd >= 0) libc.close(this.#fd);
    this.#fd = -1;
  }
}
