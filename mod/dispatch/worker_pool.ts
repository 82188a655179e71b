/**
 * The dispatcher's pool: which worker gets the next client, the bounded FIFO
 * queue of clients waiting for one, and ticket issue and expiry. Works on
 * {@link WorkerLink}s, so it does not care how a worker is reached.
 * @module
 */
import type { PoolConfig } from "../cli/config.ts";
import { logger } from "../log.ts";
import { type Assignment, Status } from "../net/protocol.ts";
import type { WorkerLink } from "../link/worker_link.ts";

/** A refusal the dispatcher turns into a status line. */
export interface Refusal {
  readonly refused: string;
  readonly status: number;
}

interface Waiter {
  readonly type: string;
  readonly clientAddr: string;
  readonly resolve: (r: Assignment | Refusal) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** 128 random bits as 32 hex digits. */
export function newTicket(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** Picks workers round-robin, queues clients when none is free. */
export class WorkerPool {
  readonly #links: readonly WorkerLink[];
  readonly #cfg: PoolConfig;
  readonly #queue: Waiter[] = [];
  readonly #expiry = new Map<number, ReturnType<typeof setTimeout>>();
  #next = 0;
  #draining = false;
  /** Probes in flight: worker id → when sent. */
  readonly #probes = new Map<number, number>();
  #probeTimer: ReturnType<typeof setInterval> | undefined;

  constructor(links: readonly WorkerLink[], cfg: PoolConfig) {
    this.#links = links;
    this.#cfg = cfg;
  }

  /** Clients waiting for a worker. */
  get queued(): number {
    return this.#queue.length;
  }

  /** Starts every link; frees and closes feed the queue. */
  start(): void {
    const log = logger();
    for (const link of this.#links) {
      link.start({
        onReady: () => this.#pump(),
        onAck: () => {},
        onDone: () => {
          clearTimeout(this.#expiry.get(link.id));
          this.#pump();
        },
        onClosed: (id) => {
          clearTimeout(this.#expiry.get(id));
          this.#probes.delete(id);
          log.info("worker {id} link closed; not routing to it", { id });
        },
        onProbe: (id) => this.#probes.delete(id),
      });
      // A predecessor may have died between handing out a ticket and its use:
      // nobody else would take that ticket back.
      this.#expireLater(link);
    }
  }

  /**
   * Finds a worker for one request: at once, or after waiting in the queue
   * (`onQueued` is told the position), or refused (queue full, timeout, draining).
   */
  async acquire(
    type: string,
    clientAddr: string,
    onQueued: (position: number) => Promise<unknown>,
    left?: AbortSignal,
  ): Promise<Assignment | Refusal> {
    if (this.#draining) return { refused: "server is stopping; retry later", status: Status.BUSY };
    const now = this.#tryAssign(type, clientAddr);
    if (now) return now;
    if (this.#queue.length >= this.#cfg.queueSize) {
      return {
        refused: `all workers busy and ${this.#queue.length} clients waiting; retry later`,
        status: Status.BUSY,
      };
    }
    const { promise, resolve } = Promise.withResolvers<Assignment | Refusal>();
    const waiter: Waiter = { type, clientAddr, resolve, timer: undefined };
    waiter.timer = setTimeout(() => {
      this.#remove(waiter);
      resolve({
        refused: `no worker free within ${this.#cfg.queueTimeoutMs} ms; retry later`,
        status: Status.BUSY,
      });
    }, this.#cfg.queueTimeoutMs);
    this.#queue.push(waiter);
    // A client that leaves while it waits gives up its place (and no ticket is spent on it).
    left?.addEventListener("abort", () => {
      this.#remove(waiter);
      clearTimeout(waiter.timer);
      resolve({ refused: "client left the queue", status: Status.BUSY });
    });
    await onQueued(this.#queue.length);
    return promise;
  }

  /** Takes back a ticket its client never received (it left just as a worker freed). */
  giveBack(a: Assignment): void {
    const link = this.#links.find((l) => l.port === a.port);
    if (link?.reclaim()) {
      clearTimeout(this.#expiry.get(link.id));
      this.#pump();
    }
  }

  #remove(w: Waiter): void {
    const i = this.#queue.indexOf(w);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  #tryAssign(type: string, clientAddr: string): Assignment | null {
    const n = this.#links.length;
    for (let k = 0; k < n; k++) {
      const link = this.#links[(this.#next + k) % n]!;
      if (!link.available()) continue;
      const ticket = newTicket();
      if (!link.assign({ ticket, type, clientAddr, expiresMs: Date.now() + this.#cfg.ticketTtlMs })) continue;
      this.#next = (this.#next + k + 1) % n;
      this.#expireLater(link);
      return { host: link.host, port: link.port, ticket };
    }
    return null;
  }

  /** Takes the worker's ticket back if it is still unused after its time to live. */
  #expireLater(link: WorkerLink): void {
    clearTimeout(this.#expiry.get(link.id));
    this.#expiry.set(
      link.id,
      setTimeout(() => {
        if (link.reclaim()) {
          logger().info("ticket for worker {id} expired unused", { id: link.id });
          this.#pump();
        }
      }, this.#cfg.ticketTtlMs + 50),
    );
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      const w = this.#queue[0]!;
      const a = this.#tryAssign(w.type, w.clientAddr);
      if (!a) return;
      this.#queue.shift();
      clearTimeout(w.timer);
      w.resolve(a);
    }
  }

  /**
   * Every `everyMs`, sends a probe through each idle worker's FIFO pair (the
   * worker echoes it from its event loop). One unanswered for `timeoutMs`
   * means the pipes between two live processes are stuck: the worker gets no
   * more clients, and the watchdog learns it from shm and replaces it.
   */
  probeEvery(everyMs: number, timeoutMs: number): void {
    if (everyMs <= 0) return;
    this.#probeTimer = setInterval(() => {
      const now = Date.now();
      for (const link of this.#links) {
        const sent = this.#probes.get(link.id);
        if (sent === undefined) {
          if (link.available() && link.probe()) this.#probes.set(link.id, now);
        } else if (now - sent > timeoutMs) {
          this.#probes.delete(link.id);
          logger().error("worker {id}: probe unanswered for {ms} ms: pipes wedged; not routing to it", {
            id: link.id,
            ms: now - sent,
          });
          link.markWedged();
        }
      }
    }, everyMs);
  }

  /** Resolves once every worker can take work (or after `timeoutMs`: a worker may be down). */
  async linked(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && !this.#links.every((l) => l.available())) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops assigning: queued clients are told the server is stopping. */
  drain(): void {
    this.#draining = true;
    for (const w of this.#queue.splice(0)) {
      clearTimeout(w.timer);
      w.resolve({ refused: "server is stopping; retry later", status: Status.BUSY });
    }
  }

  /** Closes every link and timer. */
  close(): void {
    clearInterval(this.#probeTimer);
    for (const t of this.#expiry.values()) clearTimeout(t);
    for (const l of this.#links) l.close();
  }
}
