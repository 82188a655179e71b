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
 * @module
 */
import { toArgv } from "../mod/cli/cli.ts";
import { type InstancePaths, instancePaths, limitFlags, type WatchdogConfig } from "../mod/cli/config.ts";
import { EXIT_TEMPORARY, OspsError } from "../mod/errors.ts";
import { ensureFifo, removeFifo } from "../mod/ipc/fifo.ts";
import { logger, setupLogging } from "../mod/log.ts";
import { InstanceLock, selfStartTime, writeRecord } from "../mod/supervise/run_dir.ts";
import { Segment, WorkState } from "../mod/ipc/shm.ts";
import { netScope, selfCommand } from "../mod/sys/spawn.ts";
import { DEFAULT_POLICY, RestartBudget, type RestartPolicy } from "../mod/supervise/restart_policy.ts";
import { SupervisedChild, type Timing } from "../mod/supervise/supervisor.ts";

/** The watchdog gave up: nothing can serve. */
export class NothingCanServe extends OspsError {
  override readonly exitCode = 100;
}

/**
 * The instance's shared-memory name disappeared under it (systemd-logind
 * `RemoveIPC=yes` deletes a user's POSIX shm at logout: systemd issue #2324).
 * Running roles keep their mappings, but nothing new could attach, so the
 * watchdog stops that incarnation cleanly and builds a new one (new segment,
 * FIFOs, children) under the same lock; after repeated losses it gives up with
 * exit 111 (temporary: restart it).
 */
export class SegmentVanished extends OspsError {
  override readonly exitCode = EXIT_TEMPORARY;
}

/** How many times in a row the watchdog rebuilds an instance whose segment vanished before giving up. */
const MAX_RECOVERIES = 3;

/** Runs the watchdog until SIGINT/SIGTERM, `--exit-after`, or total failure. Returns the exit code. */
export async function runWatchdog(cfg: WatchdogConfig): Promise<number> {
  setupLogging("watchdog", cfg);
  const log = logger();
  const paths = instancePaths(cfg.runDir);
  const lock = InstanceLock.acquire(paths);
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
  try {
    for (let recoveries = 0;; recoveries++) {
      const outcome = await runInstance(cfg, paths, signalled.promise);
      if (outcome === "stopped") break;
      if (recoveries >= MAX_RECOVERIES) {
        throw new SegmentVanished(
          `shared memory ${paths.shm} was removed by someone else ${recoveries + 1} times ` +
            "(systemd-logind RemoveIPC?); stopped cleanly, see docs/SECURITY.md",
        );
      }
      log.warn("shared memory was removed under the instance: rebuilding it and restarting every child");
    }
  } finally {
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
    lock.release();
    try {
      Deno.removeSync(cfg.runDir);
    } catch { /* not empty: something of the user's is there; leave it */ }
  }
  log.info("stopped cleanly");
  return 0;
}

/**
 * One incarnation of the instance: a fresh segment, FIFOs and children, until
 * a stop is asked for ("stopped") or the segment vanishes ("vanished"; the
 * caller rebuilds). Throws {@link NothingCanServe} when nothing can run.
 */
async function runInstance(
  cfg: WatchdogConfig,
  paths: InstancePaths,
  signalled: Promise<string>,
): Promise<"stopped" | "vanished"> {
  const log = logger();
  const instanceId = crypto.getRandomValues(new Uint32Array(1))[0]!;
  const fifos = Array.from({ length: cfg.workers }, (_, i) => [paths.dwtube(i + 1), paths.wdtube(i + 1)])
    .flat();
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
    limits: {
      ...limitFlags(cfg),
      "queue-size": cfg.queueSize,
      "queue-timeout-ms": cfg.queueTimeoutMs,
      "ticket-ttl-ms": cfg.ticketTtlMs,
    },
  });
  const segment = Segment.create(paths.shm, cfg.workers + 1, instanceId, cfg.port);
  for (const f of fifos) ensureFifo(f);

  const common = {
    host: cfg.host,
    "run-dir": cfg.runDir,
    shm: paths.shm,
    instance: instanceId,
    "parent-pid": Deno.pid,
    "heartbeat-ms": cfg.heartbeatMs,
    ...limitFlags(cfg),
    "log-level": cfg.logLevel,
    "log-format": cfg.logFormat,
  };
  const timing: Timing = {
    hangTimeoutMs: cfg.hangTimeoutMs,
    requestTimeoutMs: cfg.requestTimeoutMs,
    requestTimeoutFor: cfg.requestTimeoutFor,
    bootTimeoutMs: Math.max(cfg.hangTimeoutMs, 15_000),
  };
  const policy: RestartPolicy = {
    ...DEFAULT_POLICY,
    budget: cfg.restartBudget,
    budgetWindowMs: cfg.restartWindowMs,
    failedRetryMs: cfg.failedRetryMs,
  };
  const poolBudget = new RestartBudget(cfg.poolRestartBudget, cfg.restartWindowMs);
  const dispatcher = new SupervisedChild(
    {
      name: "dispatcher",
      slot: segment.slot(0),
      isWorker: false,
      command: () =>
        selfCommand(
          toArgv("dispatcher", {
            ...common,
            port: cfg.port,
            workers: cfg.workers,
            "queue-size": cfg.queueSize,
            "queue-timeout-ms": cfg.queueTimeoutMs,
            "ticket-ttl-ms": cfg.ticketTtlMs,
            "grace-ms": cfg.graceMs,
            "probe-ms": cfg.probeMs,
            "probe-timeout-ms": cfg.hangTimeoutMs,
          }),
          { listen: [netScope(cfg.host, cfg.port)] },
        ),
    },
    timing,
    policy,
  );
  const workers = Array.from({ length: cfg.workers }, (_, i) => {
    const id = i + 1, port = cfg.port + id;
    segment.slot(id).store("port", port);
    return new SupervisedChild(
      {
        name: `worker ${id}`,
        slot: segment.slot(id),
        isWorker: true,
        poolBudget,
        command: () =>
          selfCommand(
            toArgv("worker", { ...common, id, port, "max-requests": withJitter(cfg.maxRequests) }),
            { listen: [netScope(cfg.host, port)] },
          ),
      },
      timing,
      policy,
    );
  });
  segment.slot(0).store("port", cfg.port);
  const children = [dispatcher, ...workers];

  const { promise: stopRequested, resolve: requestStop } = Promise.withResolvers<string>();
  void signalled.then(requestStop);

  let announced = false;
  let failedBefore = 0;
  let fatal: string | null = null;
  for (const c of children) {
    c.onChange = () => {
      // Ready once every child that can run does; a worker that cannot boot leaves the pool degraded.
      const settled = dispatcher.state === "ready" && workers.some((w) => w.state === "ready") &&
        workers.every((w) => w.state === "ready" || w.state === "failed");
      if (!announced && settled) {
        announced = true;
        const ports = `${cfg.port + 1}-${cfg.port + cfg.workers}`;
        const failed = workers.filter((w) => w.state === "failed").map((w) => w.spec.slot.index);
        console.log(
          `ready dispatcher=${
            netScope(cfg.host, cfg.port)
          } workers=${ports} pid=${Deno.pid} run-dir=${cfg.runDir}${
            failed.length ? ` degraded failed=${failed.join(",")}` : ""
          }`,
        );
        if (failed.length) {
          log.warn("serving degraded: {n} of {total} workers ready (failed: {failed})", {
            n: cfg.workers - failed.length,
            total: cfg.workers,
            failed: failed.join(", "),
          });
        } else log.info("all {n} children ready", { n: children.length });
      }
      const failedNow = workers.filter((w) => w.state === "failed").length;
      if (announced && failedNow !== failedBefore && failedNow < workers.length) {
        log.warn("pool: {n} of {total} workers can serve ({k} failed)", {
          n: workers.length - failedNow,
          total: workers.length,
          k: failedNow,
        });
      }
      failedBefore = failedNow;
      const workersDown = failedNow === workers.length;
      if (dispatcher.state === "failed" || workersDown) {
        fatal = dispatcher.state === "failed" ? "the dispatcher cannot run" : "no worker can run";
        requestStop("fatal");
      }
    };
  }

  log.info("starting instance in {dir}: dispatcher on {host}:{port}, {n} workers", {
    dir: cfg.runDir,
    host: cfg.host,
    port: cfg.port,
    n: cfg.workers,
  });
  for (const c of children) c.start();

  let vanished = false;
  // Gone, or replaced by something we may not open (EACCES): either way, no longer ours.
  const segmentGone = () => {
    try {
      return !Segment.exists(paths.shm);
    } catch {
      return true;
    }
  };
  const ticker = setInterval(() => {
    if (!vanished && segmentGone()) {
      vanished = true;
      log.error("shared memory {shm} vanished (systemd-logind RemoveIPC?); stopping cleanly", {
        shm: paths.shm,
      });
      requestStop("shared memory vanished");
    }
    const now = Date.now();
    for (const c of children) c.tick(now);
    if (cfg.exitAfter > 0) {
      const served = workers.reduce((sum, w) => sum + w.spec.slot.load("served"), 0);
      if (served >= cfg.exitAfter) requestStop(`--exit-after ${cfg.exitAfter} reached (${served} served)`);
    }
  }, cfg.heartbeatMs);

  const reason = await stopRequested;
  log.info("stopping ({reason})", { reason });
  segment.setHeader("state", 2);
  try {
    if (fatal) {
      await Promise.all(children.map((c) => c.abort()));
    } else {
      await stopGracefully(dispatcher, workers, cfg.graceMs);
    }
  } finally {
    clearInterval(ticker);
    segment.close();
    // A vanished name may already belong to someone else: only unlink what is still ours.
    if (!vanished) Segment.unlink(paths.shm);
    for (const f of fifos) removeFifo(f);
    try {
      Deno.removeSync(paths.record);
    } catch { /* already gone */ }
  }
  if (fatal) throw new NothingCanServe(`giving up: ${fatal} (see the errors above)`);
  return vanished ? "vanished" : "stopped";
}

/** `n` plus up to 10% random jitter, so that workers started together do not all retire together. */
function withJitter(n: number): number {
  return n > 0 ? n + Math.floor(Math.random() * (Math.floor(n / 10) + 1)) : 0;
}

/** Drain the dispatcher, let sessions finish (bounded), stop workers, then the dispatcher. */
async function stopGracefully(
  dispatcher: SupervisedChild,
  workers: SupervisedChild[],
  graceMs: number,
): Promise<void> {
  dispatcher.order("drain");
  const deadline = Date.now() + graceMs;
  const busy = () =>
    workers.some((w) => {
      const s = w.spec.slot.load("work");
      return w.pid > 0 && (s === WorkState.ASSIGNED || s === WorkState.BUSY);
    });
  while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await Promise.all(workers.map((w) => w.stop(Math.max(500, deadline - Date.now()))));
  await dispatcher.stop(1_000);
}
