/**
 * A reload (SIGHUP, `osps reload`, `systemctl reload`): the configuration read
 * again, what can change live applied, every worker replaced one by one
 * through the spare slot, and the outcome published for `osps reload` and
 * systemd.
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
import type { SupervisedChild } from "./supervisor.ts";
import type { WorkerSlots } from "./worker_slots.ts";

/**
 * One reload: read the configuration again (command line over config file),
 * apply what can change live, then replace every worker one by one (a new
 * one serves before the old one leaves). A configuration that does not load
 * changes nothing: the instance keeps serving as it was, and the reload
 * counts as failed. Publishes the outcome in the segment header for
 * `osps reload`, and `RELOADING=1` … `READY=1` to systemd.
 */
export async function reloadOnce(
  live: Live,
  slots: WorkerSlots,
  children: SupervisedChild[],
  poolBudget: RestartBudget,
  segment: Segment,
  ops: Operations,
  clock: Clock,
): Promise<void> {
  const log = logger();
  const asked = segment.header("reloads_asked");
  const t0 = clock.now();
  ops.reloading("reloading: replacing every worker");
  const finish = (text: string) => {
    segment.setHeader("reloaded_at", clock.now());
    segment.setHeader("reloads_covered", asked);
    ops.ready(text);
  };
  let next: WatchdogConfig;
  try {
    next = applicable(live.cfg, loadWatchdogConfig(live.cfg.source));
  } catch (err) {
    log.error("reload: {err}; nothing changed, the instance keeps serving as it was", {
      err: (err as Error).message.replace(/\s*\n\s*/g, " "), // one log line (a TOML error shows its line)
    });
    segment.setHeader("reloads_failed", segment.header("reloads_failed") + 1);
    finish("reload failed: the configuration did not load; serving as before");
    return;
  }
  live.cfg = next;
  for (const c of children) c.configure(timingOf(next), policyOf(next));
  poolBudget.configure(next.poolRestartBudget, next.restartWindowMs);
  const before = slots.enlisted.map((w) => w.pid);
  let inPlace = 0;
  for (const w of slots.enlisted) {
    if (segment.header("state") !== 1) return;
    if ((await slots.replace(w, ExitReason.REPLACED)) === "in_place") inPlace++;
  }
  const after = slots.enlisted.map((w) => w.pid);
  const ms = Math.round(clock.now() - t0);
  log.info("reload done in {ms} ms: {n} workers replaced{how} (pids {before} → {after})", {
    ms,
    n: before.length,
    how: inPlace ? `, ${inPlace} in place (the spare could not start)` : "",
    before: before.join(" "),
    after: after.join(" "),
  });
  finish(`reloaded in ${ms} ms: ${before.length} workers replaced`);
}

/**
 * The configuration a reload applies: `loaded`, except for values that can
 * only change with a restart (ports, worker count, …), which keep their
 * running value; the log says which changed and where they apply.
 */
function applicable(running: WatchdogConfig, loaded: WatchdogConfig): WatchdogConfig {
  const log = logger();
  const changes = liveChanges(running.flags, loaded.flags);
  const flags = { ...loaded.flags };
  for (const name of changes.restart) flags[name] = running.flags[name];
  if (changes.restart.length) {
    log.warn(
      "reload: {list} changed but only take effect after a restart (osps stop, then start); " +
        "keeping the running values",
      { list: changes.restart.map((n) => `--${n}`).join(", ") },
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
  return fitted(watchdogConfig(flags, loaded.source.given, loaded.source));
}
