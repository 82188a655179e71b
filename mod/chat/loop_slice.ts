/**
 * The chat's budget per turn of the event loop, {@link SLICE_MS}: the hub
 * applies events (`chat_hub.ts`), a flush writes queued output
 * (`flush_schedule.ts`), and the sessions run commands ({@link commandSlice}, shared
 * by every session of the process) each for at most that long, then let the
 * loop turn.
 *
 * The runtime hands this loop the completions of its I/O (a client's next
 * line, a socket that can take more output, the FIFOs) a bounded number per
 * turn. Measured at 10,000 clients in one channel: when thousands of
 * registrations and JOINs (each a synchronous SQLite transaction) ran in one
 * turn, turns lasted hundreds of milliseconds, and a completion waiting
 * behind others waited that long for each of their turns — an idle client's
 * PING was answered seconds later while no single step blocked for long.
 *
 * Each slice starts by looking for input ({@link sliceStarts}): a busy loop
 * sees a client's next line within the turn it arrived in.
 * @module
 */
import { setImmediate } from "node:timers";

/** Longest a turn applies events, writes output, or runs commands before the loop turns. */
export const SLICE_MS = 8;

let sliceStart = -1;
let polled = -1;
const pollers = new Set<() => void>();

/**
 * Registers `poll`, run when a slice of work starts (at most once a
 * millisecond): a source of input that the loop would otherwise hear of
 * late while it is busy (`epoll_loop.ts` says why). Returns the function
 * that removes it.
 */
export function onBusySlice(poll: () => void): () => void {
  pollers.add(poll);
  return () => pollers.delete(poll);
}

/** When the registered pollers last looked for input ({@link sliceStarts}). */
export function lastLook(): number {
  return polled;
}

/** A slice of work starts: the registered pollers look for input first (see {@link onBusySlice}). */
export function sliceStarts(now = performance.now()): void {
  if (now - polled < 1) return;
  polled = now;
  for (const poll of pollers) poll();
}

/** Resolves at once while this turn's slice lasts, else in the next turn. */
export function commandSlice(): Promise<void> | undefined {
  const now = performance.now();
  if (sliceStart < 0) {
    sliceStart = now;
    sliceStarts(now);
    setImmediate(() => (sliceStart = -1)); // a fresh slice next turn
    return undefined;
  }
  if (now - sliceStart <= SLICE_MS) return undefined;
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Runs `work` once this turn's slice has room, waiting as many turns as it
 * takes: for work that many tasks start in one wake-up (every session that
 * ends when thousands of connections close at once), where one wait would
 * let them all run together in the next turn. `work` starts right after the
 * look, with no await between: a look taken before an await lets every task
 * woken in one turn pass before any of them has done its work.
 */
export async function inSlice<T>(work: () => T): Promise<T> {
  for (let wait = commandSlice(); wait; wait = commandSlice()) await wait;
  return work();
}
