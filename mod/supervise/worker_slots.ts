/**
 * The local worker slots of an instance: N enlisted (the instance's workers)
 * and a spare, and the one way a running worker is replaced without a
 * moment of lost capacity (a reload, `--max-worker-rss-mb`):
 *
 * 1. a new process starts in the spare slot (its own port and FIFO pair),
 *    with the configuration in force now;
 * 2. once it serves, it is enlisted and the dispatcher routes to it;
 * 3. only then is the old one told it has been replaced: it takes no new
 *    ticket, finishes what it holds (still held to its deadlines), exits 0;
 * 4. its slot becomes the spare.
 *
 * A new process that does not serve (it cannot boot, crashes, is not ready
 * within the boot timeout, or its port is taken) ends the replacement as
 * failed, with its reason: it is stopped and the old worker keeps serving,
 * untouched. Nothing is ever replaced "in place" (old one out first): that
 * would trade a serving worker for one that may not start.
 *
 * Replacements run one at a time, in the order asked, each stepped by the
 * watchdog's cycle ({@link WorkerSlots.step}) as its children's events come.
 *
 * With a warm spare (`--warm-spare`) the spare slot's worker runs all the
 * time, ready but routed nothing (its slot says `spare`): a replacement
 * swaps at once, and when an enlisted worker's process dies the spare takes
 * its place at once while the dead one restarts (as the new spare), so the
 * pool is back to N serving workers as soon as the death is seen. A warm
 * spare started under an older configuration (before a reload) is restarted
 * before it takes anyone's place.
 * @module
 */
import type { SupervisedChild } from "./supervisor.ts";
import { logger } from "../log.ts";
import type { Clock } from "../sys/clock.ts";

/** What the slots need from the watchdog. */
export interface SlotRules {
  /** True when a started worker serves (ready; on a joined host, attached to its dispatcher too). */
  serving(child: SupervisedChild): boolean;
  /** How long a new worker gets to serve. */
  bootTimeoutMs(): number;
  /** How long a replaced worker gets to finish what it holds before it is stopped. */
  finishGraceMs(): number;
  /** The generation of the configuration in force (see `ChildSpec.generation`). */
  generation(): number;
  readonly clock: Clock;
}

/** How a replacement ended. */
export type Outcome =
  /** A new process serves in the old one's place; the old one finished and exited. */
  | { readonly kind: "replaced"; readonly by: SupervisedChild }
  /** The new process did not serve (`why`); it was stopped, the old one serves on. */
  | { readonly kind: "failed"; readonly why: string }
  /** Nothing done: the worker was no longer enlisted or ready, or the instance is stopping. */
  | { readonly kind: "skipped" };

type Phase = "queued" | "restarting_spare" | "starting_spare" | "stopping_spare" | "old_finishing";

/** One replacement, stepped by {@link WorkerSlots.step}; `outcome` is set when it is over. */
export class Replacement {
  readonly old: SupervisedChild;
  /** The `last_exit` the old one gets (`ExitReason.REPLACED`, `REPLACED_RSS`). */
  readonly reason: number;
  outcome: Outcome | null = null;
  phase: Phase = "queued";
  spare: SupervisedChild | undefined;
  /** Until when the new process may take to serve. */
  deadline = 0;
  why = "";

  constructor(old: SupervisedChild, reason: number) {
    this.old = old;
    this.reason = reason;
  }
}

/** Grace a new process that did not serve gets to stop, before SIGKILL. */
const SPARE_STOP_GRACE_MS = 1_000;

/** The enlisted workers and the spare; replacements, one at a time. */
export class WorkerSlots {
  /** Every local worker slot's child, in slot order. */
  readonly all: readonly SupervisedChild[];
  readonly #rules: SlotRules;
  readonly #enlisted: Set<SupervisedChild>;
  readonly #queue: Replacement[] = [];
  readonly #warm: boolean;
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
    this.warmUp();
  }

  /** With a warm spare: starts the spare's worker when none runs (after a replacement that failed, say). */
  warmUp(): void {
    const spare = this.#spare();
    if (this.#warm && !this.#closed && spare && (spare.state === "none" || spare.state === "stopped")) {
      spare.start();
    }
  }

  /**
   * An enlisted worker's process ended without being asked to (a crash, a
   * kill): with a warm spare serving, the spare takes its place now; the
   * dead one's own restart then makes it the new spare.
   */
  crashed(child: SupervisedChild): void {
    if (!this.#warm || this.#closed || !this.#enlisted.has(child) || this.#queue.length > 0) return;
    const spare = this.#spare();
    if (!spare || !this.#rules.serving(spare) || spare.generation !== this.#rules.generation()) return;
    this.#swap(child, spare);
    logger().info(
      "{spare} (pid {pid}, the warm spare) serves in place of {dead}, which restarts as the spare",
      { spare: spare.spec.name, pid: spare.pid, dead: child.spec.name },
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
    return this.#queue.some((r) => r.old === child);
  }

  /** Asks for `child` to be replaced (see the module doc), after the replacements asked before. */
  replace(child: SupervisedChild, reason: number): Replacement {
    const r = new Replacement(child, reason);
    this.#queue.push(r);
    return r;
  }

  /** No replacement starts or goes on from now on (the instance is stopping): those asked end skipped. */
  close(): void {
    this.#closed = true;
    for (const r of this.#queue.splice(0)) r.outcome = { kind: "skipped" };
  }

  /** Moves the replacements on as far as their children's states allow (the cycle calls it after each batch). */
  step(): void {
    for (let r = this.#queue[0]; r && this.#advance(r); r = this.#queue[0]) this.#queue.shift();
  }

  /** Advances `r`; true once it is over (its outcome set). */
  #advance(r: Replacement): boolean {
    const log = logger();
    const over = (outcome: Outcome) => {
      r.outcome = outcome;
      return true;
    };
    if (r.phase === "queued") {
      if (!this.#enlisted.has(r.old) || !this.#rules.serving(r.old)) return over({ kind: "skipped" });
      const spare = this.#spare();
      if (!spare) return over({ kind: "failed", why: "there is no spare slot" });
      r.spare = spare;
      if (spare.pid > 0 && spare.generation !== this.#rules.generation()) {
        log.info("{spare} (the warm spare) runs an older configuration: restarting it before it takes over", {
          spare: spare.spec.name,
        });
        void spare.stop(SPARE_STOP_GRACE_MS);
      } else if (spare.state === "failed" || spare.state === "backoff") {
        void spare.stop(0); // no process: stopped at once, started fresh below
      }
      r.phase = "restarting_spare";
    }
    const spare = r.spare!;
    if (r.phase === "restarting_spare") {
      if (spare.state === "stopping" || spare.state === "hung") return false;
      if (spare.state === "none" || spare.state === "stopped") spare.start();
      r.deadline = this.#rules.clock.now() + this.#rules.bootTimeoutMs();
      r.phase = "starting_spare";
    }
    if (r.phase === "starting_spare") {
      if (this.#rules.serving(spare)) {
        this.#swap(r.old, spare);
        log.info("{new} (pid {pid}) serves in place of {old}; {old} finishes its work and exits", {
          new: spare.spec.name,
          pid: spare.pid,
          old: r.old.spec.name,
        });
        void r.old.replaced(r.reason, this.#rules.finishGraceMs());
        r.phase = "old_finishing";
        return false;
      }
      const s = spare.state;
      const late = this.#rules.clock.now() > r.deadline;
      if (!late && (s === "starting" || s === "ready")) return false; // ready but not attached yet: wait
      r.why = late && s === "starting" ? `not ready within ${this.#rules.bootTimeoutMs()} ms` : spare.failure;
      log.error("{new}, started to replace {old}, cannot serve: {why}; {old} serves on", {
        new: spare.spec.name,
        old: r.old.spec.name,
        why: r.why,
      });
      void spare.stop(SPARE_STOP_GRACE_MS);
      r.phase = "stopping_spare";
    }
    if (r.phase === "stopping_spare") {
      if (spare.state !== "stopped" && spare.state !== "none") return false;
      return over({ kind: "failed", why: `${spare.spec.name} cannot serve: ${r.why}` });
    }
    // old_finishing
    if (r.old.state !== "stopped") return false;
    if (this.#warm && !this.#closed) r.old.start(); // the new warm spare
    return over({ kind: "replaced", by: spare });
  }
}
