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
import { logger, setupLogging } from "../mod/log.ts";
import { Admission } from "../mod/net/admission.ts";
import { listenOrFail, Server } from "../mod/net/server.ts";
import { serveRunClient } from "../mod/services/run_session.ts";
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
  const fds = fitConnections(cfg.maxConns, reserveFor(2), false);
  if (fds.capped) log.warn("{what}", { what: fds.capped });
  using segment = Segment.open(cfg.shm, cfg.instance);
  const slot = segment.slot(cfg.id);
  const startedAt = clock.now();
  // The port first: a worker that cannot listen cannot boot (exit 100, no restart loop).
  const server = new Server(
    listenOrFail(cfg.host, cfg.port, `worker ${cfg.id}`),
    fds.maxConns + MAX_LINGERING,
  );
  const poller = new FifoPoller();
  poller.onError = (r, err) => log.error("doorbell {path} failed: {err}", { path: r.path, err: String(err) });
  const link = bootStep(
    "open its doorbells",
    () => new LocalDispatcherLink(slot, instancePaths(cfg.runDir), poller, clock),
  );
  const admission = new Admission({ ...cfg, maxConns: fds.maxConns }, () => clock.now());
  // Chat (--irc-port): IRC sessions live here, beside the request slot, and never occupy it.
  // Loaded only when on: a worker without chat starts as fast as before (no SQLite, no IRC modules).
  const chat = cfg.chat.ircPort > 0
    ? await (await import("../mod/chat/chat_server.ts")).ChatServer.start(cfg.chat, {
      host: cfg.host,
      instancePort: Number(cfg.chatInstance.split(":").pop()),
      instanceName: cfg.chatInstance,
      slot: cfg.id,
      link,
    })
    : undefined;
  server.conns.onChange = (n) => slot.store("conns", n);

  let draining = false;
  let servedHere = 0;
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const drain = async () => {
    if (draining) return;
    draining = true;
    link.retire();
    // A client holding this worker's ticket is on its way: let it in, then close the door.
    await until(() => !link.holdsTicket(), 5);
    server.close();
    stop();
  };
  const control = answerWatchdog(slot, clock, { onDrain: drain, onStop: drain });

  server.serve((tcp) =>
    serveRunClient(tcp, {
      id: cfg.id,
      maxLineBytes: cfg.maxLineBytes,
      handshakeTimeoutMs: cfg.handshakeTimeoutMs,
      link,
      admission,
      context: () => ({
        workerId: cfg.id,
        pid: Deno.pid,
        uptimeMs: clock.now() - startedAt,
        served: slot.load("served"),
      }),
      onDone: () => {
        const retire = !draining && cfg.maxRequests > 0 && ++servedHere >= cfg.maxRequests;
        link.done(retire || draining);
        if (retire) {
          log.info("served {n} requests: retiring (--max-requests)", { n: servedHere });
          control.retiring(`after ${servedHere} requests`);
          void drain();
        }
      },
      handover: chat
        ? (_type, arg, tcp, buffered) =>
          chat.serve(tcp, buffered, [`NICK ${arg}`, `USER ${arg.slice(0, 10)} 0 * :osps chat`])
        : undefined,
    })
  );
  link.start({
    onAssigned: () => {},
    onConnected: () => {
      log.debug("dispatcher connected");
      chat?.linkConnected();
    },
    onDisconnected: () =>
      log.info("dispatcher link closed; serving current clients, waiting for a new dispatcher"),
    onMessage: (m) => chat?.fromLink(m),
  });
  poller.start();
  link.ready();
  control.ready(`worker ${cfg.id} port ${cfg.port}`);
  log.info("worker {id} serving on {host}:{port}", { id: cfg.id, host: cfg.host, port: cfg.port });

  await stopped;
  await server.closed();
  await chat?.close();
  await server.conns.idle(cfg.graceMs);
  link.close();
  await poller.stop();
  log.info("worker {id} stopped", { id: cfg.id });
  return 0;
}
