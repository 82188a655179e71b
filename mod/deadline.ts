/**
 * The one cancellation primitive of osps: `AbortSignal`. A deadline is a
 * signal that aborts after some time ({@link deadline}), several reasons to
 * stop combine with `AbortSignal.any`, and any promise can be raced against a
 * signal ({@link abortable}) without leaving a listener or a timer behind.
 * @module
 */

/** A signal that aborts with `reason` after `ms`, and releases its timer when disposed. */
export interface Deadline extends Disposable {
  readonly signal: AbortSignal;
}

/**
 * A signal that aborts with `reason()` after `ms` milliseconds; `using` it (or
 * calling `[Symbol.dispose]`) clears the timer, so short-lived deadlines made
 * at a high rate leave nothing pending.
 * @example
 * ```ts
 * using d = deadline(1000, () => new Error("too slow"));
 * await abortable(fetchSomething(), d.signal);
 * ```
 */
export function deadline(ms: number, reason: () => unknown): Deadline {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(reason()), Math.max(0, ms));
  return { signal: ctl.signal, [Symbol.dispose]: () => clearTimeout(timer) };
}

/**
 * Settles like `p`, unless `signal` aborts first: then rejects with the
 * signal's reason. The listener is removed either way; `p` keeps running
 * (the caller closes what it was waiting on).
 */
export function abortable<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    p.catch(() => {}); // nobody will await it now
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      p.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** Waits `ms`; rejects with the signal's reason if it aborts first (and clears the timer). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, Math.max(0, ms));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Polls `check` every `everyMs` until it returns a truthy value, or `signal` aborts (then rejects). */
export async function until<T>(
  check: () => T | null | undefined | false,
  everyMs: number,
  signal?: AbortSignal,
): Promise<T> {
  for (;;) {
    const v = check();
    if (v) return v;
    await sleep(everyMs, signal);
  }
}

/** Granularity of coarse deadlines ({@link Expiry}, {@link expireAfter}): one fires up to twice this late. */
export const COARSE_MS = 25;

/** Every registered {@link Expiry} of the process; one sweep checks them all. */
const registered = new Set<Expiry>();
let wheel: ReturnType<typeof setInterval> | undefined;
/** The sweep's clock: read once per tick, not once per deadline set. */
let coarseNow = 0;
/**
 * Sweeps that found nothing registered in a row. The sweep stops only after
 * {@link IDLE_SWEEPS} of them: a server between two requests (most of the time
 * at one client) would otherwise stop it and make a new interval timer for
 * the next connection, which costs more than the request's own code.
 */
let idleSweeps = 0;
/** Empty sweeps (about a second) after which the sweep stops until a deadline is set again. */
const IDLE_SWEEPS = 40;

function sweepCoarse(): void {
  coarseNow = performance.now();
  for (const e of registered) {
    if (e.at > coarseNow) continue;
    e.at = Infinity;
    e.fire();
  }
  if (registered.size > 0) idleSweeps = 0;
  else if (++idleSweeps >= IDLE_SWEEPS && wheel !== undefined) {
    clearInterval(wheel);
    wheel = undefined;
  }
}

/**
 * A coarse deadline that can be set again and again: one per connection,
 * re-armed for each phase (waiting, a head, a body, a write) instead of a
 * timer made and cleared for each. Setting it writes a number; one sweep
 * per process, every {@link COARSE_MS}, fires the ones due, and it runs only
 * while some Expiry is registered and about a second after (it never keeps
 * the process alive by itself). Times are read from the sweep's clock, so setting costs no clock
 * read: a deadline fires between `ms` and `ms + 2 × COARSE_MS` after it was
 * set (later if the event loop was blocked).
 * @example
 * ```ts
 * using expiry = new Expiry(() => conn.close());
 * expiry.arm(30_000);
 * await conn.read(buf);
 * expiry.disarm();
 * ```
 */
export class Expiry implements Disposable {
  /** When it fires (the sweep's clock), or Infinity when disarmed. */
  at = Infinity;
  readonly fire: () => void;

  constructor(fire: () => void) {
    this.fire = fire;
  }

  /** Fires `fire` about `ms` from now, unless disarmed or armed again first. */
  arm(ms: number): void {
    if (!registered.has(this)) {
      if (wheel === undefined) {
        coarseNow = performance.now();
        idleSweeps = 0;
        wheel = setInterval(sweepCoarse, COARSE_MS);
        Deno.unrefTimer(wheel);
      }
      registered.add(this);
    }
    this.at = coarseNow + COARSE_MS + ms;
  }

  /** Keeps it from firing (it stays registered, to be armed again cheaply). */
  disarm(): void {
    this.at = Infinity;
  }

  /** Disarms it and leaves the sweep. */
  cancel(): void {
    this.at = Infinity;
    registered.delete(this);
  }

  [Symbol.dispose](): void {
    this.cancel();
  }
}

/**
 * Calls `fire` once, about `ms` from now (see {@link Expiry} for how late),
 * unless cancelled first: a one-off {@link Expiry}. Every coarse deadline of
 * the process shares one timer, so a connection's read timeout (seconds long,
 * cancelled on nearly every read) costs a set insertion and deletion instead
 * of a timer of its own, which matters at thousands of reads per second.
 */
export function expireAfter(ms: number, fire: () => void): { cancel(): void } {
  const e = new Expiry(() => {
    registered.delete(e);
    fire();
  });
  e.arm(ms);
  return e;
}
