/**
 * Resident memory of the children, published in their slots every
 * heartbeat, and the graceful replacement of a worker that grew over
 * `--max-worker-rss-mb`.
 *
 * A limit below what a fresh worker already holds could only churn: every
 * replacement would be over it from its first breath. So the size of each
 * worker just after it got ready is noted; when one is already over the
 * limit, the limit is refused (an error says so, `osps status` shows it) and
 * nobody is replaced for memory until a reload sets another limit. A
 * replacement that fails (its new process does not serve) is tried again
 * only after `--failed-retry-ms`.
 * @module
 */
import { logger } from "../log.ts";
import { procUsage } from "../sys/proc.ts";
import type { Clock } from "../sys/clock.ts";
import { ExitReason } from "./exit_reason.ts";
import type { SupervisedChild } from "./supervisor.ts";
import type { Replacement, WorkerSlots } from "./worker_slots.ts";

/** What the memory watch reports for `osps status`. */
export interface MemoryNote {
  /** The limit refused, MiB, and why. */
  readonly refused_mb: number;
  readonly reason: string;
}

/** The memory watch of one incarnation. */
export class MemoryWatch {
  readonly #clock: Clock;
  /** Resident MiB of each worker process seen just after it got ready, before any work (pid → MiB). */
  #fresh = new Map<number, number>();
  /** Each worker process's slot `served` count when first seen: moved on means it is no longer fresh. */
  #servedAtStart = new Map<number, number>();
  #refused: MemoryNote | null = null;
  #retryAt = 0;
  readonly #pending = new Set<Replacement>();
  /** Workers replaced for memory so far. */
  replaced = 0;
  /** Called when the refusal changes (null: the limit is in force again). */
  onNote: (note: MemoryNote | null) => void = () => {};

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /**
   * One heartbeat: publishes each running child's resident memory, notes
   * the fresh size of new workers, and replaces (the graceful way) an
   * enlisted worker over `limitMb`: it finishes its requests, it is never
   * killed for it.
   */
  check(children: readonly SupervisedChild[], slots: WorkerSlots, limitMb: number, retryMs: number): void {
    const now = this.#clock.now();
    const rss = new Map<SupervisedChild, number>();
    const live = new Set<number>();
    for (const c of children) {
      const bytes = c.pid > 0 ? procUsage(c.pid)?.residentBytes ?? 0 : 0;
      rss.set(c, bytes / 1024 / 1024);
      c.spec.slot.store("rss_kb", Math.round(bytes / 1024));
      if (c.pid <= 0 || !c.spec.isWorker) continue;
      live.add(c.pid);
      const served = c.spec.slot.load("served");
      if (!this.#servedAtStart.has(c.pid)) this.#servedAtStart.set(c.pid, served);
      const untouched = this.#servedAtStart.get(c.pid) === served && c.spec.slot.load("conns") === 0;
      if (c.state === "ready" && bytes > 0 && untouched && !this.#fresh.has(c.pid)) {
        this.#fresh.set(c.pid, bytes / 1024 / 1024);
      }
    }
    for (const pid of this.#servedAtStart.keys()) {
      if (!live.has(pid)) {
        this.#servedAtStart.delete(pid);
        this.#fresh.delete(pid);
      }
    }
    this.settle(retryMs);
    if (limitMb <= 0 || this.#refusedAt(limitMb)) return;
    if (this.#refused) this.#note(null); // another limit since: in force again
    const fat = [...this.#fresh].find(([, mb]) => mb > limitMb);
    if (fat) {
      const who = children.find((c) => c.pid === fat[0])!;
      const reason = `--max-worker-rss-mb ${limitMb} is below what a fresh worker holds ` +
        `(${who.spec.name} had ${Math.round(fat[1])} MiB when it got ready): no worker is replaced for ` +
        "memory until a reload sets a higher limit";
      logger().error("{reason}", { reason });
      this.#note({ refused_mb: limitMb, reason });
      return;
    }
    if (now < this.#retryAt) return;
    for (const w of slots.enlisted) {
      const mb = rss.get(w)!;
      if (w.state !== "ready" || mb <= limitMb || slots.pending(w)) continue;
      logger().warn(
        "{name} (pid {pid}) is resident {mb} MiB, over --max-worker-rss-mb {limit}: " +
          "replacing it (it finishes its requests first)",
        { name: w.spec.name, pid: w.pid, mb: Math.round(mb), limit: limitMb },
      );
      this.#pending.add(slots.replace(w, ExitReason.REPLACED_RSS));
    }
  }

  /**
   * Counts the replacements asked for memory that have ended (the cycle calls
   * it after every step of the replacements); a failed one holds the next back
   * for `retryMs`. True when one ended.
   */
  settle(retryMs: number): boolean {
    const now = this.#clock.now();
    let ended = false;
    for (const r of this.#pending) {
      if (!r.outcome) continue;
      ended = true;
      this.#pending.delete(r);
      if (r.outcome.kind === "replaced") this.replaced++;
      if (r.outcome.kind === "failed") {
        this.#retryAt = now + retryMs;
        logger().error("replacing {old} for memory failed ({why}); trying again in {s} s", {
          old: r.old.spec.name,
          why: r.outcome.why,
          s: retryMs / 1000,
        });
      }
    }
    return ended;
  }

  #refusedAt(limitMb: number): boolean {
    return this.#refused?.refused_mb === limitMb;
  }

  #note(note: MemoryNote | null): void {
    this.#refused = note;
    this.onNote(note);
  }
}
