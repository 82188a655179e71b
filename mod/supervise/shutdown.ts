/**
 * The order in which an instance stops, stepped by the watchdog's cycle (the
 * cycle keeps reaping children and escalating kills meanwhile):
 *
 * 1. the dispatcher drains (no new clients; queued ones get `503`);
 * 2. workers get until `--grace-ms` to finish what they hold;
 * 3. the workers are stopped (SIGKILL after what is left of the grace, at
 *    least {@link MIN_WORKER_GRACE_MS});
 * 4. then the dispatcher (workers report "done" to it until the end). It
 *    gives its remaining sessions {@link DISPATCHER_LINGER_MS} and exits on
 *    its own; SIGKILL comes only after {@link DISPATCHER_STOP_GRACE_MS}.
 *
 * Why this order (seed 003, question 2.b): the parent stops last. It must be
 * alive to reap each child it started, or the children become zombies until
 * init adopts them.
 *
 * When the instance never got ready (nothing can serve), every child is
 * killed at once instead.
 * @module
 */
import { holdsLiveTicket } from "../link/ticket_reports.ts";
import type { Clock } from "../sys/clock.ts";
import { DISPATCHER_LINGER_MS } from "./supervised.ts";
import type { SupervisedChild } from "./supervisor.ts";

/** Least stop grace a worker gets, even when `--grace-ms` was spent waiting. */
export const MIN_WORKER_GRACE_MS = 500;
/** The dispatcher's stop grace: its linger, and time to exit. It must exit on its own well within it. */
export const DISPATCHER_STOP_GRACE_MS = DISPATCHER_LINGER_MS + 1_500;
/** How often busy workers are looked at while the stop waits for them. */
const BUSY_POLL_MS = 20;

type Phase = "draining" | "workers" | "dispatcher" | "killing" | "done";

/** One stop of an instance. */
export class Shutdown {
  readonly reason: string;
  readonly #dispatcher: SupervisedChild | undefined;
  readonly #workers: readonly SupervisedChild[];
  readonly #clock: Clock;
  readonly #deadline: number;
  #phase: Phase;

  /** Begins: drains the dispatcher, or (`kill`) kills every child at once. */
  constructor(
    reason: string,
    children: { dispatcher: SupervisedChild | undefined; workers: readonly SupervisedChild[] },
    options: { graceMs: number; clock: Clock; kill: boolean },
  ) {
    this.reason = reason;
    this.#dispatcher = children.dispatcher;
    this.#workers = children.workers;
    this.#clock = options.clock;
    this.#deadline = this.#clock.now() + options.graceMs;
    if (options.kill) {
      for (const c of this.#all()) void c.abort();
      this.#phase = "killing";
    } else {
      this.#dispatcher?.order("drain");
      this.#phase = "draining";
    }
  }

  #all(): SupervisedChild[] {
    return this.#dispatcher ? [this.#dispatcher, ...this.#workers] : [...this.#workers];
  }

  /** When the cycle should look again at the latest (while waiting for busy workers). */
  get wakeBy(): number {
    return this.#phase === "draining" ? this.#clock.now() + BUSY_POLL_MS : Infinity;
  }

  /** Moves the stop on; true once every child is reaped. */
  step(): boolean {
    const now = this.#clock.now();
    if (this.#phase === "draining") {
      if (this.#workers.some(busy) && now < this.#deadline) return false;
      const grace = Math.max(MIN_WORKER_GRACE_MS, this.#deadline - now);
      for (const w of this.#workers) void w.stop(grace);
      this.#phase = "workers";
    }
    if (this.#phase === "workers") {
      if (!this.#workers.every(gone)) return false;
      void this.#dispatcher?.stop(DISPATCHER_STOP_GRACE_MS);
      this.#phase = "dispatcher";
    }
    if (this.#phase === "dispatcher" || this.#phase === "killing") {
      if (!this.#all().every(gone)) return false;
      this.#phase = "done";
    }
    return true;
  }
}

/** A worker holding a ticket or running a request. */
function busy(w: SupervisedChild): boolean {
  return w.pid > 0 && holdsLiveTicket(w.spec.slot);
}

/** No process, and none will start (stopped, or never started). */
function gone(c: SupervisedChild): boolean {
  return c.state === "stopped" || c.state === "none";
}
