/**
 * Time for liveness, deadlines, backoff and tickets: a monotonic clock
 * (CLOCK_MONOTONIC), the same in every process of the host, so times that one
 * role writes into shared memory mean the same to the others, and never
 * stepped, so a clock change by an administrator or NTP can neither make every
 * child look hung nor hide a hung one. Wall time (`Date.now()`) is only for
 * showing people when something happened.
 *
 * Roles receive a {@link Clock} so tests can drive time instead of waiting.
 * @module
 */
import { monotonicMs } from "./libc.ts";

/** An opaque timer handle of a {@link Clock}. */
export type TimerHandle = unknown;

/** A source of monotonic milliseconds, plus timers that fire by that clock. */
export interface Clock {
  /** Milliseconds on CLOCK_MONOTONIC (comparable across the host's processes). */
  now(): number;
  /** Calls `fn` once after `ms`; returns a handle for {@link Clock.cancel}. */
  after(ms: number, fn: () => void): TimerHandle;
  /** Cancels a timer from {@link Clock.after} (unknown or fired handles are ignored). */
  cancel(handle: TimerHandle | undefined): void;
}

let offset: number | undefined;

/**
 * The host's monotonic clock. `performance.now()` runs on the same
 * CLOCK_MONOTONIC, so one libc call at first use fixes the offset between the
 * two and later readings cost no system call.
 * @example
 * ```ts
 * const t0 = systemClock.now();
 * systemClock.after(100, () => console.log(systemClock.now() - t0 >= 100));
 * ```
 */
export const systemClock: Clock = {
  now() {
    offset ??= monotonicMs() - performance.now();
    return performance.now() + offset;
  },
  // A deadline already due fires on the next turn of the event loop: a timer would wait a millisecond or
  // more (a restart without backoff pays that on its way to the spawn).
  after: (ms, fn) => ms > 0 ? setTimeout(fn, ms) : new Due(fn),
  cancel: (handle) => handle instanceof Due ? handle.cancel() : clearTimeout(handle as number),
};

/** A {@link systemClock} timer already due: runs on the next turn of the event loop unless cancelled. */
class Due {
  readonly #immediate: ReturnType<typeof setImmediate>;

  constructor(fn: () => void) {
    this.#immediate = setImmediate(fn);
  }

  cancel(): void {
    clearImmediate(this.#immediate);
  }
}

/**
 * A clock that moves only when told to, for tests: {@link ManualClock.advance}
 * runs every timer that falls due, in order.
 */
export class ManualClock implements Clock {
  #now: number;
  #next = 1;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 1_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  after(ms: number, fn: () => void): TimerHandle {
    const handle = this.#next++;
    this.#timers.set(handle, { at: this.#now + Math.max(0, ms), fn });
    return handle;
  }

  cancel(handle: TimerHandle | undefined): void {
    if (typeof handle === "number") this.#timers.delete(handle);
  }

  /** Timers not yet fired. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves time forward by `ms`, firing due timers in time order (timers they set fire too if due). */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      let first: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= until && (!first || entry[1].at < first[1].at)) first = entry;
      }
      if (!first) break;
      this.#timers.delete(first[0]);
      this.#now = Math.max(this.#now, first[1].at);
      first[1].fn();
    }
    this.#now = until;
  }
}
