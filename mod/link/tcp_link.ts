/**
 * The TCP worker link, for workers on other hosts: the same interface as the
 * local link (`worker_link.ts`), over one authenticated TCP connection per
 * worker (`link_wire.ts`, `link_auth.ts`).
 *
 * The worker side keeps its assignment in its own shared-memory slot on its
 * host, through the same {@link SlotTickets} as a local worker, so tickets are
 * checked by the same code (one use, constant time, bound to the worker and
 * the type, expiry) and its own watchdog sees its requests (deadlines, death
 * records). The dispatcher side mirrors the worker's state in a remote slot of
 * the dispatcher's segment, for routing and for `osps status`.
 *
 * Liveness: both sides send a heartbeat every `heartbeatMs`; a link silent
 * for `timeoutMs` is lost (host down, cable pulled, partition). The dispatcher
 * stops routing to it and its unused ticket dies; the worker takes back its
 * unused ticket and attaches again by itself, with capped backoff, for as
 * long as it runs (a restarted dispatcher is found the same way).
 * @module
 */
import { logger } from "../log.ts";
import { LinkState, type SlotView, SupState } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { sleep } from "../deadline.ts";
import { joinDispatcher, type WorkerIdentity } from "./link_auth.ts";
import {
  Frame,
  frameName,
  jsonPayload,
  LinkChannel,
  LinkError,
  type LinkFrame,
  parseJson,
} from "./link_wire.ts";
import { DoorState, recordDeath, SlotTickets } from "./slot_tickets.ts";
import { workSummary } from "./ticket_reports.ts";
import { TicketLedger } from "./ticket_ledger.ts";
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

/** Heartbeat settings of the TCP link (`--link-heartbeat-ms`, `--link-timeout-ms`). */
export interface LinkTiming {
  readonly heartbeatMs: number;
  readonly timeoutMs: number;
}

/** A ticket's expiry is judged by the worker; the dispatcher waits this much longer before revoking it. */
const REVOKE_GRACE_MS = 250;
/** A link that stayed up this long was a success: the next attempt after it ends starts the backoff afresh. */
const STABLE_LINK_MS = 10_000;

/**
 * How long a worker waits before its next try to attach after `failures`
 * tries in a row failed (refused, unreachable, or up for less than
 * {@link STABLE_LINK_MS}): 100 ms doubling to 5 s, times a jitter of 0.5 to
 * 1.5 so that a host's workers, or many hosts, do not come back in step.
 */
export function attachBackoffMs(failures: number, random = Math.random()): number {
  return Math.min(5_000, 100 * 2 ** Math.max(0, failures - 1)) * (0.5 + random);
}

/** The door a remote worker's reported state means (its work state names, from `workSummary`). */
function doorOf(state: unknown): number {
  return state === "draining" ? DoorState.DRAINING : state === "offline" ? DoorState.OFFLINE : DoorState.OPEN;
}

/** Dispatcher side of a remote worker's link; (re)attached by the link server each time it connects. */
export class TcpWorkerLink implements WorkerLink {
  readonly id: number;
  /** `host:port`: who this link is for; a re-attaching worker with the same key gets the same link. */
  key: string;
  host: string;
  port: number;
  /** When the worker's link ended last (monotonic ms); the link server frees the slot longest unused first. */
  detachedAt = 0;
  /** True when the worker drained and closed its link on purpose (it was replaced, or its host stops). */
  left = false;
  readonly #slot: SlotView;
  readonly #clock: Clock;
  readonly #timing: LinkTiming;
  #ch: LinkChannel | undefined;
  #events: WorkerLinkEvents | undefined;
  /** The remote worker's tickets as this dispatcher issued them, mirrored in its remote slot. */
  #ledger: TicketLedger;
  /** Tickets the worker may hold (its concurrency, at most the mirror's entries). */
  #capacity = 1;
  /** Tickets it held from before this link (a previous dispatcher's): counted until it reports them done. */
  #foreign = 0;
  #draining = false;
  #wedged = false;
  #ping: ReturnType<typeof setInterval> | undefined;

  constructor(slot: SlotView, key: string, who: WorkerIdentity, clock: Clock, timing: LinkTiming) {
    this.id = slot.index;
    this.key = key;
    this.host = who.host;
    this.port = who.port;
    this.#slot = slot;
    this.#clock = clock;
    this.#timing = timing;
    this.#ledger = new TicketLedger(new SlotTickets(slot, clock));
  }

  get capacity(): number {
    return this.#capacity;
  }

  /** True while a worker is attached. */
  get attached(): boolean {
    return this.#ch !== undefined && !this.#ch.closed;
  }

  start(events: WorkerLinkEvents): void {
    this.#events = events;
  }

  /**
   * Gives this (detached) link's slot to another worker, `key`: what the slot
   * remembers of the one that left (its tickets' fates, counters) goes.
   */
  rebind(key: string, who: WorkerIdentity): void {
    this.key = key;
    this.host = who.host;
    this.port = who.port;
    this.#ledger = new TicketLedger(new SlotTickets(this.#slot, this.#clock));
    this.#foreign = 0;
    this.#wedged = false;
    this.left = false;
    for (const field of ["pid", "restarts", "served", "remote_watchdog_pid"] as const) {
      this.#slot.store(field, 0);
    }
  }

  /** A worker (re)attached over `ch` (already authenticated): route to it again from its reported state. */
  attach(ch: LinkChannel, who: WorkerIdentity): void {
    const old = this.#ch;
    this.#ch = ch;
    old?.close();
    const slot = this.#slot;
    if (slot.load("pid") !== 0 && slot.load("pid") !== who.pid) slot.add("restarts", 1);
    slot.store("pid", who.pid);
    slot.store("port", who.port);
    slot.setText("host", who.host);
    slot.store("remote_watchdog_pid", who.watchdogPid);
    slot.store("served", who.served);
    slot.store("started_at", this.#clock.now());
    slot.store("heartbeat_at", this.#clock.now());
    slot.store("link_state", LinkState.ATTACHED);
    slot.store("sup_state", SupState.READY);
    this.#wedged = false;
    this.left = false;
    this.#capacity = Math.max(1, Math.min(who.capacity ?? 1, slot.tickets.length));
    this.#foreign = Math.min(
      this.#capacity,
      who.live ?? (who.state === "busy" || who.state === "assigned" ? 1 : 0),
    );
    this.#ledger.tickets.open(doorOf(who.state) === DoorState.DRAINING);
    clearInterval(this.#ping);
    this.#ping = setInterval(() => this.#ch?.send(Frame.PING), this.#timing.heartbeatMs);
    void this.#readLoop(ch);
    if (this.available()) this.#events?.onReady(this);
  }

  async #readLoop(ch: LinkChannel): Promise<void> {
    let why = "closed by the worker";
    try {
      for (;;) {
        const f = await ch.read(this.#timing.timeoutMs);
        if (!f) break;
        if (ch !== this.#ch) return;
        this.#slot.store("heartbeat_at", this.#clock.now());
        this.#onFrame(f);
      }
    } catch (err) {
      why = err instanceof Error ? err.message : String(err);
    }
    this.#detach(ch, why);
  }

  #onFrame(f: LinkFrame): void {
    switch (f.type) {
      case Frame.PING:
        // Answered here, in order, after every frame before it was acted on: a draining worker's door waits
        // for the PONG to the PING after its STATE (TcpDispatcherLink.retire). Never defer this.
        this.#ch?.send(Frame.PONG);
        return;
      case Frame.PONG:
        return;
      case Frame.ECHO:
        return this.#events?.onProbe(this);
      case Frame.MESSAGE:
        return this.#events?.onMessage?.(this, f.payload);
      case Frame.CLAIMED: {
        const i = this.#ledger.find(String(parseJson(f).ticket));
        if (i) this.#ledger.tickets.mirrorClaimed(i.issue, this.#clock.now());
        return;
      }
      case Frame.DONE: {
        const m = parseJson(f);
        if (Number.isInteger(m.served)) this.#slot.store("served", m.served as number);
        const i = this.#ledger.find(String(m.ticket));
        if (i) this.#ledger.tickets.mirrorFinished(i.issue);
        else this.#foreign = Math.max(0, this.#foreign - 1);
        if (m.state === "draining") this.#ledger.tickets.mirrorDoor(DoorState.DRAINING);
        return this.#events?.onDone(this);
      }
      case Frame.EXPIRED: {
        const i = this.#ledger.find(String(parseJson(f).ticket));
        if (i) this.#ledger.tickets.takeBack(i.issue);
        else this.#foreign = Math.max(0, this.#foreign - 1);
        return this.#events?.onDone(this);
      }
      case Frame.STATE: {
        const m = parseJson(f);
        // The worker could not take a ticket we sent (its door was closed, or it was full): that ticket is void.
        const refused = m.refused === undefined ? undefined : this.#ledger.find(String(m.refused));
        if (refused) this.#ledger.tickets.takeBack(refused.issue);
        this.#ledger.tickets.mirrorDoor(doorOf(m.state));
        if (this.available()) this.#events?.onReady(this);
        return;
      }
    }
    throw new LinkError(`unexpected ${frameName(f.type)} frame from a worker`);
  }

  #detach(ch: LinkChannel, why: string): void {
    if (ch !== this.#ch) return;
    ch.close();
    this.#ch = undefined;
    clearInterval(this.#ping);
    // A worker that drained and then closed its link left on purpose (replaced, or its host stopping).
    const left = this.#ledger.tickets.door() === DoorState.DRAINING && why === "closed by the worker";
    const lost = this.#ledger.linkLost();
    recordDeath(this.#slot, this.#slot.load("pid"), null, 0);
    this.#slot.store("link_state", left ? LinkState.LEFT : LinkState.LOST);
    this.left = left;
    this.detachedAt = this.#clock.now();
    this.#slot.store("sup_state", SupState.NONE);
    if (left) {
      logger().info("remote worker {key} (slot {id}) drained and left", { key: this.key, id: this.id });
    } else {
      logger().warn("remote worker {key} (slot {id}) link lost: {why}; not routing to it", {
        key: this.key,
        id: this.id,
        why,
      });
    }
    this.#events?.onClosed(this);
    for (const l of lost) this.#events?.onLost(this, l);
  }

  available(): boolean {
    return this.attached && !this.#draining && !this.#wedged && !this.#ledger.blocked() &&
      this.#ledger.owners().length + this.#foreign < this.#capacity && this.#ledger.tickets.hasFree();
  }

  present(): boolean {
    return this.attached;
  }

  assign(t: Ticket, alone = false): boolean {
    if (!this.available() || (alone && this.#foreign > 0)) return false;
    const issued = this.#ledger.issue(t, 0, alone);
    if (!issued) return false;
    const ttlMs = Math.max(1, Math.round(t.expiresAt - this.#clock.now()));
    if (
      !this.#ch!.send(
        Frame.ASSIGN,
        jsonPayload({ ticket: t.ticket, type: t.type, client: t.clientAddr, ttlMs }),
      )
    ) {
      this.#ledger.tickets.takeBack(issued.issue);
      return false;
    }
    return true;
  }

  owners(): string[] {
    return this.#ledger.owners();
  }

  reclaim(ticket: string): boolean {
    if (!this.#ledger.reclaim(ticket)) return false;
    this.#ch?.send(Frame.REVOKE, jsonPayload({ ticket }));
    return true;
  }

  sweep(now: number): number {
    // The worker judges expiry; revoke only what it should have given back by now.
    return this.#ledger.tickets.sweep(now - REVOKE_GRACE_MS, (entry) => {
      const i = this.#ledger.at(entry);
      if (i) this.#ch?.send(Frame.REVOKE, jsonPayload({ ticket: i.ticket }));
    });
  }

  fate(ticket: string): Fate {
    return this.#ledger.fate(ticket);
  }

  probe(): boolean {
    return this.#ch?.send(Frame.PROBE) ?? false;
  }

  send(message: Uint8Array): boolean {
    return this.#ch?.send(Frame.MESSAGE, message) ?? false;
  }

  setDraining(on: boolean): void {
    this.#draining = on;
  }

  markWedged(): void {
    this.#wedged = true;
    this.#slot.store("link_wedged_at", this.#clock.now());
  }

  close(): void {
    clearInterval(this.#ping);
    this.#ch?.close();
    this.#ch = undefined;
  }
}

/** Where and how a remote worker attaches. */
export interface JoinSettings {
  /** The dispatcher's link address. */
  readonly host: string;
  readonly port: number;
  readonly secret: Uint8Array;
  readonly timing: LinkTiming;
  /** Who this worker is, as of now (sent on every attach). */
  identity(): WorkerIdentity;
}

/** Worker side of the TCP link: attaches, keeps attached, and carries the ticket protocol. */
export class TcpDispatcherLink implements DispatcherLink {
  readonly #tickets: SlotTickets;
  readonly #join: JoinSettings;
  readonly #clock: Clock;
  #ch: LinkChannel | undefined;
  #events: DispatcherLinkEvents | undefined;
  #closed = false;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #ping: ReturnType<typeof setInterval> | undefined;
  /** Clients that outran their ticket over another path, by the ticket they wait for (its ASSIGN). */
  readonly #waiters = new Map<string, Array<(arrived: boolean) => void>>();
  #lastError = "";
  /** The ticket each running request was claimed with, by entry (the DONE frame names it). */
  readonly #claimed = new Map<number, string>();
  /** Retiring: the door stays closed. */
  #retired = false;
  /** PINGs sent and PONGs received on the current link (the dispatcher answers PINGs in order). */
  #pings = 0;
  #pongs = 0;
  /** Retiring, the door still open to ASSIGNs already on their way: the PONG count that closes it (0: none). */
  #doorClosesAt = 0;

  constructor(slot: SlotView, join: JoinSettings, clock: Clock) {
    this.#tickets = new SlotTickets(slot, clock);
    this.#tickets.onTakenBack = (entry) => this.#expired(entry);
    this.#join = join;
    this.#clock = clock;
    slot.store("link_state", LinkState.CONNECTING);
  }

  /** True while attached to a dispatcher. */
  get attached(): boolean {
    return this.#ch !== undefined && !this.#ch.closed;
  }

  start(events: DispatcherLinkEvents): void {
    this.#events = events;
    this.#sweep = setInterval(() => this.#tickets.sweep(this.#clock.now(), (e) => this.#expired(e)), 250);
    void this.#keepAttached();
  }

  /** An unused ticket expired here: its place is free again. */
  #expired(entry: number): void {
    this.#ch?.send(Frame.EXPIRED, jsonPayload({ ticket: this.#tickets.ticketOf(entry) }));
  }

  async #keepAttached(): Promise<void> {
    const log = logger();
    const slot = this.#tickets.slot;
    for (let failures = 0; !this.#closed;) {
      let ch: LinkChannel | undefined;
      try {
        const conn = await Deno.connect({
          hostname: this.#join.host,
          port: this.#join.port,
          transport: "tcp",
        });
        conn.setNoDelay(true);
        ch = new LinkChannel(conn);
        await joinDispatcher(ch, this.#join.secret, this.#join.identity(), this.#join.timing.timeoutMs);
      } catch (err) {
        ch?.close();
        const why = err instanceof Error ? err.message : String(err);
        const waitMs = attachBackoffMs(++failures);
        if (why !== this.#lastError) {
          log.warn("cannot attach to the dispatcher at {at}: {why}; retrying (backing off, at most 5 s)", {
            at: this.#at,
            why,
          });
        }
        this.#lastError = why;
        slot.store("link_state", LinkState.LOST);
        await sleep(waitMs);
        continue;
      }
      const since = this.#clock.now();
      this.#lastError = "";
      this.#ch = ch;
      this.#pings = this.#pongs = 0;
      slot.store("link_state", LinkState.ATTACHED);
      log.info("attached to the dispatcher at {at}", { at: this.#at });
      this.#ping = setInterval(() => this.#sendPing(ch), this.#join.timing.heartbeatMs);
      this.#events?.onConnected();
      const why = await this.#serve(ch);
      clearInterval(this.#ping);
      ch.close();
      this.#ch = undefined;
      // No ASSIGN comes over a link that ended; a new one is told this worker drains when it attaches.
      if (this.#doorClosesAt > 0) this.#closeDoor();
      if (this.#closed) break;
      slot.store("link_state", LinkState.LOST);
      // The dispatcher counts the unused tickets of this link as dead: take them back here too.
      this.#tickets.takeBackAll();
      log.warn("link to the dispatcher at {at} lost: {why}; attaching again", { at: this.#at, why });
      this.#events?.onDisconnected();
      // A link that ends soon after it began (the dispatcher closes it at once) counts as a failed try.
      failures = this.#clock.now() - since >= STABLE_LINK_MS ? 0 : failures + 1;
      await sleep(attachBackoffMs(failures));
    }
  }

  get #at(): string {
    return `${this.#join.host}:${this.#join.port}`;
  }

  /** Reads frames until the link ends; returns why it ended. */
  async #serve(ch: LinkChannel): Promise<string> {
    try {
      for (;;) {
        const f = await ch.read(this.#join.timing.timeoutMs);
        if (!f) return "closed by the dispatcher";
        this.#onFrame(ch, f);
      }
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    }
  }

  #onFrame(ch: LinkChannel, f: LinkFrame): void {
    switch (f.type) {
      case Frame.PING:
        ch.send(Frame.PONG);
        return;
      case Frame.PONG:
        if (++this.#pongs >= this.#doorClosesAt && this.#doorClosesAt > 0) this.#closeDoor();
        return;
      case Frame.PROBE:
        ch.send(Frame.ECHO);
        return;
      case Frame.MESSAGE:
        return this.#events?.onMessage?.(f.payload);
      case Frame.ASSIGN: {
        const m = parseJson(f);
        const ttlMs = Number(m.ttlMs);
        if (typeof m.ticket !== "string" || !/^[0-9a-f]{32}$/.test(m.ticket) || typeof m.type !== "string") {
          throw new LinkError("malformed ASSIGN");
        }
        const issue = this.#tickets.issue({
          ticket: m.ticket,
          type: m.type,
          clientAddr: String(m.client ?? ""),
          expiresAt: this.#clock.now() + (Number.isFinite(ttlMs) ? Math.min(ttlMs, 600_000) : 0),
        });
        // No room (the dispatcher's view was behind): say what we are instead, and that the ticket is void.
        if (issue === null) ch.send(Frame.STATE, jsonPayload({ state: this.stateName(), refused: m.ticket }));
        else this.#events?.onAssigned();
        this.#wake(m.ticket, issue !== null);
        return;
      }
      case Frame.REVOKE: {
        const m = parseJson(f);
        if (typeof m.ticket === "string" && /^[0-9a-f]{32}$/.test(m.ticket)) {
          this.#tickets.takeBackTicket(m.ticket);
        }
        return;
      }
    }
    throw new LinkError(`unexpected ${frameName(f.type)} frame from the dispatcher`);
  }

  /** Who this worker is now (the identity's work state, from the slot: idle, busy, draining…). */
  stateName(): string {
    if (this.#retired) return "draining"; // its door may stay open a moment longer: see retire()
    const s = workSummary(this.#tickets.slot, this.#clock.now());
    return s.text.startsWith("draining") ? "draining" : s.text.includes("/") ? "busy" : s.text;
  }

  /** Tickets this worker may hold at once. */
  get capacity(): number {
    return this.#tickets.capacity;
  }

  /** Tickets it holds now (unused or running). */
  live(): number {
    return this.#tickets.liveCount();
  }

  ready(): void {
    this.#tickets.open(this.#retired);
    this.#ch?.send(Frame.STATE, jsonPayload({ state: this.stateName() }));
  }

  claim(ticket: string, type: string, arg: string): Claim | ClaimRefusal {
    const claim = this.#tickets.claim(ticket, type, arg);
    if (typeof claim !== "string") {
      this.#claimed.set(claim.entry, ticket); // its entry forgets it (one use); DONE names it
      this.#ch?.send(Frame.CLAIMED, jsonPayload({ ticket, gen: claim.gen }));
    }
    return claim;
  }

  running(claim: Claim | null): void {
    this.#tickets.running(claim);
  }

  /**
   * Resolves true when the ASSIGN of `ticket` arrives within `ms` (and the
   * ticket was taken): a client may outrun its ticket here (it came from the
   * dispatcher by another path). Only that ticket's arrival ends the wait: with
   * many clients, other tickets keep arriving meanwhile.
   */
  ticketInFlight(ticket: string, ms: number): Promise<boolean> {
    if (!this.attached) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(false), ms);
      const done = (arrived: boolean) => {
        clearTimeout(timer);
        const list = this.#waiters.get(ticket);
        const i = list?.indexOf(done) ?? -1;
        if (i >= 0) list!.splice(i, 1);
        if (list?.length === 0) this.#waiters.delete(ticket);
        resolve(arrived);
      };
      const list = this.#waiters.get(ticket) ?? [];
      list.push(done);
      this.#waiters.set(ticket, list);
    });
  }

  /** Ends the waits for `ticket` (all waits when undefined: the link closes). */
  #wake(ticket: string | undefined, arrived: boolean): void {
    const lists = ticket === undefined ? [...this.#waiters.values()] : [this.#waiters.get(ticket) ?? []];
    for (const list of lists) for (const w of [...list]) w(arrived);
  }

  done(claim: Claim, retire = false): void {
    if (retire) this.retire();
    const ticket = this.#claimed.get(claim.entry);
    this.#claimed.delete(claim.entry);
    this.#tickets.finish(claim);
    this.#ch?.send(
      Frame.DONE,
      jsonPayload({ ticket, served: this.#tickets.slot.load("served"), state: this.stateName() }),
    );
  }

  /**
   * No new ticket from now on. The dispatcher may have sent ASSIGNs (and told
   * their clients) before it hears of it: the door stays open to those until
   * it has acted on this STATE `draining`. A PING sent right after it says
   * when: the dispatcher answers PINGs in order, each after every frame before
   * it, so the PONG to that one follows every ASSIGN sent before the STATE,
   * and none is sent after. Meanwhile {@link holdsTicket} is true, so the
   * worker does not close its listener on a client whose ticket is on its way.
   */
  retire(): void {
    if (this.#retired) return;
    this.#retired = true;
    const ch = this.#ch;
    if (ch?.send(Frame.STATE, jsonPayload({ state: "draining" })) && this.#sendPing(ch)) {
      this.#doorClosesAt = this.#pings;
    } else {
      this.#closeDoor(); // detached: the next link says "draining" in its handshake
    }
  }

  /** The dispatcher sends no more ASSIGNs: the door closes (an ASSIGN that came is held to its client). */
  #closeDoor(): void {
    this.#doorClosesAt = 0;
    this.#tickets.retire();
  }

  #sendPing(ch: LinkChannel): boolean {
    if (!ch.send(Frame.PING)) return false;
    this.#pings++;
    return true;
  }

  send(message: Uint8Array): boolean {
    return this.#ch?.send(Frame.MESSAGE, message) ?? false;
  }

  holdsTicket(): boolean {
    return this.#doorClosesAt > 0 || this.#tickets.holdsTicket();
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    clearInterval(this.#ping);
    this.#ch?.close();
    this.#wake(undefined, false);
  }
}
