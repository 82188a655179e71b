/**
 * When queued output goes out, for every IRC connection of this process at
 * once (`irc_conn.ts` queues; this decides when each connection writes).
 * @module
 */
import { setImmediate } from "node:timers";
import { SLICE_MS, sliceStarts } from "./loop_slice.ts";

/** A connection with output queued. */
export interface Flushed {
  /** Writes what is queued (what the socket takes, or one asynchronous write). */
  writeQueued(): void;
}

/** Longest a flush waits behind the previous one. */
const MAX_PACE_MS = 50;

/**
 * When queued bytes go out, for every connection of this process at once.
 * Idle, at the end of this turn (one microtask for all of them: a message to
 * 5,000 members schedules one flush). Busy, flushes are paced by what the
 * last one cost: after a flush that took T ms, the next waits T ms (at most
 * {@link MAX_PACE_MS}). So under a storm — thousands of JOINs to a channel
 * of thousands — each connection gets one write carrying everything queued
 * for it meanwhile instead of one per line, and writing never takes the
 * whole loop.
 *
 * A connection's own replies (a command's answer: `IrcConn.send`) go
 * out before other users' events in every slice: with synchronous writes a
 * pass over 5,000 members takes tens of milliseconds of real writing, and a
 * PONG or a JOIN's 366 queued behind such a pass waited for all of it.
 */
const dirty = new Set<Flushed>();
/** Connections with their own replies queued: written first in each slice. */
const replying = new Set<Flushed>();
const FLUSH_ORDER = [replying, dirty];
let flushAt = 0;
let scheduled = false;

/**
 * Asks for `conn`'s queued output to be written at the next flush; `reply`:
 * it is (or includes) a command's own reply, written before other users'
 * events in each slice.
 */
export function flushSoon(conn: Flushed, reply: boolean): void {
  (reply ? replying : dirty).add(conn);
  scheduleFlush();
}

function scheduleFlush(): void {
  if (scheduled) return;
  scheduled = true;
  const wait = flushAt - performance.now();
  if (wait <= 0) queueMicrotask(flushDirty);
  else setTimeout(flushDirty, wait);
}

function flushDirty(): void {
  scheduled = false;
  const start = performance.now();
  sliceStarts(start);
  let n = 0;
  slice: for (const set of FLUSH_ORDER) {
    for (const c of set) {
      // A long flush is cut into slices: the loop turns between them (loop_slice.ts says why).
      // Checked before every write: one write of a storm's backlog costs up to a millisecond, and
      // sixteen of them between looks overran the slice by as much again.
      if (++n > 1 && performance.now() - start > SLICE_MS) break slice;
      set.delete(c);
      c.writeQueued();
    }
  }
  const end = performance.now();
  flushAt = end + Math.min(end - start, MAX_PACE_MS);
  if (dirty.size > 0 || replying.size > 0) {
    scheduled = true;
    setImmediate(flushDirty); // the rest in the next turn
  }
}
