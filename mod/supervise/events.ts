/**
 * What wakes the watchdog's cycle, and the queue that holds it. Everything
 * that happens to the watchdog becomes an event here: a signal (its handler
 * only queues it, as gunicorn's arbiter does), a line a child wrote on its
 * control channel, a child's exit (after its last line), a child's deadline.
 * The cycle takes them in batches, in a fixed order (see {@link EVENT_ORDER}),
 * and handles each one itself: no supervision decision is taken anywhere
 * else, so reading the cycle says everything the watchdog does.
 * @module
 */
import type { Spawned } from "./child_spec.ts";
import type { SupervisedChild } from "./supervisor.ts";

/** The signals the watchdog acts on: stop, stop, reload, reopen the log file (not SIGUSR1: `signals.ts`). */
export const WATCHDOG_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR2"] as const;
/** One of {@link WATCHDOG_SIGNALS}. */
export type WatchdogSignal = (typeof WATCHDOG_SIGNALS)[number];

/** An event of one child: a control line, its process's end, its deadline. */
export type ChildEvent =
  | { readonly kind: "line"; readonly child: SupervisedChild; readonly proc: Spawned; readonly line: string }
  | {
    readonly kind: "exit";
    readonly child: SupervisedChild;
    readonly proc: Spawned;
    readonly status: Deno.CommandStatus;
  }
  | { readonly kind: "deadline"; readonly child: SupervisedChild; readonly token: number };

/** Anything the cycle handles. */
export type CycleEvent =
  | { readonly kind: "signal"; readonly signal: WatchdogSignal }
  /** Errors nobody caught kept coming: the watchdog stops cleanly (see `stray_errors.ts`). */
  | { readonly kind: "fault"; readonly reason: string }
  | ChildEvent;

/**
 * The order events of one batch are handled in: a stop first (nothing else
 * is worth starting then), then what children said (a `retiring` line is read
 * before the exit it announces), then their exits (the reaps), then their
 * deadlines. A stable sort keeps each child's own events in the order they came.
 */
export const EVENT_ORDER: Readonly<Record<CycleEvent["kind"], number>> = {
  fault: 0,
  signal: 1,
  line: 2,
  exit: 3,
  deadline: 4,
};

/**
 * The cycle's queue. {@link post} may be called from anywhere (a signal
 * handler, a pipe reader, a timer); {@link next} hands the cycle everything
 * queued so far.
 */
export class EventQueue implements Disposable {
  #events: CycleEvent[] = [];
  #wake: (() => void) | undefined;
  #listeners: [WatchdogSignal, () => void][] = [];

  /** Queues `event` and wakes the cycle. */
  post(event: CycleEvent): void {
    this.#events.push(event);
    this.#wake?.();
  }

  /** Turns the watchdog's signals into events, until disposed. */
  listen(): this {
    for (const signal of WATCHDOG_SIGNALS) {
      const fn = () => this.post({ kind: "signal", signal });
      Deno.addSignalListener(signal, fn);
      this.#listeners.push([signal, fn]);
    }
    return this;
  }

  /**
   * Waits until something is queued, or `timeoutMs` (the cycle's next timer)
   * has passed, and returns every event queued, in {@link EVENT_ORDER}. When
   * one event arrives, those that fall due with it (timers of the same
   * moment, pipes that became readable) get one turn of the event loop to
   * join the batch.
   */
  async next(timeoutMs: number): Promise<CycleEvent[]> {
    if (this.#events.length === 0 && timeoutMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => done(), timeoutMs);
        const done = () => {
          clearTimeout(timer);
          this.#wake = undefined;
          resolve();
        };
        this.#wake = () => {
          this.#wake = undefined;
          clearTimeout(timer);
          // One turn, not a timer: `setTimeout(…, 0)` waits a millisecond or more, on every wake-up
          // (a child's exit, its ready line), which a restart would pay in full.
          setImmediate(resolve);
        };
      });
    }
    const batch = this.#events;
    this.#events = [];
    return batch.sort((a, b) => EVENT_ORDER[a.kind] - EVENT_ORDER[b.kind]);
  }

  /** Stops listening for signals. */
  [Symbol.dispose](): void {
    for (const [signal, fn] of this.#listeners) Deno.removeSignalListener(signal, fn);
    this.#listeners = [];
  }
}
