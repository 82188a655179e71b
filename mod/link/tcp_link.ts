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
import { LinkState, type SlotView, SupState, workGen, WorkState, workState, workWord } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { sleep } from "../deadline.ts";
import { ExitReason } from "../supervise/exit_reason.ts";
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

type RemoteState = "offline" | "idle" | "assigned" | "busy" | "draining";
const STATE_WORD: Record<RemoteState, number> = {
  offline: WorkState.OFFLINE,
  idle: WorkState.IDLE,
  assigned: WorkState.ASSIGNED,
  busy: WorkState.BUSY,
  draining: WorkState.DRAINING,
};

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
  #state: RemoteState = "offline";
  #gen = 0;
  #draining = false;
  #wedged = false;
  #issued: (Ticket & { claimedGen?: number }) | undefined;
  readonly #history = new Map<string, "served" | "expired">();
  readonly #lost: LostWork[] = [];
  #ping: ReturnType<typeof setInterval> | undefined;

  constructor(slot: SlotView, key: string, who: WorkerIdentity, clock: Clock, timing: LinkTiming) {
    this.id = slot.index;
    this.key = key;
    this.host = who.host;
    this.port = who.port;
    this.#slot = slot;
    this.#clock = clock;
    this.#timing = timing;
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
    this.#issued = undefined;
    this.#history.clear();
    this.#lost.length = 0;
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
    this.#setState(
      ["idle", "draining", "busy", "assigned"].includes(who.state) ? who.state as RemoteState : "idle",
    );
    clearInterval(this.#ping);
    this.#ping = setInterval(() => this.#ch?.send(Frame.PING), this.#timing.heartbeatMs);
    void this.#readLoop(ch);
    if (this.available()) this.#events?.onReady(this);
  }

  #setState(s: RemoteState): void {
    this.#state = s;
    if (s === "assigned") this.#gen++;
    this.#slot.store("work", workWord(STATE_WORD[s], this.#gen));
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
        this.#ch?.send(Frame.PONG);
        return;
      case Frame.PONG:
        return;
      case Frame.PROBE:
        return this.#events?.onProbe(this);
      case Frame.MESSAGE:
        return this.#events?.onMessage?.(this, f.payload);
      case Frame.CLAIMED: {
        const m = parseJson(f);
        if (this.#issued && m.ticket === this.#issued.ticket) {
          this.#issued.claimedGen = Number(m.gen);
          this.#setState("busy");
        }
        return;
      }
      case Frame.DONE: {
        const m = parseJson(f);
        if (Number.isInteger(m.served)) this.#slot.store("served", m.served as number);
        this.#finish("served", m.state === "draining" ? "draining" : "idle");
        return this.#events?.onDone(this);
      }
      case Frame.EXPIRED:
        this.#finish("expired", "idle");
        return this.#events?.onDone(this);
      case Frame.STATE: {
        const m = parseJson(f);
        const s = typeof m.state === "string" && m.state in STATE_WORD ? m.state as RemoteState : "offline";
        // The worker could not take a ticket we sent (its state had moved on): that ticket is void.
        if (this.#issued && m.refused === this.#issued.ticket) this.#finish("expired", s);
        else if (s !== "assigned") this.#setState(s);
        if (this.available()) this.#events?.onReady(this);
        return;
      }
    }
    throw new LinkError(`unexpected ${frameName(f.type)} frame from a worker`);
  }

  /** The current assignment ended (`fate`); the worker is now `next`. */
  #finish(fate: "served" | "expired", next: RemoteState): void {
    if (this.#issued) this.#remember(this.#issued.ticket, fate);
    this.#issued = undefined;
    this.#setState(next);
  }

  #remember(ticket: string, fate: "served" | "expired"): void {
    this.#history.set(ticket, fate);
    if (this.#history.size > 64) this.#history.delete(this.#history.keys().next().value!);
  }

  #detach(ch: LinkChannel, why: string): void {
    if (ch !== this.#ch) return;
    ch.close();
    this.#ch = undefined;
    clearInterval(this.#ping);
    const held = this.#state === "assigned" || this.#state === "busy" ? this.#issued : undefined;
    // A worker that drained and then closed its link left on purpose (replaced, or its host stopping).
    const left = this.#state === "draining" && why === "closed by the worker";
    this.#issued = undefined;
    this.#setState("offline");
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
    if (held) {
      const lost: LostWork = {
        ticket: held.ticket,
        type: held.type,
        arg: "",
        started: held.claimedGen !== undefined,
        reason: ExitReason.LINK_LOST,
        limitMs: 0,
        requestCaused: false,
      };
      this.#lost.push(lost);
      if (this.#lost.length > 8) this.#lost.shift();
      this.#events?.onLost(this, lost);
    }
  }

  available(): boolean {
    return this.attached && this.#state === "idle" && !this.#draining && !this.#wedged;
  }

  present(): boolean {
    return this.attached;
  }

  assign(t: Ticket): boolean {
    if (!this.available()) return false;
    const ttlMs = Math.max(1, Math.round(t.expiresAt - this.#clock.now()));
    if (
      !this.#ch!.send(
        Frame.ASSIGN,
        jsonPayload({ ticket: t.ticket, type: t.type, client: t.clientAddr, ttlMs }),
      )
    ) {
      return false;
    }
    this.#issued = { ...t };
    this.#setState("assigned");
    this.#slot.store("ticket_expires_at", t.expiresAt);
    this.#slot.setText("request_type", t.type);
    return true;
  }

  outstanding(): string | null {
    return this.#state === "assigned" && this.#issued ? this.#issued.owner : null;
  }

  reclaim(ticket: string): boolean {
    if (this.#state !== "assigned" || this.#issued?.ticket !== ticket) return false;
    this.#ch?.send(Frame.REVOKE, jsonPayload({ ticket }));
    this.#finish("expired", "idle");
    return true;
  }

  sweep(now: number): boolean {
    if (this.#state !== "assigned" || !this.#issued || now <= this.#issued.expiresAt + REVOKE_GRACE_MS) {
      return false;
    }
    return this.reclaim(this.#issued.ticket);
  }

  fate(ticket: string): Fate {
    const lost = this.#lost.find((l) => l.ticket === ticket);
    if (lost) return { state: "lost", lost };
    const earlier = this.#history.get(ticket);
    if (earlier) return { state: earlier };
    if (this.#issued?.ticket !== ticket) return { state: "unknown" };
    return { state: this.#state === "busy" ? "running" : this.#state === "assigned" ? "pending" : "unknown" };
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
  /** Waiting for the next ASSIGN (a client that outran it over another path). */
  #waiters: Array<() => void> = [];
  #lastError = "";

  constructor(slot: SlotView, join: JoinSettings, clock: Clock) {
    this.#tickets = new SlotTickets(slot, clock);
    this.#tickets.onTakenBack = () => this.#ch?.send(Frame.EXPIRED);
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
    this.#sweep = setInterval(() => {
      if (this.#tickets.sweep(this.#clock.now())) this.#ch?.send(Frame.EXPIRED);
    }, 250);
    void this.#keepAttached();
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
      slot.store("link_state", LinkState.ATTACHED);
      log.info("attached to the dispatcher at {at}", { at: this.#at });
      this.#ping = setInterval(() => ch.send(Frame.PING), this.#join.timing.heartbeatMs);
      this.#events?.onConnected();
      const why = await this.#serve(ch);
      clearInterval(this.#ping);
      ch.close();
      this.#ch = undefined;
      if (this.#closed) break;
      slot.store("link_state", LinkState.LOST);
      // The dispatcher counts an unused ticket of this link as dead: take it back here too.
      const word = slot.load("work");
      if (workState(word) === WorkState.ASSIGNED) this.#tickets.takeBack(workGen(word));
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
        return;
      case Frame.PROBE:
        ch.send(Frame.PROBE);
        return;
      case Frame.MESSAGE:
        return this.#events?.onMessage?.(f.payload);
      case Frame.ASSIGN: {
        const m = parseJson(f);
        const ttlMs = Number(m.ttlMs);
        if (typeof m.ticket !== "string" || !/^[0-9a-f]{32}$/.test(m.ticket) || typeof m.type !== "string") {
          throw new LinkError("malformed ASSIGN");
        }
        const gen = this.#tickets.publish({
          ticket: m.ticket,
          type: m.type,
          clientAddr: String(m.client ?? ""),
          expiresAt: this.#clock.now() + (Number.isFinite(ttlMs) ? Math.min(ttlMs, 600_000) : 0),
        });
        // Not idle (the dispatcher's view was behind): say what we are instead, and that the ticket is void.
        if (gen === null) ch.send(Frame.STATE, jsonPayload({ state: this.#stateName(), refused: m.ticket }));
        else this.#events?.onAssigned();
        for (const w of this.#waiters.splice(0)) w();
        return;
      }
      case Frame.REVOKE: {
        const m = parseJson(f);
        const word = this.#tickets.slot.load("work");
        if (
          typeof m.ticket === "string" && workState(word) === WorkState.ASSIGNED &&
          this.#tickets.holds(m.ticket)
        ) {
          this.#tickets.takeBack(workGen(word));
        }
        return;
      }
    }
    throw new LinkError(`unexpected ${frameName(f.type)} frame from the dispatcher`);
  }

  #stateName(): RemoteState {
    const s = workState(this.#tickets.slot.load("work"));
    return (Object.keys(STATE_WORD) as RemoteState[]).find((k) => STATE_WORD[k] === s) ?? "offline";
  }

  /** Who this worker is now (the identity's work state, from the slot). */
  stateName(): string {
    return this.#stateName();
  }

  ready(): void {
    this.#tickets.reset();
    this.#ch?.send(Frame.STATE, jsonPayload({ state: this.#stateName() }));
  }

  claim(ticket: string, type: string, arg: string): ClaimRefusal | null {
    const refusal = this.#tickets.claim(ticket, type, arg);
    if (refusal === null) this.#ch?.send(Frame.CLAIMED, jsonPayload({ ticket, gen: this.#tickets.busyGen }));
    return refusal;
  }

  /**
   * Resolves true when the next assignment arrives within `ms`: a client may
   * outrun its ticket here (it came from the dispatcher by another path).
   */
  assignmentInFlight(ms: number): Promise<boolean> {
    if (!this.attached) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== done);
        resolve(false);
      }, ms);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.#waiters.push(done);
    });
  }

  done(retire = false): void {
    this.#tickets.finish(retire);
    this.#ch?.send(
      Frame.DONE,
      jsonPayload({ served: this.#tickets.slot.load("served"), state: this.#stateName() }),
    );
  }

  retire(): void {
    this.#tickets.retire();
    this.#ch?.send(Frame.STATE, jsonPayload({ state: this.#stateName() }));
  }

  send(message: Uint8Array): boolean {
    return this.#ch?.send(Frame.MESSAGE, message) ?? false;
  }

  holdsTicket(): boolean {
    return this.#tickets.holdsTicket();
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    clearInterval(this.#ping);
    this.#ch?.close();
    for (const w of this.#waiters.splice(0)) w();
  }
}
