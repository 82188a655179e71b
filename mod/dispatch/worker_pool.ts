/**
 * The dispatcher's pool: which worker gets the next client, the bounded FIFO
 * queue of clients waiting for one, ticket issue, and the sweep that takes
 * back tickets nobody used. Works on {@link WorkerLink}s, so it does not care
 * how a worker is reached; the links hold the truth about tickets (for local
 * workers, shared memory), the pool keeps no expiry timers of its own.
 *
 * Fair shares. One client address may not hold the pool: it gets at most its
 * fair share of the tickets (a ticket is a place in a worker, unused or
 * running): with C places in the workers that serve and A addresses active
 * (holding tickets or waiting, itself included), `max(1, ⌊C / A⌋)`; alone,
 * `max(1, C − 1)`, so that whoever comes next finds a place at once however
 * long the first one's requests run (`--max-tickets-per-addr` can lower it).
 * The queue is work-conserving: an address may fill it while nobody else
 * waits, but when it is full and another address asks, that address takes
 * the newest place of the one holding more than `max(1, ⌊queue / addresses
 * queued⌋)`. A waiter held back by its share never holds up those behind it,
 * and a client never waits for a free place nobody in the queue may take.
 * Loopback is one address for every local user, so its share is not held
 * against it (a connection holds one unused ticket at a time instead), but it
 * counts among the active addresses.
 * @module
 */
import type { PoolConfig } from "../cli/config.ts";
import { logger } from "../log.ts";
import { type Assignment, Status } from "../net/protocol.ts";
import type { Clock, TimerHandle } from "../sys/clock.ts";
import { newTicket } from "../link/tickets.ts";
import type { Fate, LostWork, WorkerLink } from "../link/worker_link.ts";

/** A refusal the dispatcher turns into a status line. */
export interface Refusal {
  readonly refused: string;
  readonly status: number;
}

/** Who asks for a worker. */
export interface Requester {
  /** Peer `host:port` (written into the ticket's slot). */
  readonly peer: string;
  /** Its address as the per-address limits count it (`addrKey`: "loopback" for every local client). */
  readonly owner: string;
  /** False where the fair share of tickets is not held against it (loopback). */
  readonly capped: boolean;
}

interface Waiter {
  readonly type: string;
  /** Runs alone in its worker (its type killed a worker recently). */
  readonly alone: boolean;
  readonly who: Requester;
  /** Settles the waiter's promise. */
  readonly resolve: (r: Assignment | Refusal) => void;
  /** When it joined the queue. */
  readonly since: number;
  /** Told its place once it has waited {@link QUEUED_NOTICE_MS}. */
  readonly onQueued: (position: number) => unknown;
  noticed: boolean;
}

/**
 * While clients wait, how often the pool looks in shared memory for a freed
 * worker. Polling under load, doorbells when idle (as Linux's NAPI does for
 * network cards): a worker that frees up while the pool polls rings no
 * doorbell, which saves a pipe write and a wake-up of this process per
 * request exactly when requests are many.
 */
export const POLL_MS = 1;
/** A waiting client is told `202 QUEUED <n>` once it has waited this long (a shorter wait costs no line). */
export const QUEUED_NOTICE_MS = 20;

/** Tickets remembered for OUTCOME and give-back, newest last. */
const ISSUED_MEMORY = 4096;

/** Hooks the dispatcher gives the pool. */
export interface PoolHooks {
  /** The number of waiting clients changed (published in shm: workers ring only when someone waits). */
  onQueueDepth?(depth: number): void;
  /** The pool starts (true) or stops polling shared memory for freed workers (published: workers then need not ring). */
  onPolling?(on: boolean): void;
  /** A worker died holding one of our tickets. */
  onLost?(link: WorkerLink, lost: LostWork): void;
  /** A message from a worker on its link's data channel. */
  onMessage?(link: WorkerLink, message: Uint8Array): void;
  /** A ticket went unused: its client gave it back (`returned`) or it ran out (`expired`). */
  onTicketUnused?(outcome: "returned" | "expired"): void;
  /** A worker's link closed (its process died or stopped). */
  onClosed?(link: WorkerLink): void;
}

/** Picks workers round-robin, queues clients when none is free. */
export class WorkerPool {
  readonly #links: WorkerLink[];
  readonly #cfg: PoolConfig;
  readonly #clock: Clock;
  readonly #hooks: PoolHooks;
  readonly #queue: Waiter[] = [];
  /** ticket → the link that issued it. */
  readonly #issued = new Map<string, WorkerLink>();
  #next = 0;
  #draining = false;
  /** Probes in flight: worker id → when sent. */
  readonly #probes = new Map<number, number>();
  #probeTimer: ReturnType<typeof setInterval> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  /** The poll while clients wait (see {@link POLL_MS}). */
  #poll: TimerHandle;

  constructor(links: readonly WorkerLink[], cfg: PoolConfig, clock: Clock, hooks: PoolHooks = {}) {
    this.#links = [...links];
    this.#cfg = cfg;
    this.#clock = clock;
    this.#hooks = hooks;
  }

  /** Clients waiting for a worker. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Starts every link, and the sweep of expired tickets. */
  start(): void {
    for (const link of this.#links) this.#startLink(link);
    // A predecessor may have died between handing out a ticket and its use: the sweep takes it back.
    this.sweep();
    const every = Math.min(250, Math.max(20, Math.floor(this.#cfg.ticketTtlMs / 4)));
    this.#sweepTimer = setInterval(() => this.sweep(), every);
  }

  /** Adds a worker that came later (a remote worker attaching for the first time). */
  addLink(link: WorkerLink): void {
    this.#links.push(link);
    this.#startLink(link);
  }

  #startLink(link: WorkerLink): void {
    link.start({
      onReady: () => this.#pump(),
      onDone: () => this.#pump(),
      onClosed: (l) => {
        this.#probes.delete(l.id);
        logger().info("worker {id} link closed; not routing to it", { id: l.id });
        this.#hooks.onClosed?.(l);
      },
      onLost: (l, lost) => this.#hooks.onLost?.(l, lost),
      onProbe: (l) => this.#probes.delete(l.id),
      onMessage: (l, m) => this.#hooks.onMessage?.(l, m),
    });
  }

  /**
   * Finds a worker for one request: at once, or after waiting in the queue
   * (`onWait` is called as it joins the queue, with the function to call if
   * the client leaves and gives up its place; `onQueued` is told its position
   * once it has waited {@link QUEUED_NOTICE_MS}), or refused (queue full,
   * timeout, draining, left). Nothing is allocated for a client that need not wait. With `alone`, the
   * request gets a worker that holds no other ticket, and that worker takes no other while it runs.
   */
  acquire(
    type: string,
    who: Requester,
    onQueued: (position: number) => unknown,
    onWait?: (leave: () => void) => void,
    alone = false,
  ): Promise<Assignment | Refusal> {
    if (this.#draining) {
      return Promise.resolve({ refused: "server is stopping; retry later", status: Status.BUSY });
    }
    if (this.#queue.length > 0) this.#pump(); // a worker may have freed since the last poll: the queue goes first
    // What is still free now, nobody waiting may take (each is held back by its share): this client may.
    const now = this.#tryAssign(type, who, alone);
    if (now) return Promise.resolve(now);
    if (this.#queue.length >= this.#cfg.queueSize && !this.#makeRoomFor(who.owner)) {
      return Promise.resolve({
        refused: `all workers busy and ${this.#queue.length} clients waiting; retry later`,
        status: Status.BUSY,
      });
    }
    const { promise, resolve } = Promise.withResolvers<Assignment | Refusal>();
    const waiter: Waiter = { type, alone, who, since: this.#clock.now(), onQueued, noticed: false, resolve };
    this.#queue.push(waiter);
    onWait?.(() => {
      if (this.#remove(waiter)) waiter.resolve({ refused: "client left the queue", status: Status.BUSY });
    });
    this.#queueChanged();
    // Published before this second look: a worker freed in between either was seen here, or saw the
    // queue depth (and that the pool polls) and rang its doorbell (no lost wake-up).
    this.#pump();
    return promise;
  }

  /** Publishes the queue depth; polls shared memory while anyone waits, and only then. */
  #queueChanged(): void {
    this.#hooks.onQueueDepth?.(this.#queue.length);
    if (this.#queue.length > 0 && this.#poll === undefined) {
      this.#poll = this.#clock.after(POLL_MS, () => this.#tick());
      this.#hooks.onPolling?.(true); // after the poll is armed: "polling" always means a poll will come
    } else if (this.#queue.length === 0 && this.#poll !== undefined) {
      this.#hooks.onPolling?.(false); // before the poll stops
      this.#clock.cancel(this.#poll);
      this.#poll = undefined;
    }
  }

  /** One poll: freed workers to waiters, waiters past the queue timeout refused, long waits told their place. */
  #tick(): void {
    // `#poll` still holds this (fired) timer meanwhile: a queue that empties clears it, and polling stops.
    this.#pump();
    const now = this.#clock.now();
    for (let i = 0; i < this.#queue.length;) {
      const w = this.#queue[i]!;
      const waited = now - w.since;
      if (waited >= this.#cfg.queueTimeoutMs) {
        this.#remove(w);
        w.resolve({
          refused: `no worker free within ${this.#cfg.queueTimeoutMs} ms; retry later`,
          status: Status.BUSY,
        });
        continue;
      }
      if (!w.noticed && waited >= QUEUED_NOTICE_MS) {
        w.noticed = true;
        w.onQueued(i + 1);
      }
      i++;
    }
    if (this.#poll !== undefined) this.#poll = this.#clock.after(POLL_MS, () => this.#tick());
  }

  /** The hosts of every worker this pool may assign, each once (a client scopes its network access to them). */
  hosts(): string[] {
    return [...new Set(this.#links.map((l) => l.host))];
  }

  /** Takes back a ticket its client never received or will not use (it left); frees the worker at once. */
  giveBack(a: Assignment): void {
    const link = this.#issued.get(a.ticket);
    if (link?.reclaim(a.ticket)) {
      this.#hooks.onTicketUnused?.("returned");
      this.#pump();
    }
  }

  /** True while `ticket` is issued and not yet used. */
  unused(ticket: string): boolean {
    return this.fate(ticket).state === "pending";
  }

  /** What became of a ticket this dispatcher issued. */
  fate(ticket: string): Fate {
    return this.#issued.get(ticket)?.fate(ticket) ?? { state: "unknown" };
  }

  /** The worker id a ticket was issued for, if remembered. */
  workerOf(ticket: string): number | undefined {
    return this.#issued.get(ticket)?.id;
  }

  #remove(w: Waiter): boolean {
    const i = this.#queue.indexOf(w);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    this.#queueChanged();
    return true;
  }

  /**
   * The queue is full and `owner` asks: if another address holds more than
   * its share of the places, its newest waiter is refused and `owner` gets
   * that place. False when no address holds more than its share.
   */
  #makeRoomFor(owner: string): boolean {
    const count = new Map<string, number>([[owner, 0]]);
    for (const w of this.#queue) count.set(w.who.owner, (count.get(w.who.owner) ?? 0) + 1);
    const share = Math.max(1, Math.floor(this.#cfg.queueSize / count.size));
    if (count.get(owner)! >= share) return false;
    let most: string | undefined;
    for (const [o, n] of count) if (n > share && (most === undefined || n > count.get(most)!)) most = o;
    if (most === undefined) return false;
    const i = this.#queue.findLastIndex((w) => w.who.owner === most);
    const [evicted] = this.#queue.splice(i, 1);
    this.#queueChanged();
    evicted!.resolve({
      refused: `all workers busy and your address holds ${count.get(most)} of the ${this.#cfg.queueSize} ` +
        "places in the queue, more than its share: another address took this one; retry later",
      status: Status.BUSY,
    });
    return true;
  }

  /** Tickets issued and not finished (unused or running) per owner now. */
  #liveByOwner(): Map<string, number> {
    const live = new Map<string, number>();
    for (const l of this.#links) for (const o of l.owners()) live.set(o, (live.get(o) ?? 0) + 1);
    return live;
  }

  /**
   * The most tickets `owner` may hold now: its fair share of the places in the
   * workers that serve, among the addresses active (see the module's note).
   */
  fairShare(owner: string, live = this.#liveByOwner()): number {
    let places = 0;
    for (const l of this.#links) if (l.present()) places += l.capacity;
    const active = new Set(live.keys()).add(owner);
    for (const w of this.#queue) active.add(w.who.owner);
    const fair = active.size <= 1 ? Math.max(1, places - 1) : Math.max(1, Math.floor(places / active.size));
    return this.#cfg.maxTicketsPerAddr > 0 ? Math.min(fair, this.#cfg.maxTicketsPerAddr) : fair;
  }

  /** True when `who` holds its fair share of tickets already (`live`: per owner, counted once per pass). */
  #atShare(who: Requester, live?: Map<string, number>): boolean {
    if (!who.capped) return false;
    live ??= this.#liveByOwner();
    return (live.get(who.owner) ?? 0) >= this.fairShare(who.owner, live);
  }

  #tryAssign(type: string, who: Requester, alone: boolean, live?: Map<string, number>): Assignment | null {
    if (this.#atShare(who, live)) return null;
    const n = this.#links.length;
    for (let k = 0; k < n; k++) {
      const link = this.#links[(this.#next + k) % n]!;
      if (!link.available()) continue;
      const ticket = newTicket();
      const expiresAt = this.#clock.now() + this.#cfg.ticketTtlMs;
      if (!link.assign({ ticket, type, clientAddr: who.peer, owner: who.owner, expiresAt }, alone)) {
        continue;
      }
      this.#next = (this.#next + k + 1) % n;
      this.#issued.set(ticket, link);
      if (this.#issued.size > ISSUED_MEMORY) this.#issued.delete(this.#issued.keys().next().value!);
      return { host: link.host, port: link.port, ticket };
    }
    return null;
  }

  #pump(): void {
    // In order, but a waiter held back by its address's share does not hold up the ones behind it.
    let live: Map<string, number> | undefined; // per owner, counted once per pass, when a share is checked
    for (let i = 0; i < this.#queue.length;) {
      const w = this.#queue[i]!;
      if (w.who.capped) live ??= this.#liveByOwner();
      const a = this.#tryAssign(w.type, w.who, w.alone, live);
      if (a) {
        live?.set(w.who.owner, (live.get(w.who.owner) ?? 0) + 1);
        this.#queue.splice(i, 1);
        this.#queueChanged();
        w.resolve(a);
      } else if (!this.#links.some((l) => l.available())) return;
      else i++;
    }
  }

  /** Takes back every ticket past its expiry (shared memory is the truth); frees their workers. */
  sweep(): void {
    const now = this.#clock.now();
    let freed = 0;
    for (const link of this.#links) {
      const n = link.sweep(now);
      for (let i = 0; i < n; i++) this.#hooks.onTicketUnused?.("expired");
      if (n > 0) {
        logger().info("ticket for worker {id} expired unused; its place is free again", { id: link.id });
      }
      freed += n;
    }
    if (freed > 0) this.#pump();
  }

  /**
   * Every `everyMs`, sends a probe through each idle worker's link (the
   * worker echoes it from its event loop). One unanswered for `timeoutMs`
   * means the pipes between two live processes are stuck: the worker gets no
   * more clients, and the watchdog learns it from shm and replaces it.
   */
  probeEvery(everyMs: number, timeoutMs: number): void {
    if (everyMs <= 0) return;
    let lastRound = this.#clock.now();
    this.#probeTimer = setInterval(() => {
      const now = this.#clock.now();
      // Time this process itself did not run (stopped, a paused machine) is given back to the probes in
      // flight: their echoes may be sitting unread in the pipes. Only time awake counts against a worker.
      const stalled = now - lastRound - everyMs;
      lastRound = now;
      if (stalled > 0) { for (const [id, sent] of this.#probes) this.#probes.set(id, sent + stalled); }
      for (const link of this.#links) {
        const sent = this.#probes.get(link.id);
        if (sent === undefined) {
          if (link.available() && link.probe()) this.#probes.set(link.id, now);
        } else if (now - sent > timeoutMs) {
          this.#probes.delete(link.id);
          logger().error("worker {id}: probe unanswered for {ms} ms: pipes wedged; not routing to it", {
            id: link.id,
            ms: Math.round(now - sent),
          });
          link.markWedged();
        }
      }
    }, everyMs);
  }

  /**
   * Sends `message` to every connected worker but `except`; returns how many
   * took it. `refused` is told of each worker behind a link that did not
   * (its backlog full: stopped, or not reading).
   */
  broadcast(message: Uint8Array, except?: WorkerLink, refused?: (l: WorkerLink) => void): number {
    let n = 0;
    for (const l of this.#links) {
      if (l === except) continue;
      if (l.send(message)) n++;
      else if (refused && l.present()) refused(l);
    }
    return n;
  }

  /** The links, local and remote. */
  get links(): readonly WorkerLink[] {
    return this.#links;
  }

  /** Resolves once every running worker can take work (or after `timeoutMs`: a worker may be down). */
  async linked(timeoutMs: number): Promise<void> {
    const deadline = this.#clock.now() + timeoutMs;
    while (this.#clock.now() < deadline && !this.#links.every((l) => l.available() || !l.present())) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops assigning: queued clients are told the server is stopping. */
  drain(): void {
    this.#draining = true;
    for (const w of this.#queue.splice(0)) {
      w.resolve({ refused: "server is stopping; retry later", status: Status.BUSY });
    }
    this.#queueChanged();
  }

  /** Closes every link and timer. */
  close(): void {
    clearInterval(this.#probeTimer);
    clearInterval(this.#sweepTimer);
    for (const w of this.#queue.splice(0)) {
      w.resolve({ refused: "server is stopping; retry later", status: Status.BUSY });
    }
    this.#queueChanged();
    for (const l of this.#links) l.close();
  }
}
