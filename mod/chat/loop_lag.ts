/**
 * How late this process's event loop runs a timer: a timer set every
 * {@link TICK_MS} measures how much later than asked it ran. That delay is
 * the time some work held the loop (or the process waited for a CPU): what
 * every client and the watchdog's heartbeat waited too. Kept as a list of
 * delays since the last {@link LoopLag.take}, bounded; a delay past
 * {@link LoopLag.blockedMs} is reported at once (logged: nothing in the chat
 * should ever hold the loop that long).
 * @module
 */
import { percentile } from "../client/latency_stats.ts";

/** Interval of the measuring timer. */
export const TICK_MS = 50;
/** Delays kept between two takes (the oldest are dropped past it). */
const MAX_SAMPLES = 100_000;

/** Event-loop delay statistics over a period, in ms. */
export interface LagStats {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** Measures the event loop's delays. */
export class LoopLag {
  #samples: number[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #at = 0;
  readonly #onBlocked: (ms: number) => void;
  readonly blockedMs: number;

  /** Starts measuring; `onBlocked` hears of every delay past `blockedMs`. */
  constructor(blockedMs: number, onBlocked: (ms: number) => void) {
    this.blockedMs = blockedMs;
    this.#onBlocked = onBlocked;
    this.#arm();
  }

  #arm(): void {
    this.#at = performance.now();
    this.#timer = setTimeout(() => {
      const late = Math.max(0, performance.now() - this.#at - TICK_MS);
      if (this.#samples.length >= MAX_SAMPLES) this.#samples.shift();
      this.#samples.push(late);
      if (late > this.blockedMs) this.#onBlocked(late);
      this.#arm();
    }, TICK_MS);
  }

  /** The delays since the last take (and starts a new period). */
  take(): LagStats {
    const sorted = Float64Array.from(this.#samples).sort();
    this.#samples = [];
    if (sorted.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
    const r = (x: number) => Math.round(x * 10) / 10;
    return {
      count: sorted.length,
      p50: r(percentile(sorted, 50)),
      p99: r(percentile(sorted, 99)),
      max: r(sorted[sorted.length - 1]!),
    };
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}
