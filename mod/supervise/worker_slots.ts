/**
 * The local worker slots of an instance: N enlisted (the instance's workers)
 * and a spare, and the one way a running worker is replaced without a
 * moment of lost capacity (a reload, `--max-worker-rss-mb`):
 *
 * 1. a new process starts in the spare slot (its own port and FIFO pair),
 * 2. once it serves, it is enlisted and the dispatcher routes to it,
 * 3. only then is the old one told to leave: it takes no new ticket,
 *    finishes what it holds (still held to its deadlines), exits 0,
 * 4. its slot becomes the spare.
 *
 * Replacements run one at a time, in the order asked. When the spare cannot
 * start (its port taken by another program, say), the worker is replaced in
 * place instead: it drains and leaves, and its own slot starts again (the
 * pool is one short meanwhile; queued clients wait, none is refused).
 *
 * With a warm spare (`--warm-spare`) the spare slot's worker runs all the
 * time, ready but routed nothing (its slot says `spare`): a replacement
 * swaps at once, and when an enlisted worker's process dies the spare takes
 * its place at once while the dead one restarts (as the new spare), so the
 * pool is back to N serving workers as soon as the death is seen.
 * @module
 */
import type { SupervisedChild } from "./supervisor.ts";
import { logger } from "../log.ts";
import { sleep } from "../deadline.ts";
import type { Clock } from "../sys/clock.ts";

/** What the slots need from the watchdog. */
export interface SlotRules {
  /** True when a started worker serves (ready; on a joined host, attached to its dispatcher too). */
  serving(child: SupervisedChild): boolean;
  /** How long a new worker gets to serve. */
  bootTimeoutMs(): number;
  /** How long a leaving worker gets to finish what it holds before it is stopped. */
  leaveGraceMs(): number;
  readonly clock: Clock;
}

/** How a replacement went. */
export type Replaced =
  /** A new process took over in the spare slot; the old one left. */
  | "replaced"
  /** No spare could start: the worker left and its own slot started again. */
  | "in_place"
  /** Nothing done: the worker was no longer enlisted, or the instance is stopping. */
  | "skipped";

/** The enlisted workers and the spare; replacements, one at a time. */
export class WorkerSlots {
  /** Every local worker slot's child, in slot order. */
  readonly all: readonly SupervisedChild[];
  readonly #rules: SlotRules;
  readonly #enlisted: Set<SupervisedChild>;
  readonly #queued = new Set<SupervisedChild>();
  readonly #warm: boolean;
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;

  /** The first `workers` of `all` are enlisted, the others spare; `warm`: keep the spare's worker running. */
  constructor(all: readonly SupervisedChild[], workers: number, rules: SlotRules, warm = false) {
    this.all = all;
    this.#rules = rules;
    this.#warm = warm;
    this.#enlisted = new Set(all.slice(0, workers));
    for (const c of all) c.spec.slot.store("spare", this.#enlisted.has(c) ? 0 : 1);
  }

  /** Starts the enlisted workers, and the spare's when it is kept warm. */
  start(): void {
    for (const c of this.enlisted) c.start();
    if (this.#warm) this.#spare()?.start();
  }

  /**
   * An enlisted worker's process ended without being asked to (a crash, a
   * kill): with a warm spare serving, the spare takes its place now; the
   * dead one's own restart then makes it the new spare.
   */
  crashed(child: SupervisedChild): void {
    if (!this.#warm || this.#closed || !this.#enlisted.has(child) || this.#queued.size > 0) return;
    const spare = this.#spare();
    if (!spare || !this.#rules.serving(spare)) return;
    this.#swap(child, spare);
    logger().info(
      "{spare} (pid {pid}, the warm spare) serves in place of {dead}, which restarts as the spare",
      {
        spare: spare.spec.name,
        pid: spare.pid,
        dead: child.spec.name,
      },
    );
  }

  /** The child of the slot that is not enlisted. */
  #spare(): SupervisedChild | undefined {
    return this.all.find((c) => !this.#enlisted.has(c));
  }

  /** `spare` takes `old`'s place: enlisted, routed to; `old`'s slot becomes the spare (routed nothing). */
  #swap(old: SupervisedChild, spare: SupervisedChild): void {
    this.#enlisted.add(spare);
    this.#enlisted.delete(old);
    spare.spec.slot.store("spare", 0);
    old.spec.slot.store("spare", 1);
  }

  /** The instance's workers now, in slot order (a spare that took over is one of them). */
  get enlisted(): SupervisedChild[] {
    return this.all.filter((c) => this.#enlisted.has(c));
  }

  /** True while `child` waits for, or is in, a replacement. */
  pending(child: SupervisedChild): boolean {
    return this.#queued.has(child);
  }

  /** Replaces `child` (see the module doc), after the replacements asked before. `reason`: its `last_exit`. */
  replace(child: SupervisedChild, reason: number): Promise<Replaced> {
    this.#queued.add(child);
    const run = this.#chain.then(() => this.#replaceOne(child, reason)).finally(() =>
      this.#queued.delete(child)
    );
    this.#chain = run.catch(() => {});
    return run;
  }

  /** No replacement starts from now on (the instance is stopping); one under way gives up its waits. */
  close(): void {
    this.#closed = true;
  }

  async #replaceOne(old: SupervisedChild, reason: number): Promise<Replaced> {
    if (this.#closed || !this.#enlisted.has(old)) return "skipped";
    const log = logger();
    const spare = this.#spare();
    if (spare) {
      // A warm spare already serves (or is starting); a cold one starts now, a failing one gets a fresh start.
      if (spare.state === "failed" || spare.state === "backoff") await spare.stop(1_000);
      if (spare.state === "none" || spare.state === "stopped") spare.start();
      const up = await this.#serves(spare);
      if (this.#closed) return "skipped";
      if (up) {
        this.#swap(old, spare);
        log.info("{new} (pid {pid}) serves in place of {old}; {old} finishes its work and leaves", {
          new: spare.spec.name,
          pid: spare.pid,
          old: old.spec.name,
        });
        await old.leave(reason, this.#rules.leaveGraceMs());
        if (this.#warm && !this.#closed) old.start(); // the new warm spare
        return "replaced";
      }
      log.warn("the spare slot ({spare}) could not serve ({state}); replacing {old} in place", {
        spare: spare.spec.name,
        state: spare.state,
        old: old.spec.name,
      });
      await spare.stop(1_000);
    }
    await old.leave(reason, this.#rules.leaveGraceMs());
    if (this.#closed) return "skipped";
    old.start();
    await this.#serves(old);
    return "in_place";
  }

  /** Waits until `child` serves; false when it failed, or did not within the boot timeout. */
  async #serves(child: SupervisedChild): Promise<boolean> {
    const clock = this.#rules.clock;
    const until = clock.now() + this.#rules.bootTimeoutMs();
    for (;;) {
      if (this.#rules.serving(child)) return true;
      const s = child.state;
      if (this.#closed || s === "failed" || s === "backoff" || s === "stopped" || s === "hung") return false;
      if (clock.now() > until) return false;
      await sleep(10);
    }
  }
}
