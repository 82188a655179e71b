/**
 * The supervision state machine of one child (after s6's `s6-supervise`):
 * every state, every event, and the table `state × event → (next state,
 * action)` that the supervisor only looks up and carries out. The slot's
 * `sup_state` in shared memory mirrors the state for `osps status`.
 *
 * Each child has one deadline at a time, whose meaning depends on the state:
 * the boot timeout while starting, the SIGKILL escalation while hung or
 * stopping, the restart time in backoff and failed. Its expiry is the event
 * `timer`.
 * @module
 */

/** Supervision states (lower-case names of `SupState`). */
export type State =
  | "none"
  | "starting"
  | "ready"
  | "replaced"
  | "hung"
  | "stopping"
  | "backoff"
  | "failed"
  | "stopped";

/**
 * Events. The process's end is classified before it becomes an event:
 * - `exit`: it crashed or was killed for its own fault (spends the restart budget);
 * - `exit_request`: it was killed because of the request it ran (no budget spent);
 * - `exit_retired`: it drained itself and exited 0 (`--max-requests`; not a failure);
 * - `exit_over_budget`: a failure past its budget (or the pool's);
 * - `cannot_boot`: it exited 100 (port taken, bad configuration);
 * - `exit_replaced`: it had been replaced (a new process serves in its place): however it ended, it is not restarted.
 *
 * `replace` tells a running child that a new process has taken its place
 * (reload, memory limit): it finishes its work and exits, and keeps being
 * heartbeaten and held to its request deadlines meanwhile. "Replaced" is the
 * one word for this, in the state, the exit reason, logs, status and metrics.
 */
export type Event =
  | "spawn"
  | "ready"
  | "hang"
  | "deadline"
  | "wedged"
  | "timer"
  | "exit"
  | "exit_request"
  | "exit_retired"
  | "exit_over_budget"
  | "cannot_boot"
  | "exit_replaced"
  | "replace"
  | "stop"
  | "abort";

/** What the supervisor does on a transition. */
export type Action =
  /** Start the process; deadline: the boot timeout. */
  | "spawn"
  /** SIGTERM (SIGKILL at once if it is stopped); deadline: the kill grace. */
  | "kill"
  /** SIGKILL now. */
  | "escalate"
  /** Send "stop" on the control channel; deadline: the stop grace, then SIGKILL. */
  | "order_stop"
  /** Send "drain" on the control channel; deadline: the grace a replaced child has to finish, then a stop. */
  | "order_drain"
  /** Restart after the policy's backoff (the first quick failure restarts at once). */
  | "restart_later"
  /** Restart at once, without spending the budget. */
  | "restart_now"
  /** Retry after the failed-retry delay. */
  | "retry_later"
  /** Clear the deadline, nothing else. */
  | "none";

/** One entry of the table. */
export interface Transition {
  readonly to: State;
  readonly action: Action;
}

const t = (to: State, action: Action): Transition => ({ to, action });

/** A process's end, in each state where one can happen. */
const ENDS = {
  exit: t("backoff", "restart_later"),
  exit_request: t("backoff", "restart_now"),
  exit_retired: t("backoff", "restart_now"),
  exit_over_budget: t("failed", "retry_later"),
  cannot_boot: t("failed", "retry_later"),
  exit_replaced: t("stopped", "none"),
} as const;

/** The whole state machine. A missing entry means the event is ignored in that state. */
export const TRANSITIONS: Readonly<Record<State, Partial<Record<Event, Transition>>>> = {
  none: {
    spawn: t("starting", "spawn"),
    replace: t("stopped", "none"),
    stop: t("stopped", "none"),
    abort: t("stopped", "none"),
  },
  starting: {
    ready: t("ready", "none"),
    timer: t("hung", "kill"),
    ...ENDS,
    replace: t("replaced", "order_drain"),
    stop: t("stopping", "order_stop"),
    abort: t("stopping", "escalate"),
  },
  ready: {
    hang: t("hung", "kill"),
    deadline: t("hung", "kill"),
    wedged: t("hung", "kill"),
    ...ENDS,
    replace: t("replaced", "order_drain"),
    stop: t("stopping", "order_stop"),
    abort: t("stopping", "escalate"),
  },
  // A new process serves in its place: it finishes its work, still supervised like a ready child; never restarted.
  replaced: {
    hang: t("hung", "kill"),
    deadline: t("hung", "kill"),
    wedged: t("hung", "kill"),
    timer: t("stopping", "order_stop"),
    ...ENDS,
    stop: t("stopping", "order_stop"),
    abort: t("stopping", "escalate"),
  },
  // Already being killed: a stop keeps the kill going (and its escalation).
  hung: {
    timer: t("hung", "escalate"),
    ...ENDS,
    stop: t("stopping", "kill"),
    abort: t("stopping", "escalate"),
  },
  backoff: {
    timer: t("starting", "spawn"),
    replace: t("stopped", "none"),
    stop: t("stopped", "none"),
    abort: t("stopped", "none"),
  },
  failed: {
    timer: t("starting", "spawn"),
    replace: t("stopped", "none"),
    stop: t("stopped", "none"),
    abort: t("stopped", "none"),
  },
  stopping: {
    timer: t("stopping", "escalate"),
    exit: t("stopped", "none"),
    exit_request: t("stopped", "none"),
    exit_retired: t("stopped", "none"),
    exit_over_budget: t("stopped", "none"),
    cannot_boot: t("stopped", "none"),
    exit_replaced: t("stopped", "none"),
    abort: t("stopping", "escalate"),
  },
  // A stopped slot may be started again (a spare slot taking a worker's place).
  stopped: { spawn: t("starting", "spawn") },
};

/** The transition for `event` in `state`, or null when the event does not apply. */
export function transition(state: State, event: Event): Transition | null {
  return TRANSITIONS[state][event] ?? null;
}

/** The table as Markdown (states down, events across), for docs and for people reading a log. */
export function transitionTable(): string {
  const events = [...new Set(Object.values(TRANSITIONS).flatMap((row) => Object.keys(row)))] as Event[];
  const head = `| state \\ event | ${events.join(" | ")} |`;
  const rule = `| --- | ${events.map(() => "---").join(" | ")} |`;
  const rows = (Object.keys(TRANSITIONS) as State[]).map((s) =>
    `| ${s} | ${
      events.map((e) => (TRANSITIONS[s][e] ? `${TRANSITIONS[s][e]!.to} / ${TRANSITIONS[s][e]!.action}` : ""))
        .join(" | ")
    } |`
  );
  return [head, rule, ...rows].join("\n");
}
