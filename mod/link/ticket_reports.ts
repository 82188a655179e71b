/**
 * What the ticket protocol's words say, for those who only read them: the
 * watchdog (which request is in progress, which one a hang or a deadline is
 * blamed on, whether a stop must wait, tickets overdue), `osps status` (busy/N),
 * and the layout document. Nothing here writes a word: `slot_tickets.ts` owns
 * every transition.
 * @module
 */
import type { SlotView, TicketView } from "../ipc/shm.ts";
import { BLAMED, DoorState, genOf, type Running, stateOf, TicketState } from "./slot_tickets.ts";

function runningAt(e: TicketView): Running | null {
  const started = e.load("started_at");
  if (started <= 0 || stateOf(e.word()) !== TicketState.BUSY) return null;
  const type = e.text("request_type"), arg = e.text("request_arg");
  return { entry: e.index, type, request: arg ? `${type} ${arg}` : type, startedAt: started };
}

/** The requests a worker is running now, oldest first. */
export function requestsInProgress(slot: SlotView): Running[] {
  const out: Running[] = [];
  for (const e of slot.tickets) {
    const r = runningAt(e);
    if (r) out.push(r);
  }
  return out.sort((a, b) => a.startedAt - b.startedAt);
}

/**
 * Which request a hang is blamed on: the one the worker marked `running`
 * (its service holds the event loop), or, with one ticket per worker, the
 * request in progress (the seeds' model). Null: no request is to blame.
 */
export function hangCulprit(slot: SlotView): Running | null {
  const marked = slot.load("running");
  const e = marked > 0 ? slot.tickets[marked - 1] : undefined;
  if (e) return runningAt(e);
  return slot.tickets.length === 1 ? requestsInProgress(slot)[0] ?? null : null;
}

/** The first request running past its deadline (`limitFor(type)` ms) at `now`, and that limit. */
export function overdueRequest(
  slot: SlotView,
  now: number,
  limitFor: (type: string) => number,
): (Running & { limitMs: number }) | null {
  for (const r of requestsInProgress(slot)) {
    const limitMs = limitFor(r.type);
    if (now - r.startedAt > limitMs) return { ...r, limitMs };
  }
  return null;
}

/** True while the worker holds a ticket issued and not finished (a stop waits for it, up to its grace). */
export function holdsLiveTicket(slot: SlotView): boolean {
  for (const e of slot.tickets) {
    const s = stateOf(e.word());
    if (s === TicketState.ASSIGNED || s === TicketState.BUSY) return true;
  }
  return false;
}

/** Unused tickets past their expiry at `now`: a key per issue (entry and generation) and how late. */
export function overdueTickets(slot: SlotView, now: number): { key: string; lateMs: number }[] {
  const out: { key: string; lateMs: number }[] = [];
  for (const e of slot.tickets) {
    const word = e.word();
    if (stateOf(word) !== TicketState.ASSIGNED) continue;
    const late = now - e.expiresAt();
    if (late > 0) out.push({ key: `${slot.index}.${e.index}:${genOf(word)}`, lateMs: late });
  }
  return out;
}

// ---- status -----------------------------------------------------------------------------------------------

/** What a worker's tickets say about its work, for `osps status`. */
export interface WorkSummary {
  /** "offline", "idle", "assigned", "busy" or "draining"; with N > 1, "busy 3/8" and the like. */
  readonly text: string;
  readonly busy: number;
  readonly assigned: number;
  readonly capacity: number;
  /** The oldest request in progress. */
  readonly oldest: Running | null;
  /** The most overdue unused ticket, ms past its expiry (never expected), or 0. */
  readonly overdueMs: number;
}

/** Summarises a worker slot's door and tickets at `now`. */
export function workSummary(slot: SlotView, now: number): WorkSummary {
  let busy = 0, assigned = 0, overdueMs = 0;
  for (const e of slot.tickets) {
    const s = stateOf(e.word());
    if (s === TicketState.BUSY) busy++;
    else if (s === TicketState.ASSIGNED) {
      assigned++;
      overdueMs = Math.max(overdueMs, now - e.expiresAt());
    }
  }
  const capacity = slot.tickets.length;
  const door = slot.load("door");
  const text = door === DoorState.OFFLINE
    ? "offline"
    : capacity > 1 && busy + assigned > 0
    ? `${door === DoorState.DRAINING ? "draining, " : ""}busy ${busy}/${capacity}${
      assigned ? ` +${assigned} assigned` : ""
    }`
    : busy
    ? "busy"
    : assigned
    ? "assigned"
    : door === DoorState.DRAINING
    ? "draining"
    : "idle";
  return { text, busy, assigned, capacity, oldest: requestsInProgress(slot)[0] ?? null, overdueMs };
}

// ---- documentation ----------------------------------------------------------------------------------------

/** The protocol's states and transitions as Markdown (docs/SHM_LAYOUT.md, after the ticket entry table). */
export function ticketStatesMarkdown(): string {
  const list = (t: Record<string, number>) =>
    Object.entries(t).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ");
  return [
    `Ticket \`word\` state (bits 0-3): ${list(TicketState)}. \`door\`: ${list(DoorState)}.`,
    `\`death_entries\`: the state each entry held at the death, or ${BLAMED} (busy, and the request the kill`,
    "was for). Every step is a compare-and-swap of the whole word (`mod/link/slot_tickets.ts` has the diagram",
    "and is the only writer):",
    "",
    "| step | who | word |",
    "| --- | --- | --- |",
    "| issue | dispatcher (a joined host: its worker, on the link's ASSIGN) | free → assigned, generation + 1, after the ticket bytes; undone if the door is then found closed |",
    "| claim | worker, when the client shows the ticket | assigned → busy; ticket bytes cleared (one use) |",
    "| finish | worker | busy → free |",
    '| take back | dispatcher (expired, client left); worker (shown expired, revoked) | assigned → free (the bytes stay: a late client is told "expired") |',
    "| die | watchdog, when it reaps the process | any → offline, the state it held recorded in `death_entries`; the door → offline |",
    "| open | the next process, when ready | offline → free; the door → open (draining if it retires) |",
    "",
  ].join("\n");
}
