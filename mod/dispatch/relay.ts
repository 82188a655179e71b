/**
 * The dispatcher as a broker for its workers' data channel: whatever one
 * worker sends is relayed, unread, to every other worker, in the order it
 * came; and when a worker's link closes (its process died or stopped), the
 * others are told with a notice, so that they can clean up what it held. The
 * dispatcher does not know what the messages mean (chat events, today).
 * @module
 */
import type { WorkerLink } from "../link/worker_link.ts";
import type { PoolHooks, WorkerPool } from "./worker_pool.ts";

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
  return {
    onMessage: (from: WorkerLink, m: Uint8Array) => void pool().broadcast(m, from),
    onClosed: (gone: WorkerLink) => void pool().broadcast(linkClosedNotice(gone.id), gone),
  };
}
