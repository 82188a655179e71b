/**
 * Writing lines to a pipe or file without ever blocking the event loop: a
 * bounded queue drained by one asynchronous write at a time. A reader that
 * stalls (a stopped terminal, a full pipe nobody reads) costs queued lines,
 * never the role's liveness: past the bound, new lines are dropped and
 * counted, and the count is reported in the next line that gets through.
 * @module
 */
import { abortable } from "./deadline.ts";

/** Where a {@link LineSink} writes. */
export interface SinkTarget {
  write(p: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();

/** A bounded, non-blocking line writer. */
export class LineSink {
  #target: SinkTarget;
  readonly #maxQueued: number;
  #queue: Uint8Array[] = [];
  #writing: Promise<void> | undefined;
  #dropped = 0;
  #broken = false;
  /** The write in progress (on whichever target it started), settled either way. */
  #inflight: Promise<unknown> = Promise.resolve();
  /** Called with the number of lines dropped, to build the notice written once the queue has room again. */
  readonly #droppedNotice: (n: number) => string;

  constructor(
    target: SinkTarget,
    options: { maxQueued?: number; droppedNotice?: (n: number) => string } = {},
  ) {
    this.#target = target;
    this.#maxQueued = options.maxQueued ?? 1000;
    this.#droppedNotice = options.droppedNotice ?? ((n) => `(${n} lines dropped: the reader was too slow)\n`);
  }

  /** Lines dropped so far because the reader was too slow. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Queues `text` (one or more whole lines, LF-terminated); returns false when it was dropped. */
  write(text: string): boolean {
    if (this.#broken) return false;
    if (this.#queue.length >= this.#maxQueued) {
      this.#dropped++;
      return false;
    }
    this.#queue.push(encoder.encode(text));
    this.#writing ??= this.#pump();
    return true;
  }

  /**
   * Switches to another target (log reopen); lines queued so far go to the new
   * one. Resolves once no write is in progress on the old target, which may
   * then be closed.
   */
  async retarget(target: SinkTarget): Promise<void> {
    this.#target = target;
    this.#broken = false;
    if (this.#queue.length > 0) this.#writing ??= this.#pump();
    await this.#inflight;
  }

  async #pump(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#broken) {
        let reported = 0;
        if (this.#dropped > 0 && this.#queue.length < this.#maxQueued) {
          reported = this.#dropped;
          this.#queue.unshift(encoder.encode(this.#droppedNotice(reported)));
        }
        const chunk = concat(this.#queue.splice(0, 64));
        if (reported) this.#dropped -= reported;
        let off = 0;
        while (off < chunk.length) {
          const write = this.#target.write(chunk.subarray(off));
          this.#inflight = write.catch(() => {});
          off += await write;
        }
      }
    } catch {
      this.#broken = true; // the reader is gone for good
      this.#queue = [];
    } finally {
      this.#writing = undefined;
    }
  }

  /** Resolves when everything queued is written, or once `timeoutMs` has passed (a stalled reader). */
  async flush(timeoutMs = 1_000): Promise<void> {
    if (!this.#writing) return;
    await abortable(this.#writing, AbortSignal.timeout(timeoutMs)).catch(() => {});
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
