/**
 * A reload (SIGHUP, `osps reload`, `systemctl reload`): the configuration
 * read again, what can change live applied, every worker replaced one by one
 * through the spare slot, and the outcome published for `osps reload`,
 * `osps status`, the metrics and systemd.
 *
 * A reload never costs capacity. It stops at the first replacement whose new
 * process does not serve (it cannot boot with the new configuration, say):
 * that process is stopped, the workers not yet replaced keep serving as they
 * were, the previous configuration is put back for every later start, and the
 * reload is reported failed with the new process's own reason. A
 * configuration that does not load changes nothing at all.
 * @module
 */
import { type WatchdogConfig, watchdogConfig } from "../cli/config.ts";
import type { Segment } from "../ipc/shm.ts";
import { logger } from "../log.ts";
import { liveChanges, loadWatchdogConfig } from "../ops/config_file.ts";
import type { Operations } from "../ops/operations.ts";
import type { Clock } from "../sys/clock.ts";
import { ExitReason } from "./exit_reason.ts";
import { fitted, type Live, policyOf, timingOf } from "./live_config.ts";
import type { RestartBudget } from "./restart_policy.ts";
import type { Notes } from "./run_dir.ts";
import type { SupervisedChild } from "./supervisor.ts";
import type { Replacement, WorkerSlots } from "./worker_slots.ts";

/** What a reload works on. */
export interface ReloadContext {
  readonly live: Live;
  readonly slots: WorkerSlots;
  readonly children: readonly SupervisedChild[];
  readonly poolBudget: RestartBudget;
  readonly segment: Segment;
  readonly ops: Operations;
  readonly notes: Notes;
  readonly clock: Clock;
}

/** How a reload ended. */
export interface ReloadResult {
  readonly ok: boolean;
  /**
   * One line for people: what was done (and what only a restart applies), or
   * why it failed and what serves meanwhile. `osps reload` prints it.
   */
  readonly text: string;
}

/**
 * One reload, stepped by the watchdog's cycle: {@link Reload.begin} reads and
 * applies the configuration, each {@link Reload.step} moves the replacements
 * on, until it returns the result (already published).
 */
export class Reload {
  readonly #ctx: ReloadContext;
  readonly #asked: number;
  readonly #t0: number;
  #previous: WatchdogConfig | undefined;
  /** Workers still to replace, and the one being replaced. */
  #todo: SupervisedChild[] = [];
  #current: Replacement | null = null;
  readonly #before: number[];
  #replaced = 0;
  /** Changed settings this reload cannot apply (they need a restart), as `--name old → new`. */
  #notApplied: string[] = [];
  #result: ReloadResult | null = null;

  constructor(ctx: ReloadContext) {
    this.#ctx = ctx;
    this.#asked = ctx.segment.header("reloads_asked");
    this.#t0 = ctx.clock.now();
    this.#before = ctx.slots.enlisted.map((w) => w.pid);
  }

  /** Reads the configuration and applies it, or ends the reload at once when it does not load. */
  begin(): void {
    const { live, ops } = this.#ctx;
    ops.reloading("reloading: replacing every worker");
    let next: WatchdogConfig;
    try {
      const loaded = loadWatchdogConfig(live.cfg.source);
      ({ cfg: next, notApplied: this.#notApplied } = applicable(live.cfg, loaded));
    } catch (err) {
      const why = (err as Error).message.replace(/\s*\n\s*/g, " "); // one line (a TOML error shows its line)
      logger().error("reload: {err}; nothing changed, the instance keeps serving as it was", { err: why });
      this.#finish({ ok: false, text: `${why}; nothing changed, the instance serves as before` });
      return;
    }
    this.#previous = live.cfg;
    this.#use(next);
    this.#todo = this.#ctx.slots.enlisted;
  }

  /** Moves the reload on; returns its result once it is over. */
  step(): ReloadResult | null {
    if (this.#result) return this.#result;
    const { slots } = this.#ctx;
    for (;;) {
      const r = this.#current;
      if (r && !r.outcome) return null;
      if (r?.outcome?.kind === "replaced") this.#replaced++;
      if (r?.outcome?.kind === "failed") return this.#failed(r.old, r.outcome.why);
      const next = this.#todo.shift();
      if (!next) return this.#done();
      this.#current = slots.replace(next, ExitReason.REPLACED);
      slots.step();
    }
  }

  /** The instance is stopping: the reload ends where it is (nothing is published). */
  abandon(): void {
    this.#result ??= { ok: false, text: "reload abandoned: the instance is stopping" };
  }

  #use(cfg: WatchdogConfig): void {
    const { live, children, poolBudget } = this.#ctx;
    live.cfg = cfg;
    live.generation++;
    for (const c of children) c.configure(timingOf(cfg), policyOf(cfg));
    poolBudget.configure(cfg.poolRestartBudget, cfg.restartWindowMs);
  }

  #failed(old: SupervisedChild, why: string): ReloadResult {
    // Every later start (a crash, the spare) runs what is known to serve.
    if (this.#previous) this.#use(this.#previous);
    this.#ctx.slots.warmUp();
    const total = this.#before.length;
    const text = `${why}; ${old.spec.name} and the workers not yet replaced serve on, and every later ` +
      `start uses the previous configuration (${this.#replaced} of ${total} replaced before the reload stopped)`;
    logger().error("reload failed: {text}", { text });
    return this.#finish({ ok: false, text });
  }

  #done(): ReloadResult {
    const ms = Math.round(this.#ctx.clock.now() - this.#t0);
    const after = this.#ctx.slots.enlisted.map((w) => w.pid);
    logger().info("reload done in {ms} ms: {n} workers replaced (pids {before} → {after})", {
      ms,
      n: this.#replaced,
      before: this.#before.join(" "),
      after: after.join(" "),
    });
    const kept = this.#notApplied.length
      ? `; not applied until a restart (osps stop, then start): ${this.#notApplied.join(", ")}`
      : "";
    return this.#finish({
      ok: true,
      text: `${this.#replaced} worker${this.#replaced === 1 ? "" : "s"} replaced in ${ms} ms ` +
        `(pids ${this.#before.join(" ")} → ${after.join(" ")})${kept}`,
    });
  }

  /** Publishes the result: the notes file first (`osps reload` reads it once the header says done). */
  #finish(result: ReloadResult): ReloadResult {
    const { segment, ops, notes, clock } = this.#ctx;
    this.#result = result;
    notes.update({ last_reload: { ok: result.ok, text: result.text, asked: this.#asked } });
    segment.setHeader(
      result.ok ? "reloads_done" : "reloads_failed",
      segment.header(result.ok ? "reloads_done" : "reloads_failed") + 1,
    );
    segment.setHeader("reloaded_at", clock.now());
    segment.setHeader("reloads_covered", this.#asked);
    ops.ready(`${result.ok ? "reloaded" : "reload failed"}: ${result.text}`);
    return result;
  }
}

/**
 * The configuration a reload applies: `loaded`, except for values that can
 * only change with a restart (ports, worker count, …), which keep their
 * running value. Returns them too, as `--name running → wanted`.
 */
function applicable(
  running: WatchdogConfig,
  loaded: WatchdogConfig,
): { cfg: WatchdogConfig; notApplied: string[] } {
  const log = logger();
  const changes = liveChanges(running.flags, loaded.flags);
  const flags = { ...loaded.flags };
  const notApplied = changes.restart.map((n) =>
    `--${n} ${running.flags[n] ?? "-"} → ${loaded.flags[n] ?? "-"}`
  );
  for (const name of changes.restart) flags[name] = running.flags[name];
  if (changes.restart.length) {
    log.warn(
      "reload: {list} changed but only take effect after a restart (osps stop, then start); " +
        "keeping the running values",
      { list: notApplied.join(", ") },
    );
  }
  if (changes.now.length || changes.respawn.length) {
    log.info("reload: applied {now}{respawn}", {
      now: changes.now.length ? `now: ${changes.now.map((n) => `--${n}`).join(", ")}` : "",
      respawn: changes.respawn.length
        ? `${
          changes.now.length ? "; " : ""
        }to every worker started from now on (the dispatcher at its next ` +
          `restart): ${changes.respawn.map((n) => `--${n}`).join(", ")}`
        : "",
    });
  } else log.info("reload: no setting changed");
  return { cfg: fitted(watchdogConfig(flags, loaded.source.given, loaded.source)), notApplied };
}
