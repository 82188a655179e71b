/**
 * The local dispatcher↔worker link: the assignment lives in the worker's shm
 * slot, and a FIFO pair (`dwtube<i>` dispatcher → worker, `wdtube<i>` worker
 * → dispatcher) carries doorbells (the worker's "done", the dispatcher's
 * probe and the worker's echo) and the data channel's messages, in sessions
 * that survive either end being replaced (`mod/ipc/fifo_pair.ts`).
 *
 * Shared memory is the truth; doorbells only wake the peer. The slot's `work`
 * word holds the work state and an assignment generation, and moves by
 * compare-and-swap: idle → assigned (the dispatcher, generation + 1, after
 * writing the ticket, so a claim never sees a half-written one), assigned →
 * busy (the worker, on a valid ticket), busy → idle (the worker), assigned →
 * idle (the dispatcher, when a ticket expires or its client left; the worker
 * too, when it is shown an expired ticket). Every step compares the whole
 * word, so a ticket is used at most once even when both sides race, and a
 * slow claim can never take a newer ticket's place. A restarted dispatcher
 * rebuilds its view from the segment alone.
 * @module
 */
import type { InstancePaths } from "../cli/config.ts";
import type { FifoPoller } from "../ipc/fifo.ts";
import { FifoFrame } from "../ipc/fifo_frames.ts";
import { FIFO_RETRY_MS, FifoPair } from "../ipc/fifo_pair.ts";
import { logger } from "../log.ts";
import { type SlotView, workGen, WorkState, workState, workWord } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { sleep } from "../deadline.ts";
import { requestCaused } from "../supervise/exit_reason.ts";
import { SlotTickets } from "./slot_tickets.ts";
import type {
  ClaimRefusal,
  DispatcherLink,
  DispatcherLinkEvents,
  Fate,
  LostWork,
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

/** The assignment this link made last, kept to say what became of it. */
interface Issued {
  readonly ticket: string;
  readonly type: string;
  readonly owner: string;
  readonly gen: number;
  readonly pid: number;
}

/** Dispatcher side of the local link to worker `id`. */
export class LocalWorkerLink implements WorkerLink {
  readonly id: number;
  readonly host: string;
  readonly #slot: SlotView;
  readonly #tickets: SlotTickets;
  readonly #pipes: FifoPair;
  readonly #poller: FifoPoller;
  readonly #clock: Clock;
  #events: WorkerLinkEvents | undefined;
  #draining = false;
  #wedged = false;
  #issued: Issued | undefined;
  /** How earlier assignments ended, for OUTCOME (bounded, oldest dropped first). */
  readonly #history = new Map<string, "served" | "expired">();
  /** Assignments lost with a dead process, newest last (a few, for OUTCOME). */
  readonly #lost: LostWork[] = [];

  constructor(slot: SlotView, paths: InstancePaths, host: string, poller: FifoPoller, clock: Clock) {
    this.id = slot.index;
    this.host = host;
    this.#slot = slot;
    this.#tickets = new SlotTickets(slot, clock);
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

  start(events: WorkerLinkEvents): void {
    this.#events = events;
    this.#pipes.start(this.#poller);
  }

  #onClose(): void {
    this.#wedged = false; // that worker is gone; its successor gets a fresh start
    this.#slot.store("link_wedged_at", 0);
    this.#events?.onClosed(this);
    const issued = this.#issued;
    // An assignment's loss is told once: a later process of the slot closing (a clean exit, a
    // replacement) must not report the same death again.
    if (issued && !this.#lost.some((l) => l.ticket === issued.ticket)) void this.#awaitDeathRecord(issued);
  }

  /**
   * The watchdog writes, when it reaps a worker, which assignment it held
   * (`death_gen`) and why it ended (`last_exit`). Wait for that account (the
   * pipe's EOF comes first), and report the assignment lost if it was one of ours.
   */
  async #awaitDeathRecord(issued: Issued): Promise<void> {
    const slot = this.#slot;
    const until = this.#clock.now() + DEATH_RECORD_WAIT_MS;
    // The watchdog writes the record before it clears the pid.
    while (slot.load("pid") === issued.pid && this.#clock.now() < until) await sleep(5);
    if (slot.load("death_gen") !== issued.gen) return;
    const reason = slot.load("last_exit");
    const started = slot.load("death_state") === WorkState.BUSY;
    const lost: LostWork = {
      ticket: issued.ticket,
      type: issued.type,
      arg: started && workGen(slot.load("work")) === issued.gen ? slot.text("request_arg") : "",
      started,
      reason,
      limitMs: slot.load("death_limit_ms"),
      requestCaused: requestCaused(reason),
    };
    this.#lost.push(lost);
    if (this.#lost.length > 8) this.#lost.shift();
    this.#events?.onLost(this, lost);
  }

  #maybeReady(): void {
    if (this.available()) this.#events?.onReady(this);
  }

  available(): boolean {
    return !this.#draining && !this.#wedged && this.#pipes.connected && this.present() &&
      workState(this.#slot.load("work")) === WorkState.IDLE;
  }

  /** A worker runs in the slot and is one of the instance's (a spare slot's worker, kept warm, is routed nothing). */
  present(): boolean {
    return this.#slot.load("pid") > 0 && this.#slot.load("spare") === 0;
  }

  assign(t: Ticket): boolean {
    if (!this.available()) return false;
    // How the previous assignment ended: a used ticket was cleared from the slot, one taken back unused was not.
    const previous = this.#issued && this.#fateOfCurrent(this.#issued);
    const gen = this.#tickets.publish(t);
    if (gen === null) return false;
    if (this.#issued && previous) {
      this.#history.set(this.#issued.ticket, previous);
      if (this.#history.size > 64) this.#history.delete(this.#history.keys().next().value!);
    }
    this.#issued = { ticket: t.ticket, type: t.type, owner: t.owner, gen, pid: this.#slot.load("pid") };
    // No ASSIGN doorbell: the ticket in the slot is the assignment, and the worker reads it when the client
    // shows it. Ringing would wake the worker for nothing, at the cost of a pipe write and a wake-up per request.
    return true;
  }

  outstanding(): string | null {
    const i = this.#issued;
    return i && this.#slot.load("work") === workWord(WorkState.ASSIGNED, i.gen) ? i.owner : null;
  }

  reclaim(ticket: string): boolean {
    const i = this.#issued;
    return i !== undefined && i.ticket === ticket && this.#tickets.takeBack(i.gen);
  }

  sweep(now: number): boolean {
    return this.#tickets.sweep(now);
  }

  fate(ticket: string): Fate {
    const lost = this.#lost.find((l) => l.ticket === ticket);
    if (lost) return { state: "lost", lost };
    const earlier = this.#history.get(ticket);
    if (earlier) return { state: earlier };
    const i = this.#issued;
    if (!i || i.ticket !== ticket) return { state: "unknown" };
    const word = this.#slot.load("work");
    if (workGen(word) !== i.gen) return { state: "served" }; // a later assignment followed
    switch (workState(word)) {
      case WorkState.ASSIGNED:
        return { state: "pending" };
      case WorkState.BUSY:
        return { state: "running" };
      case WorkState.OFFLINE:
        return { state: "unknown" }; // died; its death record is on the way
    }
    return { state: this.#fateOfCurrent(i) };
  }

  /** The current assignment, once idle again: a used ticket was cleared from the slot, one taken back was not. */
  #fateOfCurrent(i: Issued): "served" | "expired" {
    return this.#tickets.holds(i.ticket) ? "expired" : "served";
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

  constructor(slot: SlotView, paths: InstancePaths, poller: FifoPoller, clock: Clock, dispatcher?: SlotView) {
    this.#tickets = new SlotTickets(slot, clock);
    this.#dispatcher = dispatcher;
    this.#tickets.onTakenBack = () => this.#pipes.ring(FifoFrame.DONE);
    this.#poller = poller;
    this.#pipes = new FifoPair(paths.dwtube(slot.index), paths.wdtube(slot.index), {
      onConnect: () => {
        // A dispatcher (a new one, or ours again) is there: tell it we are free when we are.
        if (this.#tickets.idle()) this.#pipes.ring(FifoFrame.DONE);
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
    // A previous incarnation may have died mid-request: start clean, keeping the generation.
    this.#tickets.reset();
    if (!this.#tickets.retired) this.#pipes.ring(FifoFrame.DONE);
  }

  claim(ticket: string, type: string, arg: string): ClaimRefusal | null {
    return this.#tickets.claim(ticket, type, arg);
  }

  done(retire = false): void {
    this.#tickets.finish(retire);
    // The "done" doorbell wakes the dispatcher: only worth it when clients wait for a worker and the dispatcher is not
    // already polling the slots for one (it does while clients wait, so under load none is rung). It
    // publishes its queue depth, then that it polls, before it looks for a free worker, and the slot went
    // idle before these reads: either it sees this worker idle, or this worker rings. No wake-up is lost.
    const d = this.#dispatcher;
    if (!this.#tickets.retired && (!d || (d.load("queue_depth") > 0 && d.load("polling") === 0))) {
      this.#pipes.ring(FifoFrame.DONE);
    }
  }

  retire(): void {
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
