/**
 * `osps dispatcher`: accepts clients on TCP, picks a free worker from the
 * shared-memory table, writes a one-time ticket into that worker's slot, rings
 * its doorbell, and answers the client with the worker's port and ticket. When
 * every worker is busy, clients wait in a bounded FIFO queue. Request types
 * that keep killing workers are refused for a while (quarantine).
 * @module
 */
import type { DispatcherConfig } from "../mod/cli/config.ts";
import { instancePaths } from "../mod/cli/config.ts";
import { serveDispatcherClient } from "../mod/dispatch/session.ts";
import { encodeQuarantine, Quarantine } from "../mod/dispatch/quarantine.ts";
import { relayHooks } from "../mod/dispatch/relay.ts";
import { WorkerPool } from "../mod/dispatch/worker_pool.ts";
import { FifoPoller } from "../mod/ipc/fifo.ts";
import { QUARANTINE_TEXT_BYTES, Segment } from "../mod/ipc/shm.ts";
import { LocalWorkerLink } from "../mod/link/local_link.ts";
import { logger, setupLogging } from "../mod/log.ts";
import { Admission } from "../mod/net/admission.ts";
import { doorOptions } from "../mod/net/door.ts";
import { listenOrFail, Server } from "../mod/net/server.ts";
import { exitReasonText, lostWorkText } from "../mod/supervise/exit_reason.ts";
import {
  answerWatchdog,
  bindToParent,
  bootStep,
  containStrayErrors,
  DISPATCHER_LINGER_MS,
} from "../mod/supervise/supervised.ts";
import { type Clock, systemClock } from "../mod/sys/clock.ts";
import { fitConnections, MAX_LINGERING, reserveFor } from "../mod/sys/fds.ts";
import type { ChildControl } from "../mod/ipc/control.ts";
import type { LinkServer } from "../mod/link/link_server.ts";

/**
 * Opens the link port for workers of other hosts: each one that authenticates
 * gets a remote slot of the segment and joins the pool.
 */
async function acceptRemoteWorkers(
  cfg: DispatcherConfig,
  segment: Segment,
  control: ChildControl,
  pool: WorkerPool,
  clock: Clock,
): Promise<LinkServer> {
  const secrets = await control.secret();
  const first = cfg.workers + 1;
  // Loaded only when remote workers are accepted (it brings the TCP link and node:crypto).
  const server = new (await import("../mod/link/link_server.ts")).LinkServer({
    host: cfg.host,
    port: cfg.linkPort,
    secrets,
    timing: { heartbeatMs: cfg.linkHeartbeatMs, timeoutMs: cfg.linkTimeoutMs },
    slots: Array.from({ length: cfg.remoteSlots }, (_, i) => segment.slot(first + i)),
  }, clock);
  server.onNewLink = (link) => pool.addLink(link);
  server.start();
  logger().info("accepting remote workers on {host}:{port}", { host: cfg.host, port: cfg.linkPort });
  return server;
}

/** Runs the dispatcher until told to stop. Returns the exit code. */
export async function runDispatcher(cfg: DispatcherConfig, clock: Clock = systemClock): Promise<number> {
  setupLogging("dispatcher", cfg);
  containStrayErrors();
  const log = logger();
  bindToParent(cfg.parentPid);
  const fds = fitConnections(
    cfg.maxConns,
    reserveFor(2 * cfg.workers, cfg.linkPort ? cfg.remoteSlots : 0),
    false,
  );
  if (fds.capped) log.warn("{what}", { what: fds.capped });
  using segment = Segment.open(cfg.shm, cfg.instance);
  const slot = segment.slot(0);
  const stats = segment.stats(0);
  const paths = instancePaths(cfg.runDir);
  const poller = new FifoPoller();
  poller.onError = (r, err) => log.error("doorbell {path} failed: {err}", { path: r.path, err: String(err) });
  const server = new Server(listenOrFail(cfg.host, cfg.port, "dispatcher"), fds.maxConns + MAX_LINGERING);
  const links = bootStep("open the doorbells", () =>
    Array.from(
      { length: cfg.workers },
      (_, i) => new LocalWorkerLink(segment.slot(i + 1), paths, cfg.host, poller, clock),
    ));
  const quarantine = new Quarantine(cfg, clock);
  quarantine.onChange = (list) =>
    segment.setHeaderText("quarantine", encodeQuarantine(list, QUARANTINE_TEXT_BYTES));
  const pool: WorkerPool = new WorkerPool(links, cfg, clock, {
    // Broker for the workers' data channel (chat fan-out): relay between them, say when one is gone.
    ...relayHooks(() => pool),
    onQueueDepth: (n) => slot.store("queue_depth", n),
    onPolling: (on) => slot.store("polling", on ? 1 : 0),
    onTicketUnused: (outcome) => stats.ticket(outcome),
    onLost: (link, lost) => {
      if (!lost.started) stats.ticket("lost");
      const request = lost.arg ? `${lost.type} ${lost.arg}` : lost.type;
      log.warn("{what}", {
        what: lostWorkText(
          `worker ${link.id}`,
          request,
          lost.reason,
          lost.limitMs,
          lost.started,
          lost.culprit,
        ),
      });
      if (lost.requestCaused && quarantine.recordKill(lost.type)) {
        log.error("quarantine: {type} refused for {s} s: it cost {k} workers within {w} s ({why})", {
          type: lost.type,
          s: cfg.quarantineMs / 1000,
          k: cfg.quarantineKills,
          w: cfg.quarantineWindowMs / 1000,
          why: exitReasonText(lost.reason),
        });
      }
    },
  });
  const admission = new Admission({ ...cfg, maxConns: fds.maxConns }, () => clock.now());
  server.conns.onChange = (n) => slot.store("conns", n);
  const door = doorOptions(cfg, (status) => stats.refusal(status));

  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  let draining = false;
  const drain = () => {
    if (draining) return;
    draining = true;
    server.close();
    pool.drain();
    log.info("draining: no new clients");
  };
  const control = answerWatchdog(slot, clock, {
    onDrain: drain,
    onStop: () => {
      drain();
      stop();
    },
  });

  poller.start();
  pool.start();
  pool.probeEvery(cfg.probeMs, cfg.probeTimeoutMs);
  const remote = cfg.linkPort > 0 ? await acceptRemoteWorkers(cfg, segment, control, pool, clock) : undefined;
  server.serve((tcp) => serveDispatcherClient(tcp, { cfg, pool, admission, door, quarantine, slot, stats }));
  // Clients arriving before the FIFOs are connected just queue; "ready" waits for the links.
  await pool.linked(2_000);
  control.ready(`dispatcher port ${cfg.port}`);
  log.info("dispatcher serving on {host}:{port} for {n} local workers{spare}", {
    host: cfg.host,
    port: cfg.port,
    n: Math.max(0, cfg.workers - 1), // the last local slot is the spare (see localSlots)
    spare: cfg.workers > 0 ? " and their spare slot" : "",
  });

  await stopped;
  remote?.close();
  await server.closed();
  // The workers have stopped already: sessions get a moment, then exit closes what is left.
  await server.conns.idle(DISPATCHER_LINGER_MS);
  pool.close();
  await poller.stop();
  log.info("dispatcher stopped");
  return 0;
}
