/**
 * What every supervised child (dispatcher, worker) does the same way: die with
 * its watchdog, leave Ctrl-C to the watchdog, answer heartbeats from its main
 * loop, listen (or fail to boot with a clear cause), and track its open
 * connections so a drain can wait for them.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { CannotBootError } from "../errors.ts";
import { ChildControl } from "../ipc/control.ts";
import type { SlotView } from "../ipc/shm.ts";
import { logger } from "../log.ts";

/**
 * Ties this process's life to the watchdog's: PR_SET_PDEATHSIG(SIGKILL), then
 * a check that the parent did not die before that call (the race the man page
 * warns about). SIGINT from a terminal reaches the whole process group: the
 * watchdog orchestrates the stop, so children ignore it.
 */
export function bindToParent(parentPid: number): void {
  Deno.addSignalListener("SIGINT", () => {});
  if (parentPid <= 0) return;
  libc.setParentDeathSignal(libc.SIG.SIGKILL);
  if (Deno.ppid !== parentPid) {
    throw new CannotBootError(`parent ${parentPid} is gone (ppid is ${Deno.ppid})`);
  }
}

/** Listens on TCP; an address in use or denied becomes {@link CannotBootError} (no restart loop). */
export function listenOrFail(host: string, port: number, what: string): Deno.TcpListener {
  try {
    return Deno.listen({ hostname: host, port, transport: "tcp" });
  } catch (err) {
    const why = err instanceof Deno.errors.AddrInUse
      ? "address already in use"
      : err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (err as Error).message;
    throw new CannotBootError(`${what} cannot listen on ${host}:${port}: ${why}`, { cause: err });
  }
}

/** Callbacks for the watchdog's orders. */
export interface Orders {
  onDrain(): void;
  onStop(): void;
}

/**
 * Starts answering the watchdog. Each ping stamps `heartbeat_ms` in the slot
 * from the main loop. Losing the watchdog (stdin EOF) aborts the process: the
 * kernel's PDEATHSIG normally got there first.
 */
export function answerWatchdog(slot: SlotView, orders: Orders): ChildControl {
  // SIGTERM from outside (a process-group kill, an admin) is a graceful stop too.
  Deno.addSignalListener("SIGTERM", orders.onStop);
  const control = new ChildControl();
  control.run({
    onPing: () => slot.store("heartbeat_ms", Date.now()),
    onDrain: orders.onDrain,
    onStop: orders.onStop,
    onOrphaned: () => {
      logger().warn("watchdog gone (control channel closed); exiting");
      orders.onStop();
    },
  }).catch(() => orders.onStop());
  return control;
}

/** Counts open connections and lets a drain wait for them to end. */
export class ConnectionSet {
  #open = 0;
  #waiters: Array<() => void> = [];

  /** Number of connections being served. */
  get size(): number {
    return this.#open;
  }

  /** Runs `serve` as one tracked connection; its errors are logged, never thrown. */
  track(serve: () => Promise<void>): void {
    this.#open++;
    serve().catch((err) => logger().error("connection failed: {err}", { err: String(err) })).finally(() => {
      this.#open--;
      if (this.#open === 0) { for (const w of this.#waiters.splice(0)) w(); }
    });
  }

  /** Resolves when no connection is open, or after `timeoutMs`. */
  idle(timeoutMs: number): Promise<void> {
    if (this.#open === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.#waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

/** Accepts until the listener closes, handing each connection to `serve`. */
export async function acceptLoop(
  listener: Deno.TcpListener,
  conns: ConnectionSet,
  serve: (conn: Deno.TcpConn) => Promise<void>,
): Promise<void> {
  try {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      conns.track(() => serve(conn));
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.BadResource)) throw err;
  }
}
