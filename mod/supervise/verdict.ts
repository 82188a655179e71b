/**
 * Whether a running child must be killed, and why: the three verdicts of a
 * heartbeat (after s6's and gunicorn's: liveness proven from the child's own
 * loop, deadlines held by the supervisor).
 *
 * - hung: a ping it was sent has waited past the hang timeout (the request
 *   whose service holds the worker's loop, if one does, is blamed for it);
 * - deadline: one of a worker's requests has run past its deadline (blamed);
 * - wedged: the dispatcher's probe through the worker's FIFO pair went
 *   unanswered, yet the worker answered a ping sent after that: its loop
 *   runs, so the pipes, not the process, are stuck.
 * @module
 */
import type { SlotView } from "../ipc/shm.ts";
import type { Event } from "./child_states.ts";
import type { Timing } from "./child_spec.ts";
import { ExitReason } from "./exit_reason.ts";
import type { Running } from "../link/slot_tickets.ts";
import { hangCulprit, overdueRequest } from "../link/ticket_reports.ts";

/** A verdict: the event to fire, the `last_exit` it earns, the limit passed, the request blamed, and what to log. */
export interface Verdict {
  readonly event: Extract<Event, "hang" | "deadline" | "wedged">;
  readonly reason: number;
  readonly limitMs: number;
  /** The request the kill is for (the death record blames its ticket alone), or null. */
  readonly culprit: Running | null;
  /** Why, for the log line after the child's name and pid (it ends with what is done: "killing"). */
  readonly why: string;
}

/** What a heartbeat knows of one running child. */
export interface Liveness {
  readonly slot: SlotView;
  readonly isWorker: boolean;
  /** How long its oldest unanswered ping has waited. */
  readonly silentMs: number;
  /** When the newest ping it answered was sent. */
  readonly provenAt: number;
}

/** The verdict on `c` at `now` under `timing`, or null when it may run on. */
export function judge(c: Liveness, timing: Timing, now: number): Verdict | null {
  const slot = c.slot;
  if (c.silentMs > timing.hangTimeoutMs) {
    // The request whose service holds the worker's event loop, if one does, is blamed for it alone.
    const culprit = c.isWorker ? hangCulprit(slot) : null;
    const during = culprit ? ` during "${culprit.request}"` : "";
    return {
      event: "hang",
      reason: culprit ? ExitReason.HANG_IN_REQUEST : ExitReason.HANG,
      limitMs: timing.hangTimeoutMs,
      culprit,
      why: `silent for ${Math.round(c.silentMs)} ms${during}: hung, killing`,
    };
  }
  if (!c.isWorker) return null;
  const late = overdueRequest(slot, now, (type) => timing.requestTimeoutFor[type] ?? timing.requestTimeoutMs);
  if (late) {
    const ranMs = Math.round(now - late.startedAt);
    return {
      event: "deadline",
      reason: ExitReason.DEADLINE,
      limitMs: late.limitMs,
      culprit: late,
      why: `"${late.request}" running for ${ranMs} ms, past its ${late.limitMs} ms deadline: killing`,
    };
  }
  const wedgedAt = slot.load("link_wedged_at");
  if (wedgedAt > slot.load("started_at") && c.provenAt > wedgedAt) {
    return {
      event: "wedged",
      reason: ExitReason.WEDGED,
      limitMs: 0,
      culprit: null,
      why: "dispatcher reports its pipes wedged: killing",
    };
  }
  return null;
}
