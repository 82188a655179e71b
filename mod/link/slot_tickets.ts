/**
 * The ticket protocol: the life of every ticket in a worker's shared-memory
 * slot, from issue to finish, and the only code that writes its words. The
 * dispatcher, the worker and the watchdog each ask this module; none of them
 * writes a ticket word or a door itself.
 *
 * A worker slot has a `door` and `tickets_per_slot` ticket entries (the
 * worker concurrency N; N = 1 is the seeds' one-client-per-worker model).
 * Each entry's `word` holds its state and a generation, bumped by every issue,
 * and moves by compare-and-swap only, each step comparing the whole word, so a
 * ticket is used at most once even when the roles race, and a slow step made
 * with a stale word fails instead of touching a newer ticket:
 *
 * ```text
 *              issue (dispatcher: writes the ticket, then FREE→ASSIGNED with gen+1;
 *                     undone at once if it then finds the door closed)
 *     FREE ───────────────────────────────────────────► ASSIGNED
 *      ▲ ▲  take back (dispatcher: expired, or its client left;  │
 *      │ └─────── worker: shown expired, or revoked by the link) ┤ claim (worker: its client showed it,
 *      │                                                          ▼        unexpired, for its type)
 *      └──────────────────── finish (worker) ◄─────────────────  BUSY
 *
 *     any state ── die (watchdog, when it reaps the process) ──► OFFLINE ── open (next process) ──► FREE
 * ```
 *
 * The `door` says whether the worker takes new tickets: OFFLINE (no process),
 * OPEN, DRAINING (retiring, replaced, stopping). The worker opens it when it
 * is ready and turns it to DRAINING when it retires; the watchdog closes it
 * when the process dies. An issue reads the door after its compare-and-swap
 * and the worker reads the entries after closing the door (both sequentially
 * consistent atomics), so either the issue sees the door closed and takes its
 * ticket back before anyone has it, or the draining worker sees the ticket and
 * waits for its client: a draining worker is never given a ticket after its
 * listener closed.
 *
 * When the watchdog reaps a worker, it swaps every entry to OFFLINE with one
 * compare-and-swap each and records the state each one held (the death record:
 * `death_entries`, `death_request`, `death_limit_ms`, then `death_pid` last),
 * so the dispatcher can tell each client exactly what became of its request:
 * it never started, it ran and was killed because of another request, or it
 * was killed for its own (a hang or deadline is blamed on one request: the
 * entry the worker marks `running` while its service runs synchronously, or,
 * at N = 1, the one request in progress, as the seeds' model has it).
 *
 * What the words say to those who only read them (which request a hang is
 * blamed on, busy/N for `osps status`) is in `ticket_reports.ts`; what a
 * dispatcher issued, and what its clients are told, in `ticket_ledger.ts`.
 * @module
 */
import { type SlotView, type TicketView, ticketWords } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { ticketHex } from "./tickets.ts";
import type { ClaimRefusal, Ticket } from "./worker_link.ts";

/** State of a ticket entry (bits 0-3 of its `word`). */
export const TicketState = { OFFLINE: 0, FREE: 1, ASSIGNED: 2, BUSY: 3 } as const;
/** Whether a worker takes new tickets (its slot's `door`). */
export const DoorState = { OFFLINE: 0, OPEN: 1, DRAINING: 2 } as const;
/** In a death record: busy, and the request the kill was for. */
export const BLAMED = 4;

const GEN_MASK = 0x0fffffff;
/** What a cleared (used) entry holds; never issued, never accepted. */
const ZERO_TICKET = "0".repeat(32);
/** A presented ticket as four i32, compared against each entry (one per process: claims run one at a time). */
const presented = new Int32Array(4);

/** A ticket word: `state` with generation `gen` (wrapped to 28 bits). Exported for tests. */
export function ticketWord(state: number, gen: number): number {
  return (((gen & GEN_MASK) << 4) | state) | 0;
}

/** The {@link TicketState} in a ticket word (for readers: `ticket_reports.ts`). */
export function stateOf(word: number): number {
  return word & 0xf;
}

/** The generation in a ticket word. */
export function genOf(word: number): number {
  return word >>> 4;
}

/** A ticket issued into an entry: which entry, and the generation it was issued with. */
export interface Issue {
  readonly entry: number;
  readonly gen: number;
}

/** What became of an issued ticket, as its entry tells it. */
export type EntryFate = "pending" | "running" | "served" | "expired" | "offline";

/** What the watchdog recorded about a dead worker's tickets. */
export interface DeathRecord {
  /** Per entry: the {@link TicketState} it held at the death, or {@link BLAMED}. */
  readonly entries: readonly number[];
  /** The request the kill was for ("type arg"), "" when none. */
  readonly culprit: string;
  /** The limit it ran past, ms (0 when not killed for a limit). */
  readonly limitMs: number;
}

/** The tickets of one worker slot: its door and its entries. */
export class SlotTickets {
  readonly slot: SlotView;
  readonly #entries: readonly TicketView[];
  readonly #clock: Clock;
  /** Where the next issue starts looking for a free entry (spreads entries, finds one at once). */
  #hint = 0;
  /** Called by the worker side when it took back an expired ticket it was shown (the worker is free again). */
  onTakenBack: (entry: number) => void = () => {};

  /** `capacity` limits the entries used (a remote worker may take fewer tickets than the slot has). */
  constructor(slot: SlotView, clock: Clock, capacity = slot.tickets.length) {
    this.slot = slot;
    this.#entries = slot.tickets.slice(0, Math.max(1, Math.min(capacity, slot.tickets.length)));
    this.#clock = clock;
  }

  /** Tickets this slot can hold at once (the worker concurrency). */
  get capacity(): number {
    return this.#entries.length;
  }

  // ---- the door -------------------------------------------------------------------------------------------

  /** The door's {@link DoorState}. */
  door(): number {
    return this.slot.load("door");
  }

  /**
   * A new process is ready in the slot (worker): every entry is free again
   * (keeping its generation and, for OUTCOME, a taken-back ticket's bytes),
   * then the door opens, or stays draining when the worker already retires.
   */
  open(draining = false): void {
    this.slot.store("running", 0);
    for (const e of this.slot.tickets) {
      swap(e, (w) => ticketWord(TicketState.FREE, genOf(w)));
      e.store("started_at", 0);
    }
    const d = this.slot;
    for (;;) {
      const was = d.load("door");
      if (d.cas("door", was, draining ? DoorState.DRAINING : DoorState.OPEN)) return;
    }
  }

  /** No new ticket from now on (worker): an open door becomes draining. */
  retire(): void {
    this.slot.cas("door", DoorState.OPEN, DoorState.DRAINING);
  }

  // ---- the dispatcher -------------------------------------------------------------------------------------

  /** True when an issue can succeed now: the door is open and an entry is free. */
  hasFree(): boolean {
    if (this.slot.load("door") !== DoorState.OPEN) return false;
    for (const e of this.#entries) if (stateOf(e.word()) === TicketState.FREE) return true;
    return false;
  }

  /**
   * Issues a ticket into a free entry: writes it while the entry is free,
   * then publishes it with the compare-and-swap (so no claim sees half a
   * ticket), then checks the door (see the module's note on draining).
   * Returns the entry and generation, or null when the worker takes no ticket now.
   */
  issue(t: Pick<Ticket, "ticket" | "type" | "clientAddr" | "expiresAt">): Issue | null {
    if (this.slot.load("door") !== DoorState.OPEN) return null;
    const n = this.#entries.length;
    for (let k = 0; k < n; k++) {
      const i = (this.#hint + k) % n;
      const e = this.#entries[i]!;
      const word = e.word();
      if (stateOf(word) !== TicketState.FREE) continue;
      e.setTicket(t.ticket);
      e.setText("request_type", t.type);
      e.setText("client_addr", t.clientAddr);
      e.store("expires_at", t.expiresAt);
      const gen = (genOf(word) + 1) & GEN_MASK;
      if (!e.casWord(word, ticketWord(TicketState.ASSIGNED, gen))) continue;
      if (this.slot.load("door") !== DoorState.OPEN) {
        // The worker closed its door meanwhile: nobody has this ticket yet, take it back.
        e.casWord(ticketWord(TicketState.ASSIGNED, gen), ticketWord(TicketState.FREE, gen));
        return null;
      }
      this.#hint = (i + 1) % n;
      return { entry: i, gen };
    }
    return null;
  }

  /** Takes back an issued ticket if it is still unused (its client left, or it expired). */
  takeBack(issue: Issue): boolean {
    const e = this.#entries[issue.entry];
    return e !== undefined &&
      e.casWord(ticketWord(TicketState.ASSIGNED, issue.gen), ticketWord(TicketState.FREE, issue.gen));
  }

  /**
   * Takes back every unused ticket past its expiry at `now` (its bytes stay:
   * a late client is told "expired"); `onTaken` hears of each. Returns how many.
   */
  sweep(now: number, onTaken?: (entry: number) => void): number {
    let n = 0;
    for (const e of this.#entries) {
      const word = e.word();
      if (stateOf(word) !== TicketState.ASSIGNED || now <= e.expiresAt()) continue;
      if (e.casWord(word, ticketWord(TicketState.FREE, genOf(word)))) {
        n++;
        onTaken?.(e.index);
      }
    }
    return n;
  }

  /** True while the ticket of `issue` is issued and not finished (unused or running). */
  live(issue: Issue): boolean {
    const word = this.#entries[issue.entry]?.word() ?? 0;
    const s = stateOf(word);
    return genOf(word) === issue.gen && (s === TicketState.ASSIGNED || s === TicketState.BUSY);
  }

  /** What became of `ticket`, issued as `issue`, or null when its entry has been issued again since. */
  fate(issue: Issue, ticket: string): EntryFate | null {
    const e = this.#entries[issue.entry];
    if (!e) return null;
    const word = e.word();
    if (genOf(word) !== issue.gen) return null;
    switch (stateOf(word)) {
      case TicketState.ASSIGNED:
        return "pending";
      case TicketState.BUSY:
        return "running";
      case TicketState.OFFLINE:
        return "offline";
    }
    // Free again: a used ticket was cleared from its entry, one taken back unused was not.
    return e.holds(ticket) ? "expired" : "served";
  }

  /**
   * The death record of process `pid`, once the watchdog has written it
   * (null before, or when a later death has replaced it).
   */
  deathRecord(pid: number): DeathRecord | null {
    const slot = this.slot;
    if (pid <= 0 || slot.load("death_pid") !== pid) return null;
    const bytes = slot.bytes("death_entries");
    return {
      entries: Array.from({ length: slot.tickets.length }, (_, i) => bytes[i] ?? 0),
      culprit: slot.text("death_request"),
      limitMs: slot.load("death_limit_ms"),
    };
  }

  // ---- a remote worker's mirror (the dispatcher, on what the TCP link reports) ----------------------------

  /** Mirrors the remote worker's door (dispatcher side of a TCP link). */
  mirrorDoor(state: number): void {
    this.slot.store("door", state);
  }

  /** Mirrors a claim reported by a remote worker: the ticket of `issue` is running. */
  mirrorClaimed(issue: Issue, now: number): boolean {
    const e = this.#entries[issue.entry];
    if (
      !e?.casWord(ticketWord(TicketState.ASSIGNED, issue.gen), ticketWord(TicketState.BUSY, issue.gen))
    ) {
      return false;
    }
    e.bytes("ticket").fill(0);
    e.store("started_at", now);
    return true;
  }

  /** Mirrors a finish reported by a remote worker. */
  mirrorFinished(issue: Issue): boolean {
    return this.#finish(issue);
  }

  // ---- the worker -----------------------------------------------------------------------------------------

  /**
   * Validates and consumes a ticket presented by a client for `type` with
   * argument `arg`. Returns the claim (the entry is busy: the request runs),
   * or why it is refused.
   */
  claim(ticket: string, type: string, arg: string): Issue | ClaimRefusal {
    if (ticket === ZERO_TICKET) return "mismatch"; // a cleared entry holds it: never valid
    ticketWords(ticket, presented);
    let found: TicketView | undefined, word = 0, assigned = false;
    for (const e of this.#entries) {
      const w = e.word(); // before the bytes: an issue writes them before its compare-and-swap
      if (stateOf(w) === TicketState.ASSIGNED) assigned = true;
      if (found === undefined && e.holdsWords(presented)) {
        found = e;
        word = w;
      }
    }
    if (!found) return assigned ? "mismatch" : "no-ticket";
    const now = this.#clock.now();
    const expired = now > found.expiresAt();
    if (stateOf(word) !== TicketState.ASSIGNED) return expired ? "expired" : "no-ticket";
    const gen = genOf(word);
    if (expired) {
      // Take it back now rather than wait for the dispatcher's sweep.
      if (found.casWord(word, ticketWord(TicketState.FREE, gen))) this.onTakenBack(found.index);
      return "expired";
    }
    if (!found.typeIs(type)) return "wrong-type";
    if (!found.casWord(word, ticketWord(TicketState.BUSY, gen))) return "no-ticket";
    found.bytes("ticket").fill(0); // one use
    found.setText("request_arg", arg);
    found.store("started_at", now);
    return { entry: found.index, gen };
  }

  /**
   * Marks the claimed request whose service runs synchronously right now
   * (null: none). If the event loop stays blocked, the watchdog's hang kill
   * blames that request alone.
   */
  running(claim: Issue | null): void {
    this.slot.store("running", claim ? claim.entry + 1 : 0);
  }

  /** The claimed request is finished: its entry is free again. */
  finish(claim: Issue): void {
    this.slot.add("served", 1);
    this.#finish(claim);
  }

  #finish(issue: Issue): boolean {
    const e = this.#entries[issue.entry];
    if (!e) return false;
    e.store("started_at", 0);
    return e.casWord(ticketWord(TicketState.BUSY, issue.gen), ticketWord(TicketState.FREE, issue.gen));
  }

  /** Takes back the unused `ticket` if an entry holds it (the dispatcher revoked it over the link). */
  takeBackTicket(ticket: string): boolean {
    for (const e of this.#entries) {
      const word = e.word();
      if (stateOf(word) === TicketState.ASSIGNED && e.holds(ticket)) {
        return e.casWord(word, ticketWord(TicketState.FREE, genOf(word)));
      }
    }
    return false;
  }

  /** Takes back every unused ticket (the link that issued them is gone); returns how many. */
  takeBackAll(): number {
    let n = 0;
    for (const e of this.#entries) {
      const word = e.word();
      if (stateOf(word) === TicketState.ASSIGNED) {
        if (e.casWord(word, ticketWord(TicketState.FREE, genOf(word)))) n++;
      }
    }
    return n;
  }

  /** The ticket an entry holds, as 32 hex digits (for the link's EXPIRED report). */
  ticketOf(entry: number): string {
    return ticketHex(this.#entries[entry]?.bytes("ticket") ?? new Uint8Array(16));
  }

  /** True while a ticket is issued, unexpired and unused (a draining worker waits for its client). */
  holdsTicket(): boolean {
    const now = this.#clock.now();
    for (const e of this.#entries) {
      if (stateOf(e.word()) === TicketState.ASSIGNED && now <= e.expiresAt()) return true;
    }
    return false;
  }

  /** Tickets issued and not finished (unused or running). */
  liveCount(): number {
    let n = 0;
    for (const e of this.#entries) {
      const s = stateOf(e.word());
      if (s === TicketState.ASSIGNED || s === TicketState.BUSY) n++;
    }
    return n;
  }
}

/** Applies `next` to an entry's word with compare-and-swap until it holds; returns the word it replaced. */
function swap(e: TicketView, next: (word: number) => number): number {
  for (;;) {
    const word = e.word();
    if (e.casWord(word, next(word))) return word;
  }
}

// ---- the watchdog ----------------------------------------------------------------------------------------

/** A request in progress: its entry, what it is, since when. */
export interface Running {
  readonly entry: number;
  /** "type arg". */
  readonly request: string;
  readonly type: string;
  readonly startedAt: number;
}

/**
 * Writes the death record of process `pid` (watchdog, when it reaps it):
 * the door closes, every entry becomes OFFLINE by compare-and-swap, and the
 * state each one held is recorded, the `culprit` entry's as {@link BLAMED};
 * `death_pid` is written last, so a reader that sees it sees the rest.
 */
export function recordDeath(slot: SlotView, pid: number, culprit: Running | null, limitMs: number): void {
  for (;;) {
    const was = slot.load("door");
    if (slot.cas("door", was, DoorState.OFFLINE)) break;
  }
  slot.store("running", 0);
  const record = slot.bytes("death_entries");
  record.fill(0);
  for (const e of slot.tickets) {
    const held = stateOf(swap(e, (w) => ticketWord(TicketState.OFFLINE, genOf(w))));
    record[e.index] = culprit?.entry === e.index && held === TicketState.BUSY ? BLAMED : held;
  }
  slot.setText("death_request", culprit?.request ?? "");
  slot.store("death_limit_ms", limitMs);
  slot.store("death_pid", pid);
}
