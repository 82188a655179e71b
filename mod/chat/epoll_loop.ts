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
 * The parked wait serves an idle process only. Once something was ready,
 * the loop looks at the set itself — a zero-timeout `epoll_wait` on its own
 * thread ({@link EpollLoop.pollNow}) every {@link TICK_MS} and as each slice
 * of work starts (`loop_slice.ts`) — and parks no wait until {@link IDLE_MS}
 * pass with nothing ready. Measured at 10,000 clients in one channel, one
 * PING at a time on an idle connection: with a wait parked while the loop
 * was busy, the PING's readiness reached JavaScript 100–550 ms after it was
 * sent although no turn lasted 60 ms (the parked wait had taken the edge,
 * and its result came back late; a plain Deno echo server on the same
 * machine answered within 13 ms meanwhile): PING round-trip p99 304 ms during
 * the JOIN storm, 314 ms in the mass QUIT, 435 ms when everyone left at once;
 * looked at from the loop's own thread, 43, 68 and 98 ms. Idle, the loop
 * sleeps and the parked wait wakes it at once.
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
/**
 * While active, how often the loop's own thread looks at the set (5 ms
 * added 2 ms to a lone client's round trip; 2 ms adds under 1).
 */
const TICK_MS = 2;
/** Nothing ready for this long: the parked wait takes over again. */
const IDLE_MS = 1_000;
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
  /** When a look at the set last found something ready. */
  #activeAt = -Infinity;

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
      if (ready.length > 0) await this.#pollWhileActive();
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
    if (this.#closed) return;
    const ready = libc.epollWaitNow(this.#ep, MAX_EVENTS);
    if (ready.length > 0) this.#activeAt = performance.now();
    this.#dispatch(ready);
  }

  /**
   * While sockets keep becoming ready, the set is looked at from the loop's
   * own thread (every {@link TICK_MS}, and as each slice starts) and no wait
   * is parked; once {@link IDLE_MS} pass with nothing ready, the parked wait
   * takes over again.
   */
  #pollWhileActive(): Promise<void> {
    this.#activeAt = performance.now();
    return new Promise((resolve) => {
      const tick = setInterval(() => {
        this.pollNow();
        if (this.#closed || performance.now() - this.#activeAt > IDLE_MS) {
          clearInterval(tick);
          resolve();
        }
      }, TICK_MS);
    });
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
