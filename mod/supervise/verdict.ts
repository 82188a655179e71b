/**
 * Whether a running child must be killed, and why: the three verdicts of a
 * heartbeat (after s6's and gunicorn's: liveness proven from the child's own
 * loop, deadlines held by the supervisor).
 *
 * - hung: a ping it was sent has waited past the hang timeout (during a
 *   request, the request's doing);
 * - deadline: a worker's request has run past its deadline;
 * - wedged: the dispatcher's probe through the worker's FIFO pair went
 *   unanswered, yet the worker answered a ping sent after that: its loop
 *   runs, so the pipes, not the process, are stuck.
 * @module
 */
import type { SlotView } from "../ipc/shm.ts";
import type { Event } from "./child_states.ts";
import type { Timing } from "./child_spec.ts";
import { ExitReason } from "./exit_reason.ts";

/** A verdict: the event to fire, the `last_exit` it earns, the limit passed, and what to log. */
export interface Verdict {
  readonly event: Extract<Event, "hang" | "deadline" | "wedged">;
  readonly reason: number;
  readonly limitMs: number;
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

/** The request in the slot, as people read it (`fib 45`). */
export function requestText(slot: SlotView): string {
  const arg = slot.text("request_arg");
  return arg ? `${slot.text("request_type")} ${arg}` : slot.text("request_type");
}

/** The verdict on `c` at `now` under `timing`, or null when it may run on. */
export function judge(c: Liveness, timing: Timing, now: number): Verdict | null {
  const slot = c.slot;
  const started = c.isWorker ? slot.load("request_started_at") : 0;
  if (c.silentMs > timing.hangTimeoutMs) {
    return {
      event: "hang",
      reason: started > 0 ? ExitReason.HANG_IN_REQUEST : ExitReason.HANG,
      limitMs: timing.hangTimeoutMs,
      why: `silent for ${Math.round(c.silentMs)} ms${
        started > 0 ? ` during "${requestText(slot)}"` : ""
      }: hung, killing`,
    };
  }
  if (!c.isWorker) return null;
  if (started > 0) {
    const limit = timing.requestTimeoutFor[slot.text("request_type")] ?? timing.requestTimeoutMs;
    if (now - started > limit) {
      return {
        event: "deadline",
        reason: ExitReason.DEADLINE,
        limitMs: limit,
        why:
          `"${requestText(slot)}" running for ${
            Math.round(now - started)
          } ms, past its ${limit} ms deadline: ` +
          "killing",
      };
    }
  }
  const wedgedAt = slot.load("link_wedged_at");
  if (wedgedAt > slot.load("started_at") && c.provenAt > wedgedAt) {
    return {
      event: "wedged",
      reason: ExitReason.WEDGED,
      limitMs: 0,
      why: "dispatcher reports its pipes wedged: killing",
    };
  }
  return null;
}
