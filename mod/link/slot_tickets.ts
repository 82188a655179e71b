/**
 * The ticket protocol of one worker slot in shared memory: publishing an
 * assignment, claiming it, finishing, taking back an unused one. Both links
 * use it: the local dispatcher publishes into its worker's slot directly; a
 * worker attached over TCP publishes what it receives into its own slot on
 * its host, so that its watchdog sees its requests (deadlines, death records)
 * exactly as for a local worker, and tickets are checked by the same code.
 *
 * The slot's `work` word holds the work state and an assignment generation
 * and moves by compare-and-swap: idle → assigned (publish, generation + 1,
 * after the ticket is written), assigned → busy (claim), busy → idle (finish),
 * assigned → idle (take back: expired, revoked, or its client left). Every
 * step compares the whole word, so a ticket is used at most once even when
 * both sides race, and a slow claim can never take a newer ticket's place.
 * @module
 */
import { type SlotView, workGen, WorkState, workState, workWord } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { isZero, sameBytes, ticketBytes } from "./tickets.ts";
import type { ClaimRefusal, Ticket } from "./worker_link.ts";

/** One worker slot's tickets. */
export class SlotTickets {
  readonly slot: SlotView;
  readonly #clock: Clock;
  #retired = false;
  /** Called when an expired ticket was taken back here (the worker is free again: tell the dispatcher). */
  onTakenBack: () => void = () => {};

  constructor(slot: SlotView, clock: Clock) {
    this.slot = slot;
    this.#clock = clock;
  }

  /** True once {@link SlotTickets.retire} ran (no new assignment will be accepted). */
  get retired(): boolean {
    return this.#retired;
  }

  /**
   * Publishes an assignment if the slot is idle: writes the ticket while the
   * slot is idle, then publishes it with the compare-and-swap, so no claim sees
   * half a ticket. Returns its generation, or null when the slot was not idle.
   */
  publish(t: Pick<Ticket, "ticket" | "type" | "clientAddr" | "expiresAt">): number | null {
    const slot = this.slot;
    const word = slot.load("work");
    if (workState(word) !== WorkState.IDLE || this.#retired) return null;
    slot.bytes("ticket").set(ticketBytes(t.ticket));
    slot.setText("request_type", t.type);
    slot.setText("client_addr", t.clientAddr);
    slot.store("ticket_expires_at", t.expiresAt);
    const gen = workGen(word) + 1;
    return slot.cas("work", word, workWord(WorkState.ASSIGNED, gen)) ? gen : null;
  }

  /** Takes back the assignment of generation `gen` if it is still unused. */
  takeBack(gen: number): boolean {
    return this.slot.cas("work", workWord(WorkState.ASSIGNED, gen), workWord(WorkState.IDLE, gen));
  }

  /** Takes back an unused ticket past its expiry at `now` (its bytes stay: a late client is told "expired"). */
  sweep(now: number): boolean {
    const word = this.slot.load("work");
    if (workState(word) !== WorkState.ASSIGNED || now <= this.slot.load("ticket_expires_at")) return false;
    return this.slot.cas("work", word, workWord(WorkState.IDLE, workGen(word)));
  }

  /** True when the slot's ticket field holds `ticket` (a used one is cleared, a taken-back one is not). */
  holds(ticket: string): boolean {
    return sameBytes(this.slot.bytes("ticket"), ticketBytes(ticket));
  }

  /**
   * Validates and consumes a ticket presented by a client. Returns the refusal,
   * or null with the slot busy (its generation in {@link SlotTickets.busyGen}).
   */
  claim(ticket: string, type: string, arg: string): ClaimRefusal | null {
    const slot = this.slot;
    const presented = ticketBytes(ticket);
    if (isZero(presented)) return "mismatch";
    const word = slot.load("work");
    const matches = sameBytes(slot.bytes("ticket"), presented);
    const expired = this.#clock.now() > slot.load("ticket_expires_at");
    if (workState(word) !== WorkState.ASSIGNED) return matches && expired ? "expired" : "no-ticket";
    if (!matches) return "mismatch";
    if (expired) {
      // Take it back now rather than wait for the dispatcher's sweep.
      if (slot.cas("work", word, workWord(WorkState.IDLE, workGen(word)))) this.onTakenBack();
      return "expired";
    }
    if (slot.text("request_type") !== type) return "wrong-type";
    if (!slot.cas("work", word, workWord(WorkState.BUSY, workGen(word)))) return "no-ticket";
    slot.bytes("ticket").fill(0); // one use
    slot.setText("request_arg", arg);
    slot.store("request_started_at", this.#clock.now());
    return null;
  }

  /** The generation of the request in progress (after a successful claim). */
  get busyGen(): number {
    return workGen(this.slot.load("work"));
  }

  /** The request is finished: idle again, or draining when retiring (never seen idle, so nothing slips in). */
  finish(retire = false): void {
    const slot = this.slot;
    slot.store("request_started_at", 0);
    slot.add("served", 1);
    this.#retired ||= retire;
    const word = slot.load("work");
    if (workState(word) === WorkState.BUSY) {
      slot.cas("work", word, workWord(this.#retired ? WorkState.DRAINING : WorkState.IDLE, workGen(word)));
    }
  }

  /** No new assignment from now on; an idle slot becomes draining at once. */
  retire(): void {
    this.#retired = true;
    const word = this.slot.load("work");
    if (workState(word) === WorkState.IDLE) {
      this.slot.cas("work", word, workWord(WorkState.DRAINING, workGen(word)));
    }
  }

  /** True while a ticket is assigned, unexpired and unused. */
  holdsTicket(): boolean {
    return workState(this.slot.load("work")) === WorkState.ASSIGNED &&
      this.#clock.now() <= this.slot.load("ticket_expires_at");
  }

  /** A new process starts in the slot: clear what a predecessor left, keep the generation. */
  reset(): void {
    const slot = this.slot;
    slot.bytes("ticket").fill(0);
    slot.store("request_started_at", 0);
    slot.store(
      "work",
      workWord(this.#retired ? WorkState.DRAINING : WorkState.IDLE, workGen(slot.load("work"))),
    );
  }

  /** True when the slot is idle (it may take an assignment). */
  idle(): boolean {
    return workState(this.slot.load("work")) === WorkState.IDLE;
  }
}
