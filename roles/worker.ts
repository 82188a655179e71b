/**
 * `osps worker`: serves the clients the dispatcher sends, one ticket at a time,
 * directly over TCP, then tells the dispatcher it is free again.
 * @module
 */
import type { WorkerConfig } from "../mod/cli/config.ts";
import { instancePaths } from "../mod/cli/config.ts";
import { acceptLoop, answerWatchdog, bindToParent, ConnectionSet, listenOrFail } from "../mod/net/child.ts";
import { ProtocolError } from "../mod/errors.ts";
import { Admission, hostOf } from "../mod/net/admission.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import { LocalDispatcherLink } from "../mod/link/local_link.ts";
import { logger, setupLogging } from "../mod/log.ts";
import { formatReply, greeting, parseRunCommand, Status } from "../mod/net/protocol.ts";
import { lookupService } from "../mod/services/registry.ts";
import { Segment, WorkState } from "../mod/ipc/shm.ts";
import type { ClaimRefusal } from "../mod/link/worker_link.ts";

const REFUSALS: Record<ClaimRefusal, string> = {
  "no-ticket": "no ticket is pending for this worker; ask the dispatcher first",
  mismatch: "invalid ticket",
  expired: "ticket expired; ask the dispatcher again",
  "wrong-type": "ticket was issued for another request type",
};

/** Runs a worker until told to stop. Returns the exit code. */
export async function runWorker(cfg: WorkerConfig): Promise<number> {
  setupLogging(`worker ${cfg.id}`, cfg);
  const log = logger();
  bindToParent(cfg.parentPid);
  const segment = Segment.open(cfg.shm, cfg.instance);
  const slot = segment.slot(cfg.id);
  const startedMs = Date.now();
  const link = new LocalDispatcherLink(segment, instancePaths(cfg.runDir), cfg.id);
  const conns = new ConnectionSet();
  const admission = new Admission(cfg);

  let stopping = false;
  let servedHere = 0;
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const drain = () => {
    if (stopping) return;
    stopping = true;
    slot.cas("work", WorkState.IDLE, WorkState.DRAINING);
    listener.close();
    stop();
  };
  const control = answerWatchdog(slot, { onDrain: drain, onStop: drain });
  const listener = listenOrFail(cfg.host, cfg.port, `worker ${cfg.id}`);

  async function serve(tcp: Deno.TcpConn): Promise<void> {
    const conn = new LineConn(tcp, { maxLineBytes: cfg.maxLineBytes });
    let claimed = false;
    const addr = hostOf(conn.peer);
    const admitted = admission.admit(addr);
    try {
      if (Admission.refused(admitted)) throw new ProtocolError(admitted.reason, admitted.status);
      await conn.writeLine(greeting("worker", String(cfg.id)));
      const line = await conn.readLine(cfg.handshakeTimeoutMs);
      if (line === null) return;
      const run = parseRunCommand(line);
      const refusal = link.claim(run.ticket, run.type);
      if (refusal) {
        throw new ProtocolError(REFUSALS[refusal], Status.BAD_TICKET);
      }
      claimed = true;
      const service = lookupService(run.type);
      const result = await service.run(run.arg, {
        workerId: cfg.id,
        pid: Deno.pid,
        startedMs,
        served: slot.load("served"),
      });
      await conn.writeLine(formatReply(Status.OK, result));
    } catch (err) {
      const status = err instanceof ProtocolError && err.status ? err.status : Status.INTERNAL;
      if (status === Status.INTERNAL) log.error("request failed: {err}", { err: String(err) });
      if (status === Status.BAD_TICKET) {
        // Logged at warning once per throttle, so a guesser cannot flood the log.
        const throttled = admission.badTicket(addr);
        if (throttled) log.warn("throttling {addr}: {why}", { addr, why: throttled.reason });
        else log.debug("refused {peer}: {why}", { peer: conn.peer, why: (err as Error).message });
      }
      await conn.writeLine(formatReply(status, (err as Error).message));
    } finally {
      conn.close();
      if (!Admission.refused(admitted)) admitted.release();
      if (claimed) {
        const retire = !stopping && cfg.maxRequests > 0 && ++servedHere >= cfg.maxRequests;
        link.done(retire);
        if (retire) {
          log.info("served {n} requests: retiring (--max-requests)", { n: servedHere });
          control.retiring(`after ${servedHere} requests`);
          drain();
        } else if (stopping) slot.cas("work", WorkState.IDLE, WorkState.DRAINING);
      }
    }
  }

  link.start({
    onAssigned: () => log.debug("assignment received"),
    onConnected: () => log.debug("dispatcher connected"),
    onDisconnected: () =>
      log.info("dispatcher link closed; serving current clients, waiting for a new dispatcher"),
  });
  link.ready();
  control.ready(`worker ${cfg.id} port ${cfg.port}`);
  log.info("worker {id} serving on {host}:{port}", { id: cfg.id, host: cfg.host, port: cfg.port });

  const accepting = acceptLoop(listener, conns, serve);
  await stopped;
  await accepting;
  await conns.idle(cfg.handshakeTimeoutMs);
  link.close();
  segment.close();
  log.info("worker {id} stopped", { id: cfg.id });
  return 0;
}
