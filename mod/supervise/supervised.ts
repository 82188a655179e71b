/**
 * The child side of supervision, what the dispatcher and every worker do
 * alike: die with the watchdog, leave Ctrl-C to it, and answer its heartbeats
 * from the main loop (the loop that serves clients, so a child that cannot
 * serve cannot answer).
 * @module
 */
import * as libc from "../sys/libc.ts";
import { dropSignal } from "../sys/signals.ts";
import { CannotBootError } from "../errors.ts";
import { ChildControl } from "../ipc/control.ts";
import type { SlotView } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { logger } from "../log.ts";

/**
 * How long the dispatcher, told to stop, waits for its client sessions to end
 * before it exits and closes what is left. The workers have stopped by then
 * (nothing a session could still ask for can be served), so this only lets
 * an answer being written go out. The watchdog's stop grace for the
 * dispatcher is this plus time to exit (`shutdown.ts`), so the dispatcher
 * ends on its own, never by SIGKILL.
 */
export const DISPATCHER_LINGER_MS = 500;

/**
 * Signals a terminal or an administrator may send to the whole process group
 * that only the watchdog acts on: SIGINT (it orchestrates the stop), SIGHUP
 * (reload), SIGUSR2 (reopen the log file). Children ignore them, as nginx's
 * workers do, instead of dying of their default action. SIGUSR1 is dropped by
 * every osps process (see `mod/sys/signals.ts`: it would open an inspector).
 */
const WATCHDOG_ONLY: readonly Deno.Signal[] = ["SIGINT", "SIGHUP"];

/**
 * Ties this process's life to the watchdog's: PR_SET_PDEATHSIG(SIGKILL), then
 * a check that the parent did not die before that call (the race the man page
 * warns about), and ignores the signals only the watchdog acts on.
 */
export function bindToParent(parentPid: number): void {
  for (const sig of WATCHDOG_ONLY) Deno.addSignalListener(sig, () => {});
  dropSignal("SIGUSR1");
  dropSignal("SIGUSR2");
  if (parentPid <= 0) return;
  libc.setParentDeathSignal(libc.SIG.SIGKILL);
  if (Deno.ppid !== parentPid) {
    throw new CannotBootError(`parent ${parentPid} is gone (ppid is ${Deno.ppid})`);
  }
}

/**
 * Runs one step of a role's start whose failure no restart can mend (the
 * instance's FIFOs missing, say): its error becomes {@link CannotBootError},
 * exit 100, so the watchdog does not restart the role in a loop.
 */
export function bootStep<T>(what: string, step: () => T): T {
  try {
    return step();
  } catch (err) {
    if (err instanceof CannotBootError) throw err;
    throw new CannotBootError(`cannot ${what}: ${(err as Error).message}`, { cause: err });
  }
}

/** Callbacks for the watchdog's orders. */
export interface Orders {
  onDrain(): void;
  onStop(): void;
}

/**
 * Starts answering the watchdog. Each ping stamps `heartbeat_at` in the slot
 * from the main loop. Losing the watchdog (stdin EOF) stops the process: the
 * kernel's PDEATHSIG normally got there first.
 */
export function answerWatchdog(slot: SlotView, clock: Clock, orders: Orders): ChildControl {
  // SIGTERM from outside (a process-group kill, an admin) is a graceful stop too.
  Deno.addSignalListener("SIGTERM", orders.onStop);
  const control = new ChildControl();
  control.run({
    onPing: () => slot.store("heartbeat_at", clock.now()),
    onDrain: orders.onDrain,
    onStop: orders.onStop,
    onOrphaned: () => {
      logger().warn("watchdog gone (control channel closed); exiting");
      orders.onStop();
    },
  }).catch(() => orders.onStop());
  return control;
}

/**
 * The last line of defence of a role: an error nobody caught (a bug, or a
 * runtime error in a callback) is logged and contained instead of ending the
 * process, so one client's connection can never stop the role. Tests check
 * that no such line is ever logged.
 */
export function containStrayErrors(): void {
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    logger().error("uncaught error (contained): {err}", { err: String(e.reason?.stack ?? e.reason) });
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    logger().error("uncaught error (contained): {err}", { err: String(e.error?.stack ?? e.message) });
  });
}
