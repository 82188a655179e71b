/**
 * `osps worker`: serves the clients the dispatcher sends, one ticket at a time,
 * directly over TCP, then tells the dispatcher it is free again.
 * @module
 */
import type { WorkerConfig } from "../mod/cli/config.ts";
import { instancePaths } from "../mod/cli/config.ts";
import { FifoPoller } from "../mod/ipc/fifo.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { LocalDispatcherLink } from "../mod/link/local_link.ts";
import type { TcpDispatcherLink } from "../mod/link/tcp_link.ts";
import type { DispatcherLink } from "../mod/link/worker_link.ts";
import { logger, setupLogging } from "../mod/log.ts";
import { Admission } from "../mod/net/admission.ts";
import { doorOptions } from "../mod/net/door.ts";
import { listenOrFail, Server } from "../mod/net/server.ts";
import { serveRunClient } from "../mod/services/run_session.ts";
import type { ServiceContext } from "../mod/services/registry.ts";
import { answerWatchdog, bindToParent, bootStep, containStrayErrors } from "../mod/supervise/supervised.ts";
import { type Clock, systemClock } from "../mod/sys/clock.ts";
import { until } from "../mod/deadline.ts";
import { fitConnections, MAX_LINGERING, reserveFor } from "../mod/sys/fds.ts";

/** Runs a worker until told to stop. Returns the exit code. */
export async function runWorker(cfg: WorkerConfig, clock: Clock = systemClock): Promise<number> {
  setupLogging(`worker ${cfg.id}`, cfg);
  containStrayErrors();
  const log = logger();
  bindToParent(cfg.parentPid);
  const fds = fitConnections(cfg.maxConns, reserveFor(2, cfg.join ? 1 : 0), false);
  if (fds.capped) log.warn("{what}", { what: fds.capped });
  using segment = Segment.open(cfg.shm, cfg.instance);
  const slot = segment.slot(cfg.id);
  const stats = segment.stats(cfg.id);
  const startedAt = clock.now();
  // The port first: a worker that cannot listen cannot boot (exit 100, no restart loop).
  const server = new Server(
    listenOrFail(cfg.host, cfg.port, `worker ${cfg.id}`),
    fds.maxConns + MAX_LINGERING,
  );
  const poller = new FifoPoller();
  poller.onError = (r, err) => log.error("doorbell {path} failed: {err}", { path: r.path, err: String(err) });
  const admission = new Admission({ ...cfg, maxConns: fds.maxConns }, () => clock.now());
  server.conns.onChange = (n) => slot.store("conns", n);
  const door = doorOptions(cfg, (status) => stats.refusal(status));

  let draining = false;
  let servedHere = 0;
  // Open connections get until then to finish: a drain (replacement, retirement) waits for them all (the
  // watchdog holds each request to its deadline meanwhile); a stop gives them --grace-ms.
  let finishBy = Infinity;
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const drain = async (graceMs: number) => {
    finishBy = Math.min(finishBy, clock.now() + graceMs);
    if (draining) return;
    draining = true;
    link.retire();
    // A client holding this worker's ticket is on its way: let it in, then close the door.
    await until(() => !link.holdsTicket(), 5);
    server.close();
    stop();
  };
  const control = answerWatchdog(slot, clock, {
    onDrain: () => void drain(Infinity),
    onStop: () => void drain(cfg.graceMs),
  });
  // The TCP link (and node:crypto under it) is loaded only by a worker that joins a dispatcher over TCP.
  const link: DispatcherLink = cfg.join
    ? new (await import("../mod/link/tcp_link.ts")).TcpDispatcherLink(slot, {
      ...cfg.join,
      secret: (await control.secret())[0]!, // a worker proves the current secret
      timing: { heartbeatMs: cfg.linkHeartbeatMs, timeoutMs: cfg.linkTimeoutMs },
      identity: () => ({
        host: cfg.host,
        port: cfg.port,
        id: cfg.id,
        pid: Deno.pid,
        watchdogPid: cfg.parentPid,
        served: slot.load("served"),
        state: (link as TcpDispatcherLink).stateName(),
        capacity: (link as TcpDispatcherLink).capacity,
        live: (link as TcpDispatcherLink).live(),
      }),
    }, clock)
    : bootStep(
      "open its doorbells",
      () => new LocalDispatcherLink(slot, instancePaths(cfg.runDir), poller, clock, segment.slot(0)),
    );

  // Chat (--irc-port): IRC sessions live here, beside the request slot, and never occupy it.
  // Loaded only when on: a worker without chat starts as fast as before (no SQLite, no IRC modules).
  const chat = cfg.chat.ircPort > 0
    ? await (await import("../mod/chat/chat_server.ts")).ChatServer.start(cfg.chat, {
      host: cfg.host,
      instanceName: cfg.chatInstance,
      slot: cfg.id,
      link,
    })
    : undefined;

  // What services may know of this worker: read when asked, so a request that does not ask costs nothing.
  const context: ServiceContext = {
    workerId: cfg.id,
    pid: Deno.pid,
    get uptimeMs() {
      return clock.now() - startedAt;
    },
    get served() {
      return slot.load("served");
    },
  };

  // The HTTP API (--http-port), loaded only when on: a worker without it never loads Hono.
  const http = cfg.http.port > 0
    ? (await import("../mod/http/http_service.ts")).HttpService.start(cfg.http, {
      host: cfg.host,
      workerId: cfg.id,
      dispatcherPort: cfg.dispatcherPort,
      admission,
      stats,
      maxInFlight: fds.maxConns + MAX_LINGERING,
      headTimeoutMs: cfg.handshakeTimeoutMs,
      idleTimeoutMs: cfg.idleTimeoutMs,
      writeTimeoutMs: cfg.writeTimeoutMs,
      context: () => context,
      onServed: () => slot.add("served", 1),
      ownPort: cfg.port,
      giveBack: (ticket, type) => {
        const claim = link.claim(ticket, type, "");
        if (typeof claim !== "string") link.done(claim, draining);
      },
      chat,
    })
    : undefined;

  server.serve((tcp) =>
    serveRunClient(tcp, {
      id: cfg.id,
      door,
      link,
      admission,
      stats,
      context: () => context,
      onDone: (claim) => {
        const retire = !draining && cfg.maxRequests > 0 && ++servedHere >= cfg.maxRequests;
        link.done(claim, retire || draining);
        if (retire) {
          log.info("served {n} requests: retiring (--max-requests)", { n: servedHere });
          control.retiring(`after ${servedHere} requests`);
          void drain(Infinity);
        }
      },
      handover: chat
        ? (_type, arg, tcp, buffered) =>
          chat.serve(tcp, buffered, [`NICK ${arg}`, `USER ${arg.slice(0, 10)} 0 * :osps chat`])
        : undefined,
    })
  );
  link.ready(); // the slot is clean and idle before the dispatcher can hear of this worker
  link.start({
    onAssigned: () => {},
    onConnected: () => {
      log.debug("dispatcher connected");
      if (cfg.join) control.linked(true, `${cfg.join.host}:${cfg.join.port}`);
      chat?.linkConnected();
    },
    onDisconnected: () => {
      log.info("dispatcher link closed; serving current clients, waiting for a new dispatcher");
      if (cfg.join) control.linked(false, `${cfg.join.host}:${cfg.join.port}`);
    },
    onMessage: (m) => chat?.fromLink(m),
  });
  poller.start();
  control.ready(`worker ${cfg.id} port ${cfg.port}`);
  log.info("worker {id} serving on {host}:{port}", { id: cfg.id, host: cfg.host, port: cfg.port });

  await stopped;
  await server.closed();
  // Chat sessions (IRC over WebSocket too) are told to reconnect (another worker takes them); HTTP requests
  // being served are answered meanwhile (a drain lets them finish).
  await Promise.all([http?.close(Math.min(60_000, Math.max(0, finishBy - clock.now()))), chat?.close()]);
  await until(() => server.conns.size === 0 || clock.now() >= finishBy, 10);
  link.close();
  await poller.stop();
  log.info("worker {id} stopped", { id: cfg.id });
  return 0;
}
