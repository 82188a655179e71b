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
  poolFlags,
  type WatchdogConfig,
} from "../mod/cli/config.ts";
import { chatForWorkers, prepareChatStore } from "../mod/chat/chat_boot.ts";
import { chatFlags } from "../mod/chat/chat_config.ts";
import { EXIT_TEMPORARY, OspsError, SysError } from "../mod/errors.ts";
import { ensureFifo, removeFifo } from "../mod/ipc/fifo.ts";
import { Segment, ShmError, workGen, WorkState, workState } from "../mod/ipc/shm.ts";
import { logger, setupLogging } from "../mod/log.ts";
import { InstanceLock, selfStartTime, writeRecord } from "../mod/supervise/run_dir.ts";
import { DEFAULT_POLICY, RestartBudget, type RestartPolicy } from "../mod/supervise/restart_policy.ts";
import { SupervisedChild, type SupervisorDeps, type Timing } from "../mod/supervise/supervisor.ts";
import { type Clock, systemClock } from "../mod/sys/clock.ts";
import { fitConnections, reserveFor } from "../mod/sys/fds.ts";
import { E } from "../mod/sys/libc.ts";
import { netScope, selfCommand } from "../mod/sys/spawn.ts";

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
  // The dispatcher keeps the most descriptors for itself; children inherit the raised limit.
  const fds = fitConnections(given.maxConns, reserveFor(2 * given.workers), given.maxConnsGiven);
  if (fds.capped) log.warn("{what}", { what: fds.capped });
  const cfg: WatchdogConfig = { ...given, maxConns: fds.maxConns };
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
  const life = { everReady: false };
  try {
    for (let lostInARow = 0;;) {
      const outcome = await runInstance(cfg, paths, signalled.promise, clock, life);
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

/** How one incarnation ended. */
type Outcome = { kind: "stopped" } | { kind: "vanished"; wasReady: boolean };

/**
 * One incarnation of the instance: a fresh segment, FIFOs and children, until
 * a stop is asked for or the segment vanishes (the caller rebuilds). Every
 * resource is released on every path, in reverse order of creation. Throws
 * {@link NothingCanServe} when the instance cannot get ready at all.
 */
async function runInstance(
  cfg: WatchdogConfig,
  paths: InstancePaths,
  signalled: Promise<string>,
  clock: Clock,
  life: { everReady: boolean },
): Promise<Outcome> {
  const log = logger();
  await using scope = new AsyncDisposableStack();
  const instanceId = crypto.getRandomValues(new Uint32Array(1))[0]!;
  const fifos = Array.from({ length: cfg.workers }, (_, i) => [paths.dwtube(i + 1), paths.wdtube(i + 1)])
    .flat();
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
    ...(cfg.chat.ircPort > 0 ? { chat: chatFlags(cfg.chat, true) } : {}),
  });
  scope.defer(() => removeQuietly(paths.record));
  const segment = Segment.create(paths.shm, cfg.workers + 1, instanceId, cfg.port);
  scope.defer(() => {
    segment.close();
    // A vanished name may already belong to someone else: only unlink what is still ours.
    if (!vanished) Segment.unlink(paths.shm);
  });
  for (const f of fifos) {
    ensureFifo(f);
    scope.defer(() => void removeFifo(f));
  }

  const { dispatcher, workers } = makeChildren(cfg, segment, instanceId, { clock });
  const children = [dispatcher, ...workers];
  const { promise: stopRequested, resolve: requestStop } = Promise.withResolvers<string>();
  void signalled.then(requestStop);
  let fatal: string | null = null;
  let wasReady = false;
  // Children are stopped before anything else is released (the scope unwinds in reverse).
  scope.defer(async () => {
    segment.setHeader("state", 2);
    if (fatal) await Promise.all(children.map((c) => c.abort()));
    else await stopGracefully(dispatcher, workers, cfg.graceMs, clock);
  });

  let failedBefore = 0;
  for (const c of children) {
    c.onChange = () => {
      const failed = workers.filter((w) => w.state === "failed");
      if (!wasReady) {
        // Ready once every child that can run does; a worker that cannot boot leaves the pool degraded.
        const settled = dispatcher.state === "ready" && workers.some((w) => w.state === "ready") &&
          workers.every((w) => w.state === "ready" || w.state === "failed");
        if (settled) {
          wasReady = life.everReady = true;
          segment.setHeader("ready_at", clock.now());
          announceReady(cfg, failed.map((w) => w.spec.slot.index));
        } else if (!life.everReady && (dispatcher.state === "failed" || failed.length === workers.length)) {
          fatal = dispatcher.state === "failed" ? "the dispatcher cannot run" : "no worker can run";
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

  log.info("starting instance in {dir}: dispatcher on {host}:{port}, {n} workers", {
    dir: cfg.runDir,
    host: cfg.host,
    port: cfg.port,
    n: cfg.workers,
  });
  for (const c of children) c.start();

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
    reportOverdueTickets(workers, clock.now(), cfg.ticketTtlMs, overdue);
    if (cfg.exitAfter > 0) {
      const served = workers.reduce((sum, w) => sum + w.spec.slot.load("served"), 0);
      if (served >= cfg.exitAfter) requestStop(`--exit-after ${cfg.exitAfter} reached (${served} served)`);
    }
  }, cfg.heartbeatMs);
  scope.defer(() => clearInterval(ticker));

  const reason = await stopRequested;
  log.info("stopping ({reason})", { reason });
  if (fatal) {
    await scope.disposeAsync();
    throw new NothingCanServe(`giving up: ${fatal} (see the errors above)`);
  }
  return vanished ? { kind: "vanished", wasReady } : { kind: "stopped" };
}

/** The dispatcher and worker children of one incarnation. */
function makeChildren(
  cfg: WatchdogConfig,
  segment: Segment,
  instanceId: number,
  deps: SupervisorDeps,
): { dispatcher: SupervisedChild; workers: SupervisedChild[] } {
  const common = {
    host: cfg.host,
    "run-dir": cfg.runDir,
    shm: segment.name,
    instance: instanceId,
    "parent-pid": Deno.pid,
    "heartbeat-ms": cfg.heartbeatMs,
    "grace-ms": cfg.graceMs,
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
  segment.slot(0).store("port", cfg.port);
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
            ...poolFlags(cfg),
            "probe-ms": cfg.probeMs,
            "probe-timeout-ms": cfg.hangTimeoutMs,
          }),
          { listen: [netScope(cfg.host, cfg.port)] },
        ),
    },
    timing,
    policy,
    deps,
  );
  const poolBudget = new RestartBudget(cfg.poolRestartBudget, cfg.restartWindowMs);
  const chat = chatForWorkers(cfg.chat, cfg.host, cfg.port);
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
            toArgv("worker", {
              ...common,
              ...chat.flags,
              id,
              port,
              "max-requests": withJitter(cfg.maxRequests),
            }),
            { ...chat.permissions, listen: [netScope(cfg.host, port), ...chat.permissions.listen] },
          ),
      },
      timing,
      policy,
      deps,
    );
  });
  return { dispatcher, workers };
}

function announceReady(cfg: WatchdogConfig, failed: number[]): void {
  const ports = `${cfg.port + 1}-${cfg.port + cfg.workers}`;
  const irc = cfg.chat.ircPort > 0 ? ` irc=${netScope(cfg.host, cfg.chat.ircPort)}` : "";
  console.log(
    `ready dispatcher=${
      netScope(cfg.host, cfg.port)
    } workers=${ports}${irc} pid=${Deno.pid} run-dir=${cfg.runDir}${
      failed.length ? ` degraded failed=${failed.join(",")}` : ""
    }`,
  );
  const log = logger();
  if (failed.length) {
    log.warn("serving degraded: {n} of {total} workers ready (failing: {failed}; retried every {s} s)", {
      n: cfg.workers - failed.length,
      total: cfg.workers,
      failed: failed.join(", "),
      s: cfg.failedRetryMs / 1000,
    });
  } else log.info("all {n} children ready", { n: cfg.workers + 1 });
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
    const slot = w.spec.slot;
    const word = slot.load("work");
    if (workState(word) !== WorkState.ASSIGNED) continue;
    const late = now - slot.load("ticket_expires_at");
    const key = `${slot.index}:${workGen(word)}`;
    if (late > Math.max(1_000, ttlMs) && !seen.has(key)) {
      seen.add(key);
      logger().error("{name} holds a ticket {s} s past its expiry: the dispatcher has not taken it back", {
        name: w.spec.name,
        s: Math.round(late / 1000),
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
  dispatcher: SupervisedChild,
  workers: SupervisedChild[],
  graceMs: number,
  clock: Clock,
): Promise<void> {
  dispatcher.order("drain");
  const deadline = clock.now() + graceMs;
  const busy = () =>
    workers.some((w) => {
      const s = workState(w.spec.slot.load("work"));
      return w.pid > 0 && (s === WorkState.ASSIGNED || s === WorkState.BUSY);
    });
  while (busy() && clock.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await Promise.all(workers.map((w) => w.stop(Math.max(500, deadline - clock.now()))));
  await dispatcher.stop(1_000);
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch { /* already gone */ }
}
