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

/** Granularity of {@link expireAfter}: a coarse deadline fires up to this late. */
export const COARSE_MS = 25;

interface Coarse {
  readonly at: number;
  readonly fire: () => void;
}
const coarse = new Set<Coarse>();
let wheel: ReturnType<typeof setInterval> | undefined;

function sweepCoarse(): void {
  const now = performance.now();
  for (const e of coarse) {
    if (e.at > now) continue;
    coarse.delete(e);
    e.fire();
  }
  if (coarse.size === 0 && wheel !== undefined) {
    clearInterval(wheel);
    wheel = undefined;
  }
}

/**
 * Calls `fire` once, about `ms` from now (up to {@link COARSE_MS} late),
 * unless cancelled first. Every coarse deadline of the process shares one
 * timer, which runs only while some are pending (it is not re-armed for each
 * one, and it never keeps the process alive by itself): a connection's read
 * timeout (seconds long, cancelled on nearly every read) then costs a set
 * insertion and deletion instead of a timer of its own, which matters at
 * thousands of reads per second.
 */
export function expireAfter(ms: number, fire: () => void): { cancel(): void } {
  const e: Coarse = { at: performance.now() + ms, fire };
  coarse.add(e);
  if (wheel === undefined) {
    wheel = setInterval(sweepCoarse, COARSE_MS);
    // It stops by itself at the first tick that finds nothing pending; it keeps no process alive meanwhile.
    Deno.unrefTimer(wheel);
  }
  return { cancel: () => void coarse.delete(e) };
}
