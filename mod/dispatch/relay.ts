/**
 * The dispatcher as a broker for its workers' data channel: whatever one
 * worker sends is relayed, unread, to every other worker, in the order it
 * came; and when a worker's link closes (its process died or stopped), the
 * others are told with a notice, so that they can clean up what it held. The
 * dispatcher does not know what the messages mean (chat events, today).
 *
 * A worker that does not read (stopped, or slower than the others write)
 * fills its link's backlog; what it cannot take is dropped, and the log says
 * so (at most every {@link DROP_LOG_MS} per worker, with the count): the
 * messages are numbered by their senders, so the chat worker sees the gap
 * and reads what it missed from the store (docs/CHAT.md, "late, never
 * lost").
 * @module
 */
import type { WorkerLink } from "../link/worker_link.ts";
import { logger } from "../log.ts";
import type { PoolHooks, WorkerPool } from "./worker_pool.ts";

/** The least time between two log lines about one worker's dropped relays. */
export const DROP_LOG_MS = 5_000;

/** First byte of a notice from the dispatcher itself (workers' messages are JSON: "[" or "{" first). */
const NOTICE = 0x01;
const LINK_CLOSED = 0x63; // "c"

/** The notice "worker `id`'s link closed". */
export function linkClosedNotice(id: number): Uint8Array {
  return Uint8Array.of(NOTICE, LINK_CLOSED, id & 0xff);
}

/** Reads a dispatcher notice; null for a worker's message. */
export function decodeLinkNotice(m: Uint8Array): { worker: number } | null {
  return m.length === 3 && m[0] === NOTICE && m[1] === LINK_CLOSED ? { worker: m[2]! } : null;
}

/** Pool hooks that make the dispatcher relay between its workers (`pool` is resolved when called). */
export function relayHooks(pool: () => WorkerPool): Pick<PoolHooks, "onMessage" | "onClosed"> {
  /** Per worker id: relays dropped since the last log line about it, and when that line was written. */
  const dropped = new Map<number, { n: number; loggedAt: number }>();
  const refused = (l: WorkerLink) => {
    const d = dropped.get(l.id) ?? { n: 0, loggedAt: -Infinity };
    dropped.set(l.id, d);
    d.n++;
    const now = performance.now();
    if (now - d.loggedAt < DROP_LOG_MS) return;
    logger().warn(
      "worker {id} did not take {n} relayed message(s): its link's backlog is full (it is stopped or not reading); " +
        "it reads what it missed from the store when it sees the gap",
      { id: l.id, n: d.n },
    );
    d.n = 0;
    d.loggedAt = now;
  };
  return {
    onMessage: (from: WorkerLink, m: Uint8Array) => void pool().broadcast(m, from, refused),
    onClosed: (gone: WorkerLink) => void pool().broadcast(linkClosedNotice(gone.id), gone, refused),
  };
}
