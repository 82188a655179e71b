/**
 * `osps watchdog`: the supervisor. Claims the run dir, creates the shared
 * memory and the FIFOs, spawns the dispatcher and N workers by re-running this
 * program, heartbeats each over its own channel, restarts what crashes or
 * hangs, and on stop drains, stops the workers, then the dispatcher, reaps
 * everything and removes every object it made.
 *
 * It reads as nginx's master process cycle: one loop ({@link cycle}) that
 * waits for an event (a signal, a child's control line or exit, a child's
 * deadline, the heartbeat's tick) and handles them in a fixed order; signal
 * handlers only queue. Procedures that take many events (a reload, a
 * replacement, the stop) are stepped by the loop, never run beside it.
 *
 * Once the instance has been ready it never gives up on its own: children
 * that crash or hang are restarted with capped backoff for as long as the
 * watchdog runs, and `osps status` says which are failing. Exit 100 is only
 * for an instance that could never get ready (bad configuration, port taken).
 * @module
 */
import { type InstancePaths, instancePaths, type WatchdogConfig } from "../mod/cli/config.ts";
import { prepareChatStore } from "../mod/chat/chat_boot.ts";
import { EXIT_TEMPORARY, OspsError } from "../mod/errors.ts";
import { overdueTickets } from "../mod/link/ticket_reports.ts";
import { readSecret } from "../mod/link/secret.ts";
import { logger, setupLogging } from "../mod/log.ts";
import { Operations } from "../mod/ops/operations.ts";
import { type Children, makeChildren } from "../mod/supervise/children.ts";
import { type CycleEvent, EventQueue } from "../mod/supervise/events.ts";
import { Incarnation } from "../mod/supervise/incarnation.ts";
import { finishGraceMs, fitted, type Live, timingOf } from "../mod/supervise/live_config.ts";
import { MemoryWatch } from "../mod/supervise/memory_watch.ts";
import { Reload } from "../mod/supervise/reload.ts";
import { InstanceLock } from "../mod/supervise/run_dir.ts";
import { Shutdown } from "../mod/supervise/shutdown.ts";
import { StrayErrors, WatchdogFault } from "../mod/supervise/stray_errors.ts";
import type { SupervisedChild } from "../mod/supervise/supervisor.ts";
import { WorkerSlots } from "../mod/supervise/worker_slots.ts";
import { announceReady, PoolWatch } from "../mod/supervise/pool_watch.ts";
import { type Clock, systemClock } from "../mod/sys/clock.ts";
import { dropSignal } from "../mod/sys/signals.ts";
import { netScope } from "../mod/sys/spawn.ts";

/** The watchdog gave up before the instance was ever ready: nothing can serve. */
export class NothingCanServe extends OspsError {
  override readonly exitCode = 100;
}

/**
 * The instance's shared-memory name disappeared under it repeatedly
 * (systemd-logind `RemoveIPC=yes` deletes a user's POSIX shm at logout:
 * systemd issue #2324). Each time, the watchdog stops that incarnation
 * cleanly and builds a new one (new segment, FIFOs, children) under the same
 * lock; after {@link MAX_RECOVERIES} losses in a row, with no incarnation
 * getting ready in between, it exits 111 (temporary: restart it).
 */
export class SegmentVanished extends OspsError {
  override readonly exitCode = EXIT_TEMPORARY;
}

/** Rebuilds in a row (without an incarnation getting ready in between) before giving up. */
const MAX_RECOVERIES = 3;
/** A stall of the watchdog itself this long or longer is logged (shorter ones are timer lateness). */
const STALL_LOGGED_MS = 1_000;

/** What outlives an incarnation. */
interface Watchdog {
  readonly live: Live;
  readonly paths: InstancePaths;
  readonly events: EventQueue;
  readonly errors: StrayErrors;
  readonly ops: Operations;
  readonly clock: Clock;
  readonly secret: Uint8Array[] | undefined;
  everReady: boolean;
}

/** How one incarnation ended. */
type Outcome = { kind: "stopped" } | { kind: "vanished"; wasReady: boolean };

/** Runs the watchdog until SIGINT/SIGTERM, `--exit-after`, or a failure to ever get ready. Returns the exit code. */
export async function runWatchdog(given: WatchdogConfig, clock: Clock = systemClock): Promise<number> {
  setupLogging("watchdog", given);
  const log = logger();
  const live: Live = { cfg: fitted(given), generation: 0 };
  const cfg = live.cfg;
  // Checked before anything is made: a secret others may read is refused, with the mend.
  const secret = cfg.secretFile ? readSecret(cfg.secretFile) : undefined;
  const paths = instancePaths(cfg.runDir);
  using lock = InstanceLock.acquire(paths);
  // Chat: the data dir made 0700 and the schema migrated once, before any worker opens the store.
  if (cfg.chat.ircPort > 0) await prepareChatStore(cfg.chat, cfg.host, cfg.port);
  const removed = lock.cleanStale();
  if (removed.length) {
    log.warn("removed leftovers of a crashed instance: {list}", { list: removed.join(", ") });
  }
  // Signals only queue an event, from here to the end; the cycle handles them. SIGUSR1 would open an
  // inspector anyone local could attach to: dropped (see mod/sys/signals.ts).
  dropSignal("SIGUSR1");
  using events = new EventQueue().listen();
  using errors = new StrayErrors(events);
  // Metrics endpoint, systemd notify, log file: they outlive incarnations.
  await using ops = await Operations.start(cfg, clock);
  const w: Watchdog = { live, paths, events, errors, ops, clock, secret, everReady: false };
  for (let lostInARow = 0;;) {
    const outcome = await runIncarnation(w);
    if (outcome.kind === "stopped") break;
    lostInARow = outcome.wasReady ? 1 : lostInARow + 1;
    if (lostInARow > MAX_RECOVERIES) {
      throw new SegmentVanished(
        `shared memory ${paths.shm} was removed by someone else ${lostInARow} times in a row ` +
          "(systemd-logind RemoveIPC?); stopped cleanly, see docs/SECURITY.md",
      );
    }
    log.warn("shared memory was removed under the instance: rebuilding it and restarting every child");
  }
  log.info("stopped cleanly");
  return 0;
}

/**
 * One incarnation of the instance: its resources (released in reverse order
 * on every path), its children (reaped on every path), and the cycle.
 */
async function runIncarnation(w: Watchdog): Promise<Outcome> {
  const { live, paths, events, clock } = w;
  const cfg = live.cfg; // what cannot change without a restart is read from here
  using inc = Incarnation.open(cfg, paths, w.ops);
  const kids = makeChildren(live, inc.segment, inc.instanceId, {
    clock,
    spawner: w.ops.spawner,
    post: (e) => events.post(e),
  }, w.secret);
  const all = kids.dispatcher ? [kids.dispatcher, ...kids.workers] : kids.workers;
  try {
    const end = await cycle(w, inc, kids);
    if (end.fatal) throw new NothingCanServe(`giving up: ${end.fatal} (see the errors above)`);
    if (end.fault) throw new WatchdogFault(`stopped cleanly: ${end.fault} (see the errors above)`);
    return inc.vanished ? { kind: "vanished", wasReady: end.wasReady } : { kind: "stopped" };
  } finally {
    await reapAll(all, events); // only an error in the cycle leaves any: killed, and still reaped
  }
}

/** How the cycle ended. */
interface CycleEnd {
  wasReady: boolean;
  fatal: string | null;
  fault: string | null;
}

/**
 * The watchdog's loop. Each turn: wait for events (or the next tick), give
 * back time the watchdog itself did not run, handle the events in their fixed
 * order (stop and reload asks, control lines, exits, deadlines), then the
 * heartbeat when due, then step what is under way.
 *
 * While stopping, only this still runs: reaping and kill escalations (child
 * events), systemd's keepalive (the tick), and the stop order. No heartbeat
 * verdict, restart, reload or replacement starts.
 */
async function cycle(w: Watchdog, inc: Incarnation, kids: Children): Promise<CycleEnd> {
  const { live, events, errors, ops, clock } = w;
  const cfg = live.cfg;
  const log = logger();
  const segment = inc.segment;
  const { dispatcher, workers, poolBudget } = kids;
  const all = dispatcher ? [dispatcher, ...workers] : workers;
  // A worker serves once ready, and on a joined host once attached to the dispatcher too.
  const serving = (c: SupervisedChild) => c.state === "ready" && (!cfg.join || c.linked);
  const slots = new WorkerSlots(workers, cfg.workers, {
    serving,
    bootTimeoutMs: () => timingOf(live.cfg).bootTimeoutMs,
    finishGraceMs: () => finishGraceMs(live.cfg),
    generation: () => live.generation,
    clock,
  }, cfg.warmSpare);
  const memory = new MemoryWatch(clock);
  memory.onNote = (note) => inc.notes.update({ memory_limit: note });
  const pool = new PoolWatch(cfg, dispatcher, slots, serving);
  const end: CycleEnd = { wasReady: false, fatal: null, fault: null };
  let stop: Shutdown | null = null;
  let reload: Reload | null = null;
  let reloadAsked = false;
  const overdue = new Set<string>();

  const stopFor = (reason: string, kill = false) => {
    if (stop) return;
    log.info("stopping ({reason})", { reason });
    ops.stopping(reason);
    slots.close();
    reload?.abandon();
    segment.setHeader("state", 2);
    stop = new Shutdown(reason, { dispatcher, workers }, { graceMs: cfg.graceMs, clock, kill });
  };
  const handle = (e: CycleEvent) => {
    switch (e.kind) {
      case "fault":
        end.fault = e.reason;
        return stopFor(e.reason);
      case "signal":
        if (e.signal === "SIGINT" || e.signal === "SIGTERM") return stopFor(e.signal);
        if (e.signal === "SIGUSR2") return void ops.reopenLogs(); // logrotate renamed the log file
        // SIGHUP: osps reload, systemctl reload. Asks during a reload get one more after it.
        if (stop) return log.warn("reload asked while the instance is stopping: ignored");
        segment.setHeader("reloads_asked", segment.header("reloads_asked") + 1);
        reloadAsked = true;
        return;
      default: {
        const ended = e.child.handle(e);
        if (!ended || ended.stopped) return;
        ops.childExited(e.child.spec.slot.index, ended.code);
        if (e.child.spec.isWorker && ended.event !== "exit_replaced") slots.crashed(e.child);
      }
    }
  };
  const heartbeat = () => {
    if (inc.segmentGone()) {
      log.error("shared memory {shm} vanished (systemd-logind RemoveIPC?); stopping cleanly", {
        shm: segment.name,
      });
      return stopFor("shared memory vanished");
    }
    for (const c of all) c.tick();
    memory.check(all, slots, live.cfg.maxWorkerRssMb, live.cfg.failedRetryMs);
    reportOverdueTickets(workers, clock.now(), cfg.ticketTtlMs, overdue);
    const exitAfter = live.cfg.exitAfter;
    const served = workers.reduce((sum, c) => sum + c.spec.slot.load("served"), 0);
    if (exitAfter > 0 && served >= exitAfter) stopFor(`--exit-after ${exitAfter} reached (${served} served)`);
  };

  log.info("starting instance in {dir}: {what}, {n} workers", {
    dir: cfg.runDir,
    what: cfg.join
      ? `workers joining the dispatcher at ${netScope(cfg.join.host, cfg.join.port)}`
      : `dispatcher on ${netScope(cfg.host, cfg.port)}${
        cfg.linkPort ? `, remote workers on ${netScope(cfg.host, cfg.linkPort)}` : ""
      }`,
    n: cfg.workers,
  });
  dispatcher?.start();
  slots.start(); // the spare slot stays empty until a replacement, unless it is kept warm

  let nextBeat = clock.now() + cfg.heartbeatMs;
  let awakeBy = nextBeat;
  for (;;) {
    const batch = await events.next(awakeBy - clock.now());
    const now = clock.now();
    // Time the watchdog itself did not run (stopped, a paused machine) is nobody's fault here.
    const stalled = now - awakeBy;
    if (stalled > 0) {
      for (const c of all) c.resume(stalled);
      if (stalled >= STALL_LOGGED_MS) {
        log.warn(
          "the watchdog itself did not run for {ms} ms (stopped, or a paused machine): " +
            "its children get that time back before any is called hung",
          { ms: Math.round(stalled) },
        );
      }
    }
    for (const e of batch) errors.contain(e.kind, () => handle(e));
    if (now >= nextBeat) {
      nextBeat = now + cfg.heartbeatMs;
      if (!stop) errors.contain("the heartbeat", heartbeat);
    }
    errors.contain("operations", () => ops.tick(now));
    if (stop === null) {
      errors.contain("the replacements", () => {
        slots.step();
        if (memory.settle(live.cfg.failedRetryMs)) segment.setHeader("replaced_rss", memory.replaced);
      });
      errors.contain("the reload", () => {
        if (reloadAsked && !reload && end.wasReady) {
          reloadAsked = false;
          reload = new Reload({
            live,
            slots,
            children: all,
            poolBudget,
            segment,
            ops,
            notes: inc.notes,
            clock,
          });
          reload.begin();
        }
        if (reload?.step()) reload = null;
      });
      errors.contain("the readiness", () => {
        const verdict = pool.judge(end.wasReady, w.everReady);
        if (verdict.ready && !end.wasReady) {
          end.wasReady = w.everReady = true;
          segment.setHeader("ready_at", clock.now());
          ops.ready(announceReady(cfg, verdict.failing));
        }
        if (verdict.fatal) {
          end.fatal = verdict.fatal;
          stopFor("fatal", true);
        }
      });
    }
    if (stop !== null && (stop as Shutdown).step()) return end;
    awakeBy = Math.min(nextBeat, ops.nextTickAt(now), stop ? (stop as Shutdown).wakeBy : Infinity);
  }
}

/** Kills and reaps whatever child still runs (after an error in the cycle), handling their events meanwhile. */
async function reapAll(children: readonly SupervisedChild[], events: EventQueue): Promise<void> {
  const running = () => children.filter((c) => c.state !== "stopped" && c.state !== "none");
  if (running().length === 0) return;
  for (const c of running()) void c.abort();
  while (running().length > 0) {
    for (const e of await events.next(100)) {
      if (e.kind === "line" || e.kind === "exit" || e.kind === "deadline") e.child.handle(e);
    }
  }
}

/**
 * A ticket must never keep a worker `assigned` past its expiry: the
 * dispatcher sweeps expired ones, and the worker takes back one it is shown
 * late. Should one ever be seen overdue, say so, once per assignment.
 */
function reportOverdueTickets(
  workers: SupervisedChild[],
  now: number,
  ttlMs: number,
  seen: Set<string>,
): void {
  for (const c of workers) {
    for (const { key, lateMs } of overdueTickets(c.spec.slot, now)) {
      if (lateMs <= Math.max(1_000, ttlMs) || seen.has(key)) continue;
      seen.add(key);
      logger().error("{name} holds a ticket {s} s past its expiry: the dispatcher has not taken it back", {
        name: c.spec.name,
        s: Math.round(lateMs / 1000),
      });
    }
  }
  if (seen.size > 1000) seen.clear();
}
