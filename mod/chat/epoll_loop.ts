/**
 * One epoll set per process for the IRC port's sockets, and the loop that
 * waits on it. The wait (`epoll_wait`) is parked on one of the runtime's
 * threads as a non-blocking FFI call, so the event loop stays free; when it
 * returns, each ready descriptor's owner is told its event bits, which only
 * sets flags and resolves a waiting read or write (the work itself runs in
 * the owners' continuations, bounded there: `loop_slice.ts`). Then the loop
 * parks again: one wait, and one completion handed back to the event loop,
 * per wake-up, however many sockets it covers.
 *
 * Descriptors are registered edge-triggered (`EPOLLET`) for input and
 * output at once: an owner reads or writes until the kernel says EAGAIN,
 * then waits for the next edge. So nothing is re-registered (`epoll_ctl`)
 * as a connection alternates between reading and writing, and a socket
 * nobody is reading (a session held back by flood control) does not wake the
 * loop again and again.
 *
 * A busy loop also looks at the set itself: each slice of work (the hub's,
 * a flush's, the commands': `loop_slice.ts`) starts with
 * {@link EpollLoop.pollNow}, a zero-timeout `epoll_wait` on the loop's own
 * thread. Measured at 10,000 clients in one channel: while the loop was
 * busy, the parked wait's result reached JavaScript 60–250 ms after a
 * socket became ready although no turn lasted longer than 80 ms, and an
 * idle client's PING waited that long (round-trip p99 194–233 ms during the
 * JOIN storm, 213–376 ms during a mass QUIT); looked at from the slices,
 * 64 and 74 ms. Idle, the loop sleeps and the parked wait wakes it at once.
 *
 * Stopping never waits on the parked call: {@link EpollLoop.close} writes to
 * an eventfd in the set, and the wait returns at once.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { onBusySlice } from "./loop_slice.ts";
import { logger } from "../log.ts";

/** Something with a descriptor in the set. */
export interface EpollOwner {
  /** epoll reported `events` (`libc.EPOLL` bits) on its descriptor. */
  ready(events: number): void;
}

/** Ready descriptors taken per wake-up (more wait for the next one: the loop turns between). */
const MAX_EVENTS = 1024;
/** The parked wait's timeout: a safety net only (closing wakes it through the eventfd). */
const WAIT_MS = 1_000;

/** The epoll set and its waiting loop. */
export class EpollLoop {
  readonly #ep: number;
  readonly #wake: number;
  readonly #owners = new Map<number, EpollOwner>();
  #closed = false;
  readonly #loop: Promise<void>;
  readonly #unpoll: () => void;

  constructor() {
    this.#ep = libc.epollCreate();
    this.#wake = libc.eventFd();
    libc.epollCtl(this.#ep, "add", this.#wake, libc.EPOLL.IN);
    this.#loop = this.#run();
    this.#unpoll = onBusySlice(() => this.pollNow());
  }

  /** Watches `fd` (input, output, hang-up; edge-triggered) for `owner`. */
  add(fd: number, owner: EpollOwner): void {
    libc.epollCtl(
      this.#ep,
      "add",
      fd,
      libc.EPOLL.IN | libc.EPOLL.OUT | libc.EPOLL.RDHUP | libc.EPOLL.ET,
    );
    this.#owners.set(fd, owner);
  }

  /** Forgets `fd` (call before closing it: closing removes it from the set, and its number may come back). */
  remove(fd: number): void {
    this.#owners.delete(fd);
  }

  /** Descriptors watched. */
  get size(): number {
    return this.#owners.size;
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      let ready: { fd: number; events: number }[];
      try {
        ready = await libc.epollWait(this.#ep, MAX_EVENTS, WAIT_MS);
      } catch (err) {
        logger().error("chat: epoll wait failed: {err}", { err: String(err) });
        break;
      }
      this.#dispatch(ready);
    }
    libc.close(this.#ep);
    libc.close(this.#wake);
  }

  /**
   * Looks at the set now, on this thread (a zero timeout), and tells the
   * owners what is ready: called by a busy loop at the start of its slices
   * (`loop_slice.ts`), so readiness is seen within a turn even when the
   * parked wait's completion reaches the loop late.
   */
  pollNow(): void {
    if (!this.#closed) this.#dispatch(libc.epollWaitNow(this.#ep, MAX_EVENTS));
  }

  #dispatch(ready: { fd: number; events: number }[]): void {
    for (const { fd, events } of ready) {
      const owner = this.#owners.get(fd);
      if (!owner) continue; // the eventfd, or a descriptor closed since the wait returned
      try {
        owner.ready(events);
      } catch (err) {
        logger().error("chat: a socket's readiness failed: {err}", { err: String(err) });
      }
    }
  }

  /** Stops the loop (the parked wait returns at once); resolves once it has ended and the set is closed. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#unpoll();
      libc.write(this.#wake, new Uint8Array(new BigUint64Array([1n]).buffer));
    }
    await this.#loop;
  }
}
