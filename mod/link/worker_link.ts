/**
 * The dispatcher↔worker link, as an interface both roles program against.
 * `local_link.ts` implements it with shared memory and a FIFO pair; a TCP
 * implementation for workers on other hosts can implement the same interface
 * without changing the roles.
 * @module
 */

/** A hand-off the dispatcher gives a worker. */
export interface Ticket {
  /** 32 hex digits, 128 random bits, one use. */
  readonly ticket: string;
  readonly type: string;
  readonly clientAddr: string;
  readonly expiresMs: number;
}

/** What a link tells the dispatcher. */
export interface WorkerLinkEvents {
  /** The worker can take work (connected and idle). */
  onReady(id: number): void;
  /** The worker acknowledged an assignment (the "pong"). */
  onAck(id: number): void;
  /** The worker finished and is idle again. */
  onDone(id: number): void;
  /** The worker's end closed: it died or stopped. Route nothing to it. */
  onClosed(id: number): void;
  /** A probe came back through both pipes. */
  onProbe(id: number): void;
}

/** The dispatcher's handle on one worker. */
export interface WorkerLink {
  readonly id: number;
  readonly host: string;
  readonly port: number;
  /** True when {@link WorkerLink.assign} can succeed now. */
  available(): boolean;
  /** Gives `t` to the worker; false when it could not take it (busy, gone). */
  assign(t: Ticket): boolean;
  /** Takes back an unused ticket after it expired; true when it was still unused. */
  reclaim(): boolean;
  /** Sends an end-to-end probe through the pipe pair. */
  probe(): boolean;
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

/** What a link tells a worker. */
export interface DispatcherLinkEvents {
  /** A ticket was assigned (doorbell rang). */
  onAssigned(): void;
  /** The dispatcher connected (or reconnected after a restart). */
  onConnected(): void;
  /** The dispatcher's end closed. The worker keeps serving its current client. */
  onDisconnected(): void;
}

/** The worker's handle on its dispatcher. */
export interface DispatcherLink {
  /** Validates and consumes a ticket presented by a client. */
  claim(ticket: string, type: string): ClaimRefusal | null;
  /**
   * The request is finished: idle again, tell the dispatcher. With `retire`,
   * go straight to draining instead, so that no new ticket can be assigned.
   */
  done(retire?: boolean): void;
  /** The worker is ready (listening): advertise idleness. */
  ready(): void;
  start(events: DispatcherLinkEvents): void;
  close(): void;
}
