/**
 * The local dispatcher↔worker link: the tickets live in the worker's shm
 * slot, and a FIFO pair (`dwtube<i>` dispatcher → worker, `wdtube<i>` worker
 * → dispatcher) carries doorbells (the worker's "done", the dispatcher's
 * probe and the worker's echo) and the data channel's messages, in sessions
 * that survive either end being replaced (`mod/ipc/fifo_pair.ts`).
 *
 * Shared memory is the truth; doorbells only wake the peer. Tickets move
 * through the ticket protocol of `slot_tickets.ts` (issue, claim, finish,
 * take back, death records), the only code that writes their words; this
 * module carries them between the roles and keeps the dispatcher's ledger of
 * what it issued. A restarted dispatcher rebuilds its view from the segment alone.
 * @module
 */
import type { InstancePaths } from "../cli/config.ts";
import type { FifoPoller } from "../ipc/fifo.ts";
import { FifoFrame } from "../ipc/fifo_frames.ts";
import { FIFO_RETRY_MS, FifoPair } from "../ipc/fifo_pair.ts";
import { logger } from "../log.ts";
import type { SlotView } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { sleep } from "../deadline.ts";
import { SlotTickets } from "./slot_tickets.ts";
import { type Issued, TicketLedger } from "./ticket_ledger.ts";
import type {
  Claim,
  ClaimRefusal,
  DispatcherLink,
  DispatcherLinkEvents,
  Fate,
  Ticket,
  WorkerLink,
  WorkerLinkEvents,
} from "./worker_link.ts";

/** How often the dispatcher's write end retries while no process is in the slot (the spare slot, mostly). */
const IDLE_RETRY_MS = 500;
/** How long the dispatcher waits for the watchdog's account of a dead worker. */
const DEATH_RECORD_WAIT_MS = 3_000;

/** Logs damaged frames on a link's pipes at most once a second (with how many since). */
function dropLogger(what: string): (why: string) => void {
  let last = -Infinity, since = 0;
  return (why) => {
    since++;
    const now = performance.now();
    if (now - last < 1_000) return;
    last = now;
    logger().warn("{what}: dropped {n} damaged frame(s) on its pipes, the last {why}; reading on", {
      what,
      n: since,
      why,
    });
    since = 0;
  };
}

/** Dispatcher side of the local link to worker `id`. */
export class LocalWorkerLink implements WorkerLink {
  readonly id: number;
  readonly host: string;
  readonly #slot: SlotView;
  readonly #tickets: SlotTickets;
  readonly #ledger: TicketLedger;
  readonly #pipes: FifoPair;
  readonly #poller: FifoPoller;
  readonly #clock: Clock;
  #events: WorkerLinkEvents | undefined;
  #draining = false;
  #wedged = false;

  constructor(slot: SlotView, paths: InstancePaths, host: string, poller: FifoPoller, clock: Clock) {
    this.id = slot.index;
    this.host = host;
    this.#slot = slot;
    this.#tickets = new SlotTickets(slot, clock);
    this.#ledger = new TicketLedger(this.#tickets);
    this.#poller = poller;
    this.#clock = clock;
    // An empty slot (the spare, a worker between two lives) is tried rarely: its worker's hello kicks the pair.
    this.#pipes = new FifoPair(paths.wdtube(this.id), paths.dwtube(this.id), {
      onConnect: () => this.#maybeReady(),
      onClose: () => this.#onClose(),
      onFrame: (type, payload) => {
        if (type === FifoFrame.DONE) this.#events?.onDone(this);
        else if (type === FifoFrame.ECHO) this.#events?.onProbe(this);
        else if (type === FifoFrame.MESSAGE) this.#events?.onMessage?.(this, payload);
      },
      onDropped: dropLogger(`worker ${this.id}`),
    }, () => slot.load("pid") > 0 ? FIFO_RETRY_MS : IDLE_RETRY_MS);
  }

  get port(): number {
    return this.#slot.load("port");
  }

  get capacity(): number {
    return this.#tickets.capacity;
  }

  start(events: WorkerLinkEvents): void {
    this.#events = events;
    this.#pipes.start(this.#poller);
  }

  #onClose(): void {
    this.#wedged = false; // that worker is gone; its successor gets a fresh start
    this.#slot.store("link_wedged_at", 0);
    this.#events?.onClosed(this);
    // A ticket's loss is told once: the ledger forgets a ticket it reported lost, so a later process of the
    // slot closing (a clean exit, a replacement) finds nothing of it to report again.
    for (const pid of this.#ledger.pids()) void this.#awaitDeathRecord(pid);
  }

  /**
   * The watchdog writes, when it reaps a worker, what each of its tickets
   * held and why it ended (`slot_tickets.ts`). Wait for that account (the
   * pipe's EOF comes first), and report the tickets of ours that it lost.
   */
  async #awaitDeathRecord(pid: number): Promise<void> {
    const slot = this.#slot;
    const until = this.#clock.now() + DEATH_RECORD_WAIT_MS;
    // The watchdog writes the record before it clears the pid.
    while (slot.load("pid") === pid && this.#clock.now() < until) await sleep(5);
    const record = this.#tickets.deathRecord(pid);
    if (!record) return;
    for (const lost of this.#ledger.died(pid, record, slot.load("last_exit"))) {
      this.#events?.onLost(this, lost);
    }
  }

  #maybeReady(): void {
    if (this.available()) this.#events?.onReady(this);
  }

  available(): boolean {
    return !this.#draining && !this.#wedged && this.#pipes.connected && this.present() &&
      !this.#ledger.blocked() && this.#tickets.hasFree();
  }

  /** A worker runs in the slot and is one of the instance's (a spare slot's worker, kept warm, is routed nothing). */
  present(): boolean {
    return this.#slot.load("pid") > 0 && this.#slot.load("spare") === 0;
  }

  assign(t: Ticket, alone = false): boolean {
    if (!this.available()) return false;
    // No ASSIGN doorbell: the ticket in the slot is the assignment, and the worker reads it when the client
    // shows it. Ringing would wake the worker for nothing, at the cost of a pipe write and a wake-up per request.
    return this.#ledger.issue(t, this.#slot.load("pid"), alone) !== null;
  }

  owners(): string[] {
    return this.#ledger.owners();
  }

  reclaim(ticket: string): boolean {
    return this.#ledger.reclaim(ticket);
  }

  sweep(now: number): number {
    return this.#tickets.sweep(now);
  }

  fate(ticket: string): Fate {
    return this.#ledger.fate(ticket);
  }

  /** The issued ticket `ticket`, while it is the last one of its entry (for tests and status). */
  issued(ticket: string): Issued | undefined {
    return this.#ledger.find(ticket);
  }

  probe(): boolean {
    return this.#pipes.ring(FifoFrame.PROBE);
  }

  send(message: Uint8Array): boolean {
    return this.#pipes.send(message);
  }

  setDraining(on: boolean): void {
    this.#draining = on;
  }

  markWedged(): void {
    this.#wedged = true;
    this.#slot.store("link_wedged_at", this.#clock.now());
  }

  close(): void {
    this.#pipes.close();
  }
}

/** Worker side of the local link. */
export class LocalDispatcherLink implements DispatcherLink {
  readonly #tickets: SlotTickets;
  readonly #pipes: FifoPair;
  readonly #poller: FifoPoller;
  /** The dispatcher's slot: its queue depth says whether it waits for a "done". */
  readonly #dispatcher: SlotView | undefined;
  #events: DispatcherLinkEvents | undefined;
  /** Retiring: the door stays closed, even across a new dispatcher. */
  #retired = false;

  constructor(slot: SlotView, paths: InstancePaths, poller: FifoPoller, clock: Clock, dispatcher?: SlotView) {
    this.#tickets = new SlotTickets(slot, clock);
    this.#dispatcher = dispatcher;
    this.#tickets.onTakenBack = () => this.#pipes.ring(FifoFrame.DONE);
    this.#poller = poller;
    this.#pipes = new FifoPair(paths.dwtube(slot.index), paths.wdtube(slot.index), {
      onConnect: () => {
        // A dispatcher (a new one, or ours again) is there: tell it we are free when we are.
        if (this.#tickets.hasFree()) this.#pipes.ring(FifoFrame.DONE);
        this.#events?.onConnected();
      },
      onClose: () => this.#events?.onDisconnected(),
      onFrame: (type, payload) => {
        if (type === FifoFrame.ASSIGN) this.#events?.onAssigned();
        else if (type === FifoFrame.PROBE) this.#pipes.ring(FifoFrame.ECHO);
        else if (type === FifoFrame.MESSAGE) this.#events?.onMessage?.(payload);
      },
      onDropped: dropLogger("the dispatcher"),
    });
  }

  start(events: DispatcherLinkEvents): void {
    this.#events = events;
    this.#pipes.start(this.#poller);
  }

  ready(): void {
    // A previous incarnation may have died mid-request: start clean, keeping the generations.
    this.#tickets.open(this.#retired);
    if (!this.#retired) this.#pipes.ring(FifoFrame.DONE);
  }

  claim(ticket: string, type: string, arg: string): Claim | ClaimRefusal {
    return this.#tickets.claim(ticket, type, arg);
  }

  running(claim: Claim | null): void {
    this.#tickets.running(claim);
  }

  done(claim: Claim, retire = false): void {
    if (retire) this.retire();
    this.#tickets.finish(claim);
    // The "done" doorbell wakes the dispatcher: only worth it when clients wait for a worker and the dispatcher is not
    // already polling the slots for one (it does while clients wait, so under load none is rung). It
    // publishes its queue depth, then that it polls, before it looks for a free worker, and the slot went
    // idle before these reads: either it sees this worker idle, or this worker rings. No wake-up is lost.
    const d = this.#dispatcher;
    if (!this.#retired && (!d || (d.load("queue_depth") > 0 && d.load("polling") === 0))) {
      this.#pipes.ring(FifoFrame.DONE);
    }
  }

  retire(): void {
    this.#retired = true;
    this.#tickets.retire();
  }

  send(message: Uint8Array): boolean {
    return this.#pipes.send(message);
  }

  holdsTicket(): boolean {
    return this.#tickets.holdsTicket();
  }

  close(): void {
    this.#pipes.close();
  }
}
