/**
 * The supervision state machine of one child (after s6): every state, every
 * event, and the table `state × event → next state` that the watchdog drives.
 * The slot's `sup_state` in shared memory mirrors it for `osps status`; exit
 * reasons are encoded in the slot's `last_exit`.
 * @module
 */
import { EXIT_CANNOT_BOOT } from "../errors.ts";

/** Supervision states (lower-case names of {@link SupState}). */
export type State = "none" | "starting" | "ready" | "hung" | "stopping" | "backoff" | "failed" | "stopped";
/** Events that move a child between states. */
export type Event =
  | "spawn"
  | "ready"
  | "hang"
  | "deadline"
  | "wedged"
  | "exit"
  | "cannot_boot"
  | "over_budget"
  | "restart"
  | "retry"
  | "stop";

/** The whole state machine. A missing entry means the event is ignored in that state. */
export const TRANSITIONS: Readonly<Record<State, Partial<Record<Event, State>>>> = {
  none: { spawn: "starting", stop: "stopped" },
  starting: { ready: "ready", hang: "hung", exit: "backoff", cannot_boot: "failed", stop: "stopping" },
  ready: {
    hang: "hung",
    deadline: "hung",
    wedged: "hung",
    exit: "backoff",
    cannot_boot: "failed",
    stop: "stopping",
  },
  hung: { exit: "backoff", stop: "stopping" },
  backoff: { restart: "starting", over_budget: "failed", stop: "stopped" },
  failed: { retry: "starting", stop: "stopped" },
  stopping: { exit: "stopped" },
  stopped: {},
};

/** Next state for `event` in `state`, or null when the event does not apply. */
export function transition(state: State, event: Event): State | null {
  return TRANSITIONS[state][event] ?? null;
}

/** Encodings of `last_exit` in the slot. */
export const ExitReason = {
  SIGNAL_BASE: 1000,
  HANG: 2000,
  DEADLINE: 2001,
  WEDGED: 2002,
  RECYCLED: 2003,
  NONE: -1,
} as const;

/** Human text for a `last_exit` value. */
export function exitReasonText(code: number): string {
  if (code === ExitReason.NONE) return "-";
  if (code === ExitReason.HANG) return "killed: hung (no heartbeat)";
  if (code === ExitReason.DEADLINE) return "killed: request deadline";
  if (code === ExitReason.WEDGED) return "killed: pipe wedged (probe unanswered)";
  if (code === ExitReason.RECYCLED) return "recycled (max requests)";
  if (code === EXIT_CANNOT_BOOT) return "cannot boot (exit 100)";
  if (code >= ExitReason.SIGNAL_BASE) return `signal ${code - ExitReason.SIGNAL_BASE}`;
  return `exit ${code}`;
}
