/**
 * `osps watchdog`: the supervisor. Claims the run dir, creates the shared
 * memory and the FIFOs, spawns the dispatcher and N workers by re-running this
 * program, heartbeats each over its own channel, restarts what crashes or
 * hangs, and on stop drains, stops the workers, then the dispatcher, reaps
 * everything and removes every object it made.
 *
 * Why this order (seed 003, question 2.b): the parent stops last. It must be
 * alive to reap (wait for) each child it started, or the children become
 * zombies until init adopts them. The dispatcher stops taking clients first so
 * that no new work starts, workers finish what they hold, and the dispatcher
 * goes after them because workers still report "done" to it.
 *
 * Once the instance has been ready it never gives up on its own: children
 * that crash or hang are restarted with capped backoff for as long as the
 * watchdog runs, and `osps status` says which are failing. Exit 100 is only
 * for an instance that could never get ready (bad configuration, port taken).
 * @module
 */
import { toArgv } from "../mod/cli/cli.ts";
import {
  type InstancePaths,
  instancePaths,
  limitFlags,
  localSlots,
  poolFlags,
  type WatchdogConfig,
} from "../mod/cli/config.ts";
import { chatForWorkers, prepareChatStore } from "../mod/chat/chat_boot.ts";
import { chatFlags } from "../mod/chat/chat_config.ts";
import { EXIT_TEMPORARY, OspsError, SysError } from "../mod/errors.ts";
import { ensureFifo, removeFifo } from "../mod/ipc/fifo.ts";
import { Segment, ShmError } from "../mod/ipc/shm.ts";
import { holdsLiveTicket, overdueTickets } from "../mod/link/ticket_reports.ts";
import { logger, setupLogging } from "../mod/log.ts";
import { Operations } from "../mod/ops/operations.ts";
import { WorkerSlots } from "../mod/supervise/worker_slots.ts";
import { fitted, leaveGraceMs, type Live, policyOf, timingOf } from "../mod/supervise/live_config.ts";
import { reloadOnce } from "../mod/supervise/reload.ts";
import { watchMemory } from "../mod/supervise/memory_watch.ts";
import { InstanceLock, selfStartTime, writeRecord } from "../mod/supervise/run_dir.ts";
import { RestartBudget } from "../mod/supervise/restart_policy.ts";
import { SupervisedChild, type SupervisorDeps } from "../mod/supervise/supervisor.ts";
import { type Clock, systemClock } from "../mod/sys/clock.ts";
import { E } from "../mod/sys/libc.ts";
import { netScope, selfCommand } from "../mod/sys/spawn.ts";
import { readSecret } from "../mod/link/secret.ts";

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

/** Runs the watchdog until SIGINT/SIGTERM, `--exit-after`, or a failure to ever get ready. Returns the exit code. */
export async function runWatchdog(given: WatchdogConfig, clock: Clock = systemClock): Promise<number> {
  setupLogging("watchdog", given);
  const log = logger();
  const cfg = fitted(given);
  const live: Live = { cfg, reload: () => log.warn("reload asked before the instance started: ignored") };
  // Checked before anything is made: a secret others may read is refused (exit 2), with the mend.
  const secret = cfg.secretFile ? readSecret(cfg.secretFile) : undefined;
  const paths = instancePaths(cfg.runDir);
  const lock = InstanceLock.acquire(paths);
  // Chat: the data dir made 0700 and the schema migrated once, before any worker opens the store.
  if (cfg.chat.ircPort > 0) {
    try {
      await prepareChatStore(cfg.chat, cfg.port);
    } catch (err) {
      lock.release();
      throw err;
    }
  }
  const removed = lock.cleanStale();
  if (removed.length) {
    log.warn("removed leftovers of a crashed instance: {list}", { list: removed.join(", ") });
  }
  // Signals only queue an event; the instance loop handles it.
  const signalled = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => signalled.resolve(name);
  const sigint = onSignal("SIGINT"), sigterm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", sigint);
  Deno.addSignalListener("SIGTERM", sigterm);
  let reopenLogs = () => {};
  const sigusr1 = () => reopenLogs(); // logrotate renamed the log file
  Deno.addSignalListener("SIGUSR1", sigusr1);
  const sighup = () => live.reload(); // osps reload, systemctl reload
  Deno.addSignalListener("SIGHUP", sighup);
  const life = { everReady: false };
  try {
    // Metrics endpoint, systemd notify, log file: they outlive incarnations.
    await using ops = await Operations.start(cfg, clock);
    reopenLogs = () => void ops.reopenLogs();
    for (let lostInARow = 0;;) {
      const outcome = await runInstance(live, paths, signalled.promise, clock, life, secret, ops);
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
  } finally {
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
    Deno.removeSignalListener("SIGUSR1", sigusr1);
    Deno.removeSignalListener("SIGHUP", sighup);
    lock.release();
    try {
      Deno.removeSync(cfg.runDir);
    } catch { /* not empty: something of the user's is there; leave it */ }
  }
  return 0;
}

/** How one incarnation ended. */
type Outcome = { kind: "stopped" } | { kind: "vanished"; wasReady: boolean };

/**
 * One incarnation of the instance: a fresh segment, FIFOs and children, until
 * a stop is asked for or the segment vanishes (the caller rebuilds). Every
 * resource is released on every path, in reverse order of creation. Throws
 * {@link NothingCanServe} when the instance cannot get ready at all.
 */
async function runInstance(
  live: Live,
  paths: InstancePaths,
  signalled: Promise<string>,
  clock: Clock,
  life: { everReady: boolean },
  secret: Uint8Array[] | undefined,
  ops: Operations,
): Promise<Outcome> {
  const log = logger();
  const cfg = live.cfg; // what cannot change without a restart is read from here
  await using scope = new AsyncDisposableStack();
  const instanceId = crypto.getRandomValues(new Uint32Array(1))[0]!;
  const slotCount = localSlots(cfg.workers);
  // A joined host's workers talk to their dispatcher over TCP: no FIFOs there.
  const fifos = cfg.join
    ? []
    : Array.from({ length: slotCount }, (_, i) => [paths.dwtube(i + 1), paths.wdtube(i + 1)]).flat();
  let vanished = false;

  writeRecord(paths, {
    pid: Deno.pid,
    start_time: selfStartTime(),
    instance_id: instanceId,
    shm: paths.shm,
    fifos,
    host: cfg.host,
    port: cfg.port,
    workers: cfg.workers,
    created: new Date().toISOString(),
    limits: { ...limitFlags(cfg), ...poolFlags(cfg) },
    link_port: cfg.linkPort || undefined,
    join: cfg.join ? netScope(cfg.join.host, cfg.join.port) : undefined,
    ...(cfg.chat.ircPort > 0 ? { chat: chatFlags(cfg.chat, true) } : {}),
  });
  scope.defer(() => removeQuietly(paths.record));
  const remoteSlots = cfg.linkPort ? cfg.remoteSlots : 0;
  const segment = Segment.create(
    paths.shm,
    slotCount + 1 + remoteSlots,
    instanceId,
    cfg.port,
    cfg.workerConcurrency,
  );
  scope.defer(() => {
    segment.close();
    // A vanished name may already belong to someone else: only unlink what is still ours.
    if (!vanished) Segment.unlink(paths.shm);
  });
  ops.attach(segment, {
    runDir: cfg.runDir,
    shm: paths.shm,
    limits: { ...limitFlags(cfg), ...poolFlags(cfg) },
    host: cfg.host,
    workers: cfg.workers,
    linkPort: cfg.linkPort || undefined,
    join: cfg.join ? netScope(cfg.join.host, cfg.join.port) : undefined,
    chat: cfg.chat.ircPort > 0 ? chatFlags(cfg.chat, true) : undefined,
  });
  scope.defer(() => ops.detach());
  for (const f of fifos) {
    ensureFifo(f);
    scope.defer(() => void removeFifo(f));
  }

  const { dispatcher, workers, poolBudget } = makeChildren(
    live,
    segment,
    instanceId,
    { clock, spawner: ops.spawner },
    secret,
  );
  const children = dispatcher ? [dispatcher, ...workers] : workers;
  // A worker serves once ready, and on a joined host once attached to the dispatcher too.
  const serving = (w: SupervisedChild) => w.state === "ready" && (!cfg.join || w.linked);
  const slots = new WorkerSlots(workers, cfg.workers, {
    serving,
    bootTimeoutMs: () => timingOf(live.cfg).bootTimeoutMs,
    leaveGraceMs: () => leaveGraceMs(live.cfg),
    clock,
  }, cfg.warmSpare);
  const { promise: stopRequested, resolve: requestStop } = Promise.withResolvers<string>();
  void signalled.then(requestStop);
  let fatal: string | null = null;
  let wasReady = false;
  // Children are stopped before anything else is released (the scope unwinds in reverse).
  scope.defer(async () => {
    slots.close();
    segment.setHeader("state", 2);
    if (fatal) await Promise.all(children.map((c) => c.abort()));
    else await stopGracefully(dispatcher, workers, cfg.graceMs, clock);
  });

  let failedBefore = 0;
  for (const c of children) {
    c.onExit = (child, code) => {
      if (child.state === "stopping") return;
      ops.childExited(child.spec.slot.index, code);
      if (child.spec.isWorker && child.state !== "leaving") slots.crashed(child);
    };
    c.onChange = () => {
      const workers = slots.enlisted;
      const failed = workers.filter((w) => w.state === "failed");
      if (!wasReady) {
        // Ready once every child that can run does; a worker that cannot boot leaves the pool degraded.
        const settled = (!dispatcher || dispatcher.state === "ready") &&
          (workers.length === 0 || workers.some(serving)) &&
          workers.every((w) => serving(w) || w.state === "failed");
        if (settled) {
          wasReady = life.everReady = true;
          segment.setHeader("ready_at", clock.now());
          ops.ready(announceReady(cfg, failed.map((w) => w.spec.slot.index)));
        } else if (
          !life.everReady &&
          (dispatcher?.state === "failed" || (workers.length > 0 && failed.length === workers.length))
        ) {
          fatal = dispatcher?.state === "failed" ? "the dispatcher cannot run" : "no worker can run";
          requestStop("fatal");
        }
      } else if (failed.length !== failedBefore) {
        log.warn("pool: {n} of {total} workers can serve ({k} failing, retried every {s} s)", {
          n: workers.length - failed.length,
          total: workers.length,
          k: failed.length,
          s: cfg.failedRetryMs / 1000,
        });
      }
      failedBefore = failed.length;
    };
  }

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

  const overdue = new Set<string>();
  const ticker = setInterval(() => {
    if (!vanished && segmentGone(paths.shm, instanceId)) {
      vanished = true;
      log.error("shared memory {shm} vanished (systemd-logind RemoveIPC?); stopping cleanly", {
        shm: paths.shm,
      });
      requestStop("shared memory vanished");
    }
    for (const c of children) c.tick();
    watchMemory(children, slots, live.cfg.maxWorkerRssMb, segment);
    reportOverdueTickets(workers, clock.now(), cfg.ticketTtlMs, overdue);
    const exitAfter = live.cfg.exitAfter;
    if (exitAfter > 0) {
      const served = workers.reduce((sum, w) => sum + w.spec.slot.load("served"), 0);
      if (served >= exitAfter) requestStop(`--exit-after ${exitAfter} reached (${served} served)`);
    }
  }, cfg.heartbeatMs);
  scope.defer(() => clearInterval(ticker));

  // SIGHUP: re-read the configuration and replace every worker. Asks that come during a reload are
  // served by one more reload after it (the file may have changed since it was read).
  let reloading = false, again = false;
  live.reload = () => {
    segment.setHeader("reloads_asked", segment.header("reloads_asked") + 1);
    if (reloading) {
      again = true;
      return;
    }
    reloading = true;
    void (async () => {
      try {
        do {
          again = false;
          await reloadOnce(live, slots, children, poolBudget, segment, ops, clock);
        } while (again && segment.header("state") === 1);
      } catch (err) {
        log.error("reload failed: {err}", { err: String(err) });
      } finally {
        reloading = false;
      }
    })();
  };
  scope.defer(() => {
    live.reload = () => log.warn("reload asked while the instance is stopping: ignored");
  });

  const reason = await stopRequested;
  log.info("stopping ({reason})", { reason });
  ops.stopping(reason);
  if (fatal) {
    await scope.disposeAsync();
    throw new NothingCanServe(`giving up: ${fatal} (see the errors above)`);
  }
  return vanished ? { kind: "vanished", wasReady } : { kind: "stopped" };
}

/**
 * The dispatcher (none on a joined host) and the children of every local
 * worker slot (the workers' and the spare) of one incarnation. Each spawn
 * builds its command line from the configuration in force then.
 */
function makeChildren(
  live: Live,
  segment: Segment,
  instanceId: number,
  deps: SupervisorDeps,
  secret: Uint8Array[] | undefined,
): { dispatcher: SupervisedChild | undefined; workers: SupervisedChild[]; poolBudget: RestartBudget } {
  const cfg = live.cfg; // ports, hosts, slots: fixed for the incarnation
  const common = () => ({
    host: cfg.host,
    "run-dir": cfg.runDir,
    shm: segment.name,
    instance: instanceId,
    "parent-pid": Deno.pid,
    "heartbeat-ms": cfg.heartbeatMs,
    "grace-ms": live.cfg.graceMs,
    "link-heartbeat-ms": cfg.linkHeartbeatMs,
    "link-timeout-ms": cfg.linkTimeoutMs,
    ...limitFlags(live.cfg),
    "proxy-from": live.cfg.proxyFrom.toString(),
    "log-level": live.cfg.logLevel,
    "log-format": live.cfg.logFormat,
  });
  const slotCount = localSlots(cfg.workers);
  segment.slot(0).store("port", cfg.port);
  const dispatcher = cfg.join ? undefined : new SupervisedChild(
    {
      name: "dispatcher",
      slot: segment.slot(0),
      isWorker: false,
      secret: cfg.linkPort ? secret : undefined,
      command: () =>
        selfCommand(
          toArgv("dispatcher", {
            ...common(),
            port: cfg.port,
            workers: slotCount,
            "link-port": cfg.linkPort,
            "remote-slots": cfg.remoteSlots,
            ...poolFlags(live.cfg),
            "probe-ms": cfg.probeMs,
            "probe-timeout-ms": live.cfg.hangTimeoutMs,
          }),
          {
            listen: [
              netScope(cfg.host, cfg.port),
              ...(cfg.linkPort ? [netScope(cfg.host, cfg.linkPort)] : []),
            ],
          },
        ),
    },
    timingOf(cfg),
    policyOf(cfg),
    deps,
  );
  const poolBudget = new RestartBudget(cfg.poolRestartBudget, cfg.restartWindowMs);
  const join = cfg.join ? netScope(cfg.join.host, cfg.join.port) : undefined;
  const workers = Array.from({ length: slotCount }, (_, i) => {
    const id = i + 1, port = cfg.port + id;
    segment.slot(id).store("port", port);
    return new SupervisedChild(
      {
        name: `worker ${id}`,
        slot: segment.slot(id),
        isWorker: true,
        poolBudget,
        secret: join ? secret : undefined,
        command: () => {
          const chat = chatForWorkers(live.cfg.chat, cfg.host, cfg.port);
          return selfCommand(
            toArgv("worker", {
              ...common(),
              ...chat.flags,
              id,
              port,
              join,
              "max-requests": withJitter(live.cfg.maxRequests),
            }),
            {
              ...chat.permissions,
              listen: [netScope(cfg.host, port), ...(join ? [join] : []), ...chat.permissions.listen],
            },
          );
        },
      },
      timingOf(cfg),
      policyOf(cfg),
      deps,
    );
  });
  return { dispatcher, workers, poolBudget };
}

/** Prints the ready line on stdout, logs it, and returns it (for systemd's STATUS=). */
function announceReady(cfg: WatchdogConfig, failed: number[]): string {
  const ports = cfg.workers ? `${cfg.port + 1}-${cfg.port + cfg.workers}` : "none";
  const head = cfg.join
    ? `ready joined=${netScope(cfg.join.host, cfg.join.port)} host=${cfg.host}`
    : `ready dispatcher=${netScope(cfg.host, cfg.port)}${
      cfg.linkPort ? ` link=${netScope(cfg.host, cfg.linkPort)}` : ""
    }`;
  const irc = cfg.chat.ircPort > 0 ? ` irc=${netScope(cfg.host, cfg.chat.ircPort)}` : "";
  const line = `${head} workers=${ports}${irc} pid=${Deno.pid} run-dir=${cfg.runDir}${
    failed.length ? ` degraded failed=${failed.join(",")}` : ""
  }`;
  console.log(line);
  const log = logger();
  if (failed.length) {
    log.warn("serving degraded: {n} of {total} workers ready (failing: {failed}; retried every {s} s)", {
      n: cfg.workers - failed.length,
      total: cfg.workers,
      failed: failed.join(", "),
      s: cfg.failedRetryMs / 1000,
    });
  } else log.info("all {n} children ready", { n: cfg.workers + 1 });
  return line;
}

/**
 * True when the segment is gone (ENOENT) or its name now holds another
 * segment. Any other error (out of descriptors, say) says nothing about the
 * segment: it is logged, and the next tick looks again.
 */
function segmentGone(name: string, instanceId: number): boolean {
  try {
    const seg = Segment.open(name, instanceId);
    seg.close();
    return false;
  } catch (err) {
    if (err instanceof ShmError && err.cause instanceof SysError && err.cause.errno === E.ENOENT) return true;
    if (err instanceof ShmError && !(err.cause instanceof SysError)) return true; // not ours any more
    logger().warn("cannot check shared memory {name}: {err}; checking again next tick", {
      name,
      err: String(err),
    });
    return false;
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
  for (const w of workers) {
    for (const { key, lateMs } of overdueTickets(w.spec.slot, now)) {
      if (lateMs <= Math.max(1_000, ttlMs) || seen.has(key)) continue;
      seen.add(key);
      logger().error("{name} holds a ticket {s} s past its expiry: the dispatcher has not taken it back", {
        name: w.spec.name,
        s: Math.round(lateMs / 1000),
      });
    }
  }
  if (seen.size > 1000) seen.clear();
}

/** `n` plus up to 10% random jitter, so that workers started together do not all retire together. */
function withJitter(n: number): number {
  return n > 0 ? n + Math.floor(Math.random() * (Math.floor(n / 10) + 1)) : 0;
}

/** Drain the dispatcher, let sessions finish (bounded), stop workers, then the dispatcher. */
async function stopGracefully(
  dispatcher: SupervisedChild | undefined,
  workers: SupervisedChild[],
  graceMs: number,
  clock: Clock,
): Promise<void> {
  dispatcher?.order("drain");
  const deadline = clock.now() + graceMs;
  const busy = () => workers.some((w) => w.pid > 0 && holdsLiveTicket(w.spec.slot));
  while (busy() && clock.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await Promise.all(workers.map((w) => w.stop(Math.max(500, deadline - clock.now()))));
  await dispatcher?.stop(1_000);
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch { /* already gone */ }
}
