/**
 * The dispatcher's ledger of the tickets it issued through one link: which
 * entry each one went to and for whom, what became of earlier ones (for
 * `OUTCOME`), and, when the worker dies or its link is lost, what each of its
 * clients is told. Both links keep one: the local link over the worker's own
 * slot, the TCP link over the mirror of a remote worker's slot. The states
 * themselves live in the slot and move only through `slot_tickets.ts`.
 * @module
 */
import { ExitReason, requestCaused } from "../supervise/exit_reason.ts";
import { BLAMED, type DeathRecord, type Issue, type SlotTickets, TicketState } from "./slot_tickets.ts";
import type { Fate, LostWork, Ticket } from "./worker_link.ts";

/** A ticket issued through the link, and where it went. */
export interface Issued {
  readonly ticket: string;
  readonly type: string;
  readonly owner: string;
  readonly issue: Issue;
  /** The worker process it was issued to (local workers; 0 for a remote one). */
  readonly pid: number;
}

/** Earlier tickets remembered per entry for OUTCOME, and lost ones kept in all. */
const HISTORY_PER_ENTRY = 64, LOST_KEPT = 64;

/** How an earlier ticket ended, in a ring that OUTCOME searches (rare) and every issue writes (often). */
interface Ended {
  ticket: string;
  fate: "served" | "expired";
}

/** One link's issued tickets. */
export class TicketLedger {
  readonly tickets: SlotTickets;
  /** The ticket issued last into each entry. */
  readonly #current: (Issued | undefined)[] = [];
  /** How earlier tickets ended, for OUTCOME: a ring, oldest overwritten first. */
  readonly #history: Ended[] = [];
  #next = 0;
  /** Tickets lost with a dead process or link, newest last (bounded). */
  readonly #lost: LostWork[] = [];
  /** A ticket that runs alone: while it lives, nothing else is issued to this worker. */
  #alone: Issued | undefined;

  constructor(tickets: SlotTickets) {
    this.tickets = tickets;
  }

  /**
   * Issues `t` into a free entry of the worker `pid`; null when it takes no ticket now. With `alone`, only
   * into a worker that holds no other ticket, and nothing else is issued to it while that one lives.
   */
  issue(t: Ticket, pid: number, alone = false): Issued | null {
    if (this.blocked() || (alone && this.tickets.liveCount() > 0)) return null;
    const issue = this.tickets.issue(t);
    if (!issue) return null;
    const last = this.#current[issue.entry];
    if (last) {
      // The entry's previous ticket is finished (it was free): remember how, before its entry is reused.
      const fate = this.tickets.fate(last.issue, last.ticket);
      this.#remember(last.ticket, fate === "expired" ? "expired" : "served");
    }
    const issued: Issued = { ticket: t.ticket, type: t.type, owner: t.owner, issue, pid };
    this.#current[issue.entry] = issued;
    if (alone) this.#alone = issued;
    return issued;
  }

  /** True while a ticket issued to run alone lives: the worker takes no other. */
  blocked(): boolean {
    if (this.#alone && !this.tickets.live(this.#alone.issue)) this.#alone = undefined;
    return this.#alone !== undefined;
  }

  #remember(ticket: string, fate: "served" | "expired"): void {
    const slot = this.#history[this.#next];
    if (slot) {
      slot.ticket = ticket;
      slot.fate = fate;
    } else this.#history.push({ ticket, fate });
    this.#next = (this.#next + 1) % (HISTORY_PER_ENTRY * this.tickets.capacity);
  }

  /** The issued ticket `ticket`, if it is the last one of its entry. */
  find(ticket: string): Issued | undefined {
    for (const i of this.#current) if (i?.ticket === ticket) return i;
    return undefined;
  }

  /** Takes back `ticket` if it is still unused; true when it was. */
  reclaim(ticket: string): boolean {
    const i = this.find(ticket);
    return i !== undefined && this.tickets.takeBack(i.issue);
  }

  /** The owners of the tickets issued here and not finished (unused or running), one per ticket. */
  owners(): string[] {
    const out: string[] = [];
    for (const i of this.#current) if (i && this.tickets.live(i.issue)) out.push(i.owner);
    return out;
  }

  /** The worker processes the last ticket of each entry went to (whose deaths may concern them). */
  pids(): number[] {
    const out = new Set<number>();
    for (const i of this.#current) if (i && i.pid > 0) out.add(i.pid);
    return [...out];
  }

  /** What became of `ticket`, if this link issued it. */
  fate(ticket: string): Fate {
    const lost = this.#lost.find((l) => l.ticket === ticket);
    if (lost) return { state: "lost", lost };
    const i = this.find(ticket);
    if (!i) {
      const earlier = this.#history.find((h) => h.ticket === ticket);
      return { state: earlier?.fate ?? "unknown" };
    }
    const fate = this.tickets.fate(i.issue, i.ticket);
    return { state: fate === null ? "served" : fate === "offline" ? "unknown" : fate };
  }

  /**
   * The worker process `pid` died (local link): what each of its live
   * tickets' clients is told, from the watchdog's death record and the exit
   * reason `reason`. Returns the tickets lost (never started, started and
   * killed for another request, or killed for their own).
   */
  died(pid: number, record: DeathRecord, reason: number): LostWork[] {
    const out: LostWork[] = [];
    for (const i of this.#current) {
      if (!i || i.pid !== pid) continue;
      const held = record.entries[i.issue.entry] ?? 0;
      if (held !== TicketState.ASSIGNED && held !== TicketState.BUSY && held !== BLAMED) continue;
      const started = held !== TicketState.ASSIGNED;
      const caused = requestCaused(reason);
      out.push(this.#lose(i, {
        arg: started ? this.tickets.slot.tickets[i.issue.entry]!.text("request_arg") : "",
        started,
        reason,
        limitMs: record.limitMs,
        requestCaused: caused && held === BLAMED,
        culprit: caused && held === TicketState.BUSY ? record.culprit : undefined,
      }));
    }
    return out;
  }

  /** The link to a remote worker is lost: its live tickets' fate is unknown (they may have run). */
  linkLost(): LostWork[] {
    const out: LostWork[] = [];
    for (const i of this.#current) {
      const fate = i && this.tickets.fate(i.issue, i.ticket);
      if (!i || (fate !== "pending" && fate !== "running")) continue;
      out.push(this.#lose(i, {
        arg: "",
        started: fate === "running",
        reason: ExitReason.LINK_LOST,
        limitMs: 0,
        requestCaused: false,
      }));
    }
    return out;
  }

  #lose(i: Issued, how: Omit<LostWork, "ticket" | "type">): LostWork {
    const lost: LostWork = { ticket: i.ticket, type: i.type, ...how };
    this.#lost.push(lost);
    if (this.#lost.length > LOST_KEPT) this.#lost.shift();
    this.#current[i.issue.entry] = undefined;
    return lost;
  }

  /** The live ticket issued into `entry` (a remote worker reports by ticket; this maps back). */
  at(entry: number): Issued | undefined {
    return this.#current[entry];
  }
}
