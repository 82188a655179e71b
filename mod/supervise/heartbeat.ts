/**
 * The heartbeat of one child as the watchdog counts it: the pings it actually
 * sent, each with its sequence number and when it was sent, and the pongs
 * that answered them (a pong echoes the number of the ping it answers, and
 * answers every ping before it too).
 *
 * A child is silent for as long as its oldest unanswered ping has waited. A
 * child that answered everything it was sent is never silent, however long
 * the watchdog went without sending (the watchdog stopped, a paused machine):
 * liveness counts what was asked, not the time that passed. And time the
 * watchdog itself did not run is given back to the pings in flight
 * ({@link Heartbeat.resume}): their answers may be sitting unread in the pipe.
 * @module
 */

/** Pings kept in flight at most; older ones are answered by any later pong, so the oldest is what counts. */
const MAX_IN_FLIGHT = 256;

/**
 * The pings in flight to one child.
 * @example
 * ```ts
 * const hb = new Heartbeat();
 * const seq = hb.sent(now);           // "ping <seq>" written
 * hb.answered(seq);                   // "pong <seq>" read
 * hb.silentMs(now + 10) === 0;        // nothing in flight
 * ```
 */
export class Heartbeat {
  #seq = 0;
  /** Unanswered pings, oldest first: when sent, and the time their silence counts from. */
  #inFlight: { seq: number; sentAt: number; at: number }[] = [];
  #provenAt = -Infinity;

  /** A new process: nothing is in flight for it, and it has proven nothing yet. */
  reset(): void {
    this.#inFlight = [];
    this.#provenAt = -Infinity;
  }

  /** Records a ping sent at `now`; returns its sequence number. */
  sent(now: number): number {
    const seq = ++this.#seq;
    if (this.#inFlight.length < MAX_IN_FLIGHT) this.#inFlight.push({ seq, sentAt: now, at: now });
    return seq;
  }

  /** A pong for ping `seq` (NaN: every ping so far, as `ready` does) answers it and every earlier one. */
  answered(seq: number): void {
    const done = Number.isNaN(seq) ? this.#inFlight : this.#inFlight.filter((p) => p.seq <= seq);
    for (const p of done) this.#provenAt = Math.max(this.#provenAt, p.sentAt);
    this.#inFlight = Number.isNaN(seq) ? [] : this.#inFlight.filter((p) => p.seq > seq);
  }

  /** When the newest ping known to be answered was sent: the child's loop ran after that (-Infinity: none). */
  get provenAt(): number {
    return this.#provenAt;
  }

  /** How long the oldest unanswered ping has waited at `now` (0 when every ping was answered). */
  silentMs(now: number): number {
    const oldest = this.#inFlight[0];
    return oldest ? Math.max(0, now - oldest.at) : 0;
  }

  /** The watchdog did not run for `stalledMs`: the pings in flight get that time back. */
  resume(stalledMs: number): void {
    for (const p of this.#inFlight) p.at += stalledMs;
  }
}
