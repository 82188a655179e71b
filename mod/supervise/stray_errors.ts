/**
 * The watchdog's last-resort error handler. An error nobody caught (a bug)
 * while handling one event, or thrown from a callback or a promise outside
 * the cycle, is logged with its stack and contained: the watchdog keeps
 * supervising. Its children keep serving whatever the watchdog's bookkeeping
 * went through, and ending the watchdog would end them all (they die with
 * it): one bug must not turn into an outage.
 *
 * But a watchdog that keeps failing cannot be said to supervise. Past
 * {@link STORM_LIMIT} such errors within {@link STORM_WINDOW_MS}, it stops
 * cleanly (every child stopped and reaped, shared memory and FIFOs removed)
 * and exits 111, temporary: a service manager starts a fresh one.
 * @module
 */
import { EXIT_TEMPORARY, OspsError } from "../errors.ts";
import { logger } from "../log.ts";
import type { EventQueue } from "./events.ts";

/** Errors within the window that make the watchdog stop. */
export const STORM_LIMIT = 10;
/** The window of {@link STORM_LIMIT}. */
export const STORM_WINDOW_MS = 10_000;

/** The watchdog stopped because errors nobody caught kept coming. */
export class WatchdogFault extends OspsError {
  override readonly exitCode = EXIT_TEMPORARY;
}

/**
 * Contains stray errors for as long as it is not disposed; a storm of them
 * posts a `fault` event, which the cycle answers with a clean stop.
 */
export class StrayErrors implements Disposable {
  readonly #events: EventQueue;
  readonly #now: () => number;
  #times: number[] = [];
  #faulted = false;
  readonly #onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    this.record("a promise", e.reason);
  };
  readonly #onError = (e: ErrorEvent) => {
    e.preventDefault();
    this.record("a callback", e.error ?? e.message);
  };

  constructor(events: EventQueue, now: () => number = () => performance.now()) {
    this.#events = events;
    this.#now = now;
    globalThis.addEventListener("unhandledrejection", this.#onRejection);
    globalThis.addEventListener("error", this.#onError);
  }

  /** Runs `fn` (the handling of one event or step, named `what`); an error from it is recorded, not thrown. */
  contain(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.record(what, err);
    }
  }

  /** Logs one stray error; the storm's one posts the `fault` event. */
  record(what: string, err: unknown): void {
    const now = this.#now();
    this.#times = this.#times.filter((t) => now - t < STORM_WINDOW_MS);
    this.#times.push(now);
    logger().error("uncaught error in {what} (contained; the watchdog keeps supervising): {err}", {
      what,
      err: String((err as Error)?.stack ?? err),
    });
    if (this.#times.length >= STORM_LIMIT && !this.#faulted) {
      this.#faulted = true;
      this.#events.post({
        kind: "fault",
        reason: `${this.#times.length} uncaught errors within ${STORM_WINDOW_MS / 1000} s`,
      });
    }
  }

  /** Stops containing. */
  [Symbol.dispose](): void {
    globalThis.removeEventListener("unhandledrejection", this.#onRejection);
    globalThis.removeEventListener("error", this.#onError);
  }
}
