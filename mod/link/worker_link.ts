/**
 * The dispatcher↔worker link, as an interface both roles program against.
 * `local_link.ts` implements it with shared memory and a FIFO pair; a TCP
 * implementation for workers on other hosts implements the same interface,
 * so neither role changes shape with the transport.
 * @module
 */

/** A hand-off the dispatcher gives a worker. */
export interface Ticket {
  /** 32 hex digits, 128 random bits (never all zero), one use. */
  readonly ticket: string;
  readonly type: string;
  /** The client's `host:port`. */
  readonly clientAddr: string;
  /** Whom the ticket counts against for the per-address fair share (see {@link WorkerLink.owners}). */
  readonly owner: string;
  /** Expiry on the dispatcher's monotonic clock. */
  readonly expiresAt: number;
}

/** What happened to an issued ticket, as far as the link can tell. */
export type Fate =
  | { readonly state: "pending" | "running" | "served" | "expired" | "unknown" }
  | { readonly state: "lost"; readonly lost: LostWork };

/** An assignment the worker held when its process ended (killed or crashed). */
export interface LostWork {
  readonly ticket: string;
  readonly type: string;
  /** The argument of the request, when the worker had started it (first 32 bytes). */
  readonly arg: string;
  /** False when the worker died holding the ticket before its client presented it: nothing ran. */
  readonly started: boolean;
  /** Why the process ended (an `ExitReason` code, see `mod/supervise/child_states.ts`). */
  readonly reason: number;
  /** For a kill by the watchdog because of the request: the limit it ran past, ms; else 0. */
  readonly limitMs: number;
  /** True when this request itself caused the kill (it blocked the worker or ran past its deadline). */
  readonly requestCaused: boolean;
  /** When another request on the same worker caused the kill: that request ("type arg"). */
  readonly culprit?: string;
}

/** What a link tells the dispatcher. */
export interface WorkerLinkEvents {
  /** The worker can take work (connected and idle). */
  onReady(link: WorkerLink): void;
  /** The worker finished and is idle again. */
  onDone(link: WorkerLink): void;
  /** The worker's end closed: it died or stopped. Route nothing to it. */
  onClosed(link: WorkerLink): void;
  /** The process behind the link ended while it held an assignment; `lost` says which and why. */
  onLost(link: WorkerLink, lost: LostWork): void;
  /** A probe came back through both pipes. */
  onProbe(link: WorkerLink): void;
  /** A message on the link's data channel (chat events and the like; the link does not read it). */
  onMessage?(link: WorkerLink, message: Uint8Array): void;
}

/** The dispatcher's handle on one worker. */
export interface WorkerLink {
  readonly id: number;
  /** Address clients connect to. */
  readonly host: string;
  readonly port: number;
  /** True when {@link WorkerLink.assign} can succeed now. */
  available(): boolean;
  /** Tickets the worker may hold at once (its concurrency). */
  readonly capacity: number;
  /** True while a worker process is behind the link, available or not (an empty spare slot has none). */
  present(): boolean;
  /**
   * Gives `t` to the worker; false when it could not take it (full, gone, draining). With `alone`, only to a
   * worker that holds no other ticket, and none other is given to it while `t` lives (a request type that has
   * killed a worker recently runs alone, so that if it does so again it takes no other client's request with it).
   */
  assign(t: Ticket, alone?: boolean): boolean;
  /** Owners of the tickets issued to the worker and not finished (unused or running), one per ticket. */
  owners(): string[];
  /** Takes back `ticket` if it is still unused (its client left); true when it was. */
  reclaim(ticket: string): boolean;
  /** Takes back the unused tickets past their expiry at `now`; returns how many. */
  sweep(now: number): number;
  /** What became of `ticket`, if this link issued it. */
  fate(ticket: string): Fate;
  /** Sends an end-to-end probe through the link. */
  probe(): boolean;
  /**
   * Sends a message on the link's data channel, in order with everything else
   * sent on the link. False when the worker is not connected or not reading.
   */
  send(message: Uint8Array): boolean;
  /** Marks the worker as draining (no new work) or not. */
  setDraining(on: boolean): void;
  /**
   * A probe went unanswered: route nothing more to this worker and let its
   * supervisor know. Lifted when the worker's end closes (it was replaced).
   */
  markWedged(): void;
  start(events: WorkerLinkEvents): void;
  close(): void;
}

/** Why a worker refused a ticket. */
export type ClaimRefusal = "no-ticket" | "mismatch" | "expired" | "wrong-type";

/** A ticket a worker accepted: the entry it runs in (see `slot_tickets.ts`). */
export interface Claim {
  readonly entry: number;
  readonly gen: number;
}

/** What a link tells a worker. */
export interface DispatcherLinkEvents {
  /** A ticket was assigned (the ASSIGN doorbell or frame). */
  onAssigned(): void;
  /** The dispatcher connected (or reconnected after a restart). */
  onConnected(): void;
  /** The dispatcher's end closed. The worker keeps serving its current client. */
  onDisconnected(): void;
  /** A message on the link's data channel. */
  onMessage?(message: Uint8Array): void;
}

/** The worker's handle on its dispatcher. */
export interface DispatcherLink {
  /** Validates and consumes a ticket presented by a client for `type` with argument `arg`. */
  claim(ticket: string, type: string, arg: string): Claim | ClaimRefusal;
  /**
   * Marks the claimed request whose service runs synchronously right now
   * (null: none), so that a hang is blamed on that request alone.
   */
  running(claim: Claim | null): void;
  /**
   * The claimed request is finished: its place is free again, tell the
   * dispatcher. With `retire`, close the door first, so that no new ticket
   * can be assigned.
   */
  done(claim: Claim, retire?: boolean): void;
  /** No new assignment from now on (an idle worker becomes draining at once). */
  retire(): void;
  /** True while a ticket is assigned and not yet used (a draining worker waits for its client). */
  holdsTicket(): boolean;
  /**
   * Over a network link a client can outrun its ticket (it came from the
   * dispatcher by another path): resolves true when the assignment of
   * `ticket` itself arrives within `ms` (other tickets arriving meanwhile do
   * not end the wait). Absent where the ticket is always there first.
   */
  ticketInFlight?(ticket: string, ms: number): Promise<boolean>;
  /** The worker is ready (listening): advertise idleness. */
  ready(): void;
  /** Sends a message on the link's data channel; false when the dispatcher is not connected or not reading. */
  send(message: Uint8Array): boolean;
  start(events: DispatcherLinkEvents): void;
  close(): void;
}
