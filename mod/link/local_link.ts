/**
 * The local dispatcher↔worker link: the tickets live in the worker's shm slot
 * and a FIFO pair carries one-byte doorbells (`dwtube<i>` dispatcher →
 * worker: "p", the ping; `wdtube<i>` worker → dispatcher: "d", the pong).
 *
 * Shared memory is the truth; doorbells only wake the peer. Tickets move
 * through the ticket protocol of `slot_tickets.ts` (issue, claim, finish,
 * take back, death records), the only code that writes their words; this
 * module carries them between the roles and keeps the dispatcher's ledger of
 * what it issued. A restarted dispatcher rebuilds its view from the segment alone.
 * @module
 */
import type { InstancePaths } from "../cli/config.ts";
import { FifoPoller, FifoReader, FifoWriter } from "../ipc/fifo.ts";
import { logger } from "../log.ts";
import { Doorbell } from "../net/protocol.ts";
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

/** How often an unconnected write end retries, in ms. */
export const FIFO_RETRY_MS = 20;
/** The same, while no process is in the slot (the spare slot, mostly). */
const IDLE_RETRY_MS = 500;
/** How long the dispatcher waits for the watchdog's account of a dead worker. */
const DEATH_RECORD_WAIT_MS = 3_000;

/** Keeps a FIFO write end connected: retries while the reader is missing. */
class Bell {
  readonly writer: FifoWriter;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  readonly #onConnect: () => void;
  readonly #retryMs: () => number;

  /** `retryMs`: how long to wait before trying again (longer while nobody is expected at the other end). */
  constructor(path: string, onConnect: () => void, retryMs: () => number = () => FIFO_RETRY_MS) {
    this.writer = new FifoWriter(path);
    this.#onConnect = onConnect;
    this.#retryMs = retryMs;
  }

  /** Tries at once, whatever retry is pending (the peer just showed up). */
  kick(): void {
    if (this.#closed || this.writer.connected) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.connect();
  }

  connect(): void {
    if (this.#closed || this.#timer !== undefined) return;
    const attempt = () => {
      this.#timer = undefined;
      if (this.#closed) return;
      let connected = false;
      try {
        connected = this.writer.tryConnect();
      } catch (err) {
        // Not ENXIO: the FIFO is broken (removed, replaced). Keep trying; the watchdog repairs or replaces.
        logger().warn("doorbell {path}: {err}; retrying", { path: this.writer.path, err: String(err) });
      }
      if (connected) this.#onConnect();
      else this.#timer = setTimeout(attempt, this.#retryMs());
    };
    attempt();
  }

  ring(byte: number): boolean {
    if (this.writer.send(byte)) return true;
    this.connect(); // reader gone: reconnect when it comes back
    return false;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.writer.close();
  }
}

/** Dispatcher side of the local link to worker `id`. */
export class LocalWorkerLink implements WorkerLink {
  readonly id: number;
  readonly host: string;
  readonly #slot: SlotView;
  readonly #tickets: SlotTickets;
  readonly #ledger: TicketLedger;
  readonly #reader: FifoReader;
  readonly #bell: Bell;
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
    this.#reader = new FifoReader(paths.wdtube(this.id), {
      onConnect: () => {
        this.#bell.kick(); // the worker said hello: its read end is open, ours can connect now
        this.#maybeReady();
      },
      onClose: () => this.#onClose(),
      onByte: (b) => {
        if (b === Doorbell.DONE) this.#events?.onDone(this);
        else if (b === Doorbell.PROBE) this.#events?.onProbe(this);
      },
      onMessage: (m) => this.#events?.onMessage?.(this, m),
    });
    // An empty slot (the spare, a worker between two lives) is tried rarely: its worker's hello kicks the bell.
    this.#bell = new Bell(
      paths.dwtube(this.id),
      () => this.#maybeReady(),
      () => slot.load("pid") > 0 ? FIFO_RETRY_MS : IDLE_RETRY_MS,
    );
  }

  get port(): number {
    return this.#slot.load("port");
  }

  get capacity(): number {
    return this.#tickets.capacity;
  }

  start(events: WorkerLinkEvents): void {
    this.#events = events;
    this.#poller.add(this.#reader);
    this.#bell.connect();
  }

  #onClose(): void {
    this.#wedged = false; // that worker is gone; its successor gets a fresh start
    this.#slot.store("link_wedged_at", 0);
    this.#bell.writer.close();
    this.#bell.connect();
    this.#events?.onClosed(this);
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
    return !this.#draining && !this.#wedged && this.#reader.connected && this.#bell.writer.connected &&
      this.present() && !this.#ledger.blocked() && this.#tickets.hasFree();
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
    return this.#bell.ring(Doorbell.PROBE);
  }

  send(message: Uint8Array): boolean {
    return this.#bell.writer.sendMessage(message);
  }

  setDraining(on: boolean): void {
    this.#draining = on;
  }

  markWedged(): void {
    this.#wedged = true;
    this.#slot.store("link_wedged_at", this.#clock.now());
  }

  close(): void {
    this.#poller.remove(this.#reader);
    this.#reader.close();
    this.#bell.close();
  }
}

/** Worker side of the local link. */
export class LocalDispatcherLink implements DispatcherLink {
  readonly #tickets: SlotTickets;
  readonly #reader: FifoReader;
  readonly #bell: Bell;
  readonly #poller: FifoPoller;
  /** The dispatcher's slot: its queue depth says whether it waits for a "done". */
  readonly #dispatcher: SlotView | undefined;
  #events: DispatcherLinkEvents | undefined;
  /** Retiring: the door stays closed, even across a new dispatcher. */
  #retired = false;

  constructor(slot: SlotView, paths: InstancePaths, poller: FifoPoller, clock: Clock, dispatcher?: SlotView) {
    this.#tickets = new SlotTickets(slot, clock);
    this.#dispatcher = dispatcher;
    this.#tickets.onTakenBack = () => this.#bell.ring(Doorbell.DONE);
    this.#poller = poller;
    this.#reader = new FifoReader(paths.dwtube(slot.index), {
      onConnect: () => {
        // A new dispatcher opened its ends. Our write end may still be open from
        // its predecessor, so it has not heard our hello: say it again, and
        // that we are free when we are.
        if (this.#bell.ring(Doorbell.HELLO) && this.#tickets.hasFree()) this.#bell.ring(Doorbell.DONE);
        this.#events?.onConnected();
      },
      onClose: () => this.#events?.onDisconnected(),
      onByte: (b) => {
        if (b === Doorbell.ASSIGN) this.#events?.onAssigned();
        else if (b === Doorbell.PROBE) this.#bell.ring(Doorbell.PROBE);
      },
      onMessage: (m) => this.#events?.onMessage?.(m),
    });
    this.#bell = new Bell(paths.wdtube(slot.index), () => {});
  }

  start(events: DispatcherLinkEvents): void {
    this.#events = events;
    this.#poller.add(this.#reader);
    this.#bell.connect();
  }

  ready(): void {
    // A previous incarnation may have died mid-request: start clean, keeping the generations.
    this.#tickets.open(this.#retired);
    if (!this.#retired) this.#bell.ring(Doorbell.DONE);
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
    // The pong wakes the dispatcher: only worth it when clients wait for a worker and the dispatcher is not
    // already polling the slots for one (it does while clients wait, so under load no pong is rung). It
    // publishes its queue depth, then that it polls, before it looks for a free worker, and the slot went
    // idle before these reads: either it sees this worker idle, or this worker rings. No wake-up is lost.
    const d = this.#dispatcher;
    if (!this.#retired && (!d || (d.load("queue_depth") > 0 && d.load("polling") === 0))) {
      this.#bell.ring(Doorbell.DONE);
    }
  }

  retire(): void {
    this.#retired = true;
    this.#tickets.retire();
  }

  send(message: Uint8Array): boolean {
    return this.#bell.writer.sendMessage(message);
  }

  holdsTicket(): boolean {
    return this.#tickets.holdsTicket();
  }

  close(): void {
    this.#poller.remove(this.#reader);
    this.#reader.close();
    this.#bell.close();
  }
}
