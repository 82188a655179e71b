/**
 * Why a child's process ended, as one number (the slot's `last_exit`): an
 * exit code (0–255), a signal (1000 + its number), or a kill by the watchdog
 * for a reason of its own (2000 and up). Shared by the watchdog, which writes
 * it, and by the dispatcher and `osps status`, which explain it.
 * @module
 */
import { EXIT_CANNOT_BOOT } from "../errors.ts";

/** Encodings of `last_exit` in the slot. */
export const ExitReason = {
  SIGNAL_BASE: 1000,
  /** Killed: no heartbeat while idle (the worker itself hung). */
  HANG: 2000,
  /** Killed: a request ran past its deadline. */
  DEADLINE: 2001,
  /** Killed: the dispatcher's probe through its pipes went unanswered. */
  WEDGED: 2002,
  /** Retired after `--max-requests` (not a failure). */
  RECYCLED: 2003,
  /** Killed: no heartbeat while a request ran (the request blocked its event loop). */
  HANG_IN_REQUEST: 2004,
  /** A remote worker's link was lost (its host went down, or the network between): fate unknown. */
  LINK_LOST: 2005,
  /** Replaced by a reload: a new worker serves in its place, this one finished its work and exited (not a failure). */
  REPLACED: 2006,
  /** Replaced for going over `--max-worker-rss-mb`, the same graceful way (not a failure). */
  REPLACED_RSS: 2007,
  NONE: -1,
} as const;

/** An end that was planned (a retirement, a replacement): not counted as a restart. */
export function plannedEnd(code: number): boolean {
  return code === ExitReason.RECYCLED || code === ExitReason.REPLACED || code === ExitReason.REPLACED_RSS;
}

const SIGNALS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

/** The `last_exit` of a process ended by `sig`. */
export function signalReason(sig: Deno.Signal): number {
  return ExitReason.SIGNAL_BASE + (SIGNALS[sig] ?? 0);
}

/** True when the request being served, not the worker, caused the kill (no crash budget is spent on it). */
export function requestCaused(code: number): boolean {
  return code === ExitReason.DEADLINE || code === ExitReason.HANG_IN_REQUEST;
}

/** Text and metric label of the codes that are not a plain exit code or signal. */
const NAMED: Readonly<Record<number, { text: string; label: string }>> = {
  [ExitReason.HANG]: { text: "killed: hung (no heartbeat)", label: "hang" },
  [ExitReason.HANG_IN_REQUEST]: {
    text: "killed: a request blocked it (no heartbeat)",
    label: "request_hang",
  },
  [ExitReason.DEADLINE]: { text: "killed: request deadline", label: "deadline" },
  [ExitReason.WEDGED]: { text: "killed: pipe wedged (probe unanswered)", label: "wedged" },
  [ExitReason.RECYCLED]: { text: "recycled (max requests)", label: "recycled" },
  [ExitReason.LINK_LOST]: { text: "link lost (host down or network cut)", label: "link_lost" },
  [ExitReason.REPLACED]: { text: "replaced (reload)", label: "reload" },
  [ExitReason.REPLACED_RSS]: { text: "replaced (over --max-worker-rss-mb)", label: "rss" },
  [EXIT_CANNOT_BOOT]: { text: "cannot boot (exit 100)", label: "cannot_boot" },
};

/** Human text for a `last_exit` value. */
export function exitReasonText(code: number): string {
  if (code === ExitReason.NONE) return "-";
  return NAMED[code]?.text ??
    (code >= ExitReason.SIGNAL_BASE ? `signal ${code - ExitReason.SIGNAL_BASE}` : `exit ${code}`);
}

/**
 * A short, bounded label for a `last_exit` value (the `reason` of
 * `osps_worker_restarts_total`): one of `exit`, `signal`, `cannot_boot`,
 * `hang`, `request_hang`, `deadline`, `wedged`, `recycled`, `link_lost`, `reload`, `rss`. A new
 * {@link ExitReason} gets its text and label in the table above.
 */
export function exitReasonLabel(code: number): string {
  return NAMED[code]?.label ?? (code >= ExitReason.SIGNAL_BASE ? "signal" : "exit");
}

/**
 * What a client is told when its worker died under its request, e.g.
 * `worker 1 was killed: "fib 45" blocked it past the 3000 ms hang timeout`.
 * With `started` false the worker died holding the ticket, before the request
 * reached it: nothing ran. With a `culprit`, another request on the same
 * worker caused the kill, and the text says so.
 */
export function lostWorkText(
  worker: string,
  request: string,
  code: number,
  limitMs: number,
  started = true,
  culprit?: string,
): string {
  if (!started) {
    return `${worker} ended before your request reached it (${exitReasonText(code)}); nothing ran`;
  }
  const what = JSON.stringify(request);
  if (culprit !== undefined && requestCaused(code)) {
    const why = code === ExitReason.DEADLINE
      ? `ran past its ${limitMs} ms deadline`
      : `blocked it past the ${limitMs} ms hang timeout`;
    return `${worker} was killed while running ${what}: another request (${JSON.stringify(culprit)}) ${why}`;
  }
  switch (code) {
    case ExitReason.HANG_IN_REQUEST:
      return `${worker} was killed: ${what} blocked it past the ${limitMs} ms hang timeout`;
    case ExitReason.DEADLINE:
      return `${worker} was killed: ${what} ran past its ${limitMs} ms deadline`;
    case ExitReason.HANG:
    case ExitReason.WEDGED:
      return `${worker} was killed while running ${what} (${exitReasonText(code).slice(8)})`;
    case ExitReason.LINK_LOST:
      return `${worker} lost its link while running ${what} (host down or network cut); it may have run`;
  }
  return `${worker} ended while running ${what} (${exitReasonText(code)})`;
}
