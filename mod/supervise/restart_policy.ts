/**
 * When a crashed child may start again: exponential backoff with jitter, a
 * per-child restart budget and a pool-wide one (sliding windows), and the
 * grace between SIGTERM and SIGKILL.
 * @module
 */

/** Restart policy. */
export interface RestartPolicy {
  /** First backoff after a quick failure, ms (the first restart is immediate). */
  readonly backoffStartMs: number;
  readonly backoffCapMs: number;
  /** A child that ran this long resets its backoff. */
  readonly stableMs: number;
  /** At most this many restarts within `budgetWindowMs`, else failed. */
  readonly budget: number;
  readonly budgetWindowMs: number;
  /** A failed child is tried again after this long. */
  readonly failedRetryMs: number;
  /** SIGTERM → SIGKILL grace when killing, ms. */
  readonly killGraceMs: number;
}

/** Defaults: 0 ms, then 50 ms doubling to 5 s, reset after 10 s; 5 restarts in 30 s, retry failed after 30 s. */
export const DEFAULT_POLICY: RestartPolicy = {
  backoffStartMs: 50,
  backoffCapMs: 5_000,
  stableMs: 10_000,
  budget: 5,
  budgetWindowMs: 30_000,
  failedRetryMs: 30_000,
  killGraceMs: 200,
};

/**
 * A sliding-window restart budget: at most `limit` restarts within `windowMs`.
 * One per child, and one shared by all workers (the pool's), so that workers
 * crashing in turn cannot add up to a storm that no single one of them shows.
 */
export class RestartBudget {
  #limit: number;
  #windowMs: number;
  #times: number[] = [];

  constructor(limit: number, windowMs: number) {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /** Restarts allowed within the window. */
  get limit(): number {
    return this.#limit;
  }

  /** The sliding window, ms. */
  get windowMs(): number {
    return this.#windowMs;
  }

  /** New limits (a reload): the restarts already recorded still count. */
  configure(limit: number, windowMs: number): void {
    this.#limit = limit;
    this.#windowMs = windowMs;
  }

  /** Restarts within the window as of `now`. */
  used(now: number): number {
    this.#times = this.#times.filter((t) => now - t < this.windowMs);
    return this.#times.length;
  }

  /** True when one more restart at `now` stays within the budget. */
  allows(now: number): boolean {
    return this.used(now) < this.limit;
  }

  /** Records a restart at `now`. */
  spend(now: number): void {
    this.#times.push(now);
  }
}

/**
 * The delay before restarting after the `quickFailures`-th failure in a row
 * that came before {@link RestartPolicy.stableMs}: none for the first, then
 * `backoffStartMs` doubling up to `backoffCapMs`, times a jitter in [0.5, 1.5)
 * so that children failing together do not restart together.
 */
export function backoffDelay(quickFailures: number, policy: RestartPolicy, random = Math.random): number {
  if (quickFailures <= 1) return 0;
  const base = Math.min(policy.backoffCapMs, policy.backoffStartMs * 2 ** (quickFailures - 2));
  return Math.round(base * (0.5 + random()));
}
