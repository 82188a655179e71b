/**
 * `osps dispatcher`: accepts clients on TCP, picks a free worker from the
 * shared-memory table, writes a one-time ticket into that worker's slot, rings
 * its doorbell, and answers the client with the worker's port and ticket. When
 * every worker is busy, clients wait in a bounded FIFO queue.
 * @module
 */
import type { DispatcherConfig } from "../mod/cli/config.ts";
import { instancePaths } from "../mod/cli/config.ts";
import { acceptLoop, answerWatchdog, bindToParent, ConnectionSet, listenOrFail } from "../mod/net/child.ts";
import { ProtocolError } from "../mod/errors.ts";
import { Admission, hostOf } from "../mod/net/admission.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import { LocalWorkerLink } from "../mod/link/local_link.ts";
import { logger, setupLogging } from "../mod/log.ts";
import {
  formatAssign,
  formatReply,
  greeting,
  parseDispatcherCommand,
  Status,
  VERSION_TOKEN,
} from "../mod/net/protocol.ts";
import { lookupService } from "../mod/services/registry.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { WorkerPool } from "../mod/dispatch/worker_pool.ts";

/** Outcome of a line read started while the client waited in the queue. */
type Read = { line: string | null } | { error: unknown };

function unwrap(r: Read): string | null {
  if ("error" in r) throw r.error;
  return r.line;
}

/** The idle timeout, applied to a read that began while the client was queued. */
function idleBound(read: Promise<Read>, ms: number): Promise<Read> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<Read>((resolve) => {
    timer = setTimeout(
      () => resolve({ error: new ProtocolError(`no complete line within ${ms} ms`, Status.TIMEOUT) }),
      ms,
    );
  });
  return Promise.race([read, timeout]).finally(() => clearTimeout(timer));
}

/** Runs the dispatcher until told to stop. Returns the exit code. */
export async function runDispatcher(cfg: DispatcherConfig): Promise<number> {
  setupLogging("dispatcher", cfg);
  const log = logger();
  bindToParent(cfg.parentPid);
  const segment = Segment.open(cfg.shm, cfg.instance);
  const slot = segment.slot(0);
  const paths = instancePaths(cfg.runDir);
  const links = Array.from(
    { length: cfg.workers },
    (_, i) => new LocalWorkerLink(segment, paths, i + 1, cfg.host),
  );
  const pool = new WorkerPool(links, cfg);
  const conns = new ConnectionSet();
  const admission = new Admission(cfg);

  let draining = false;
  const { promise: stopped, resolve: stop } = Promise.withResolvers<void>();
  const drain = () => {
    if (draining) return;
    draining = true;
    listener.close();
    pool.drain();
    log.info("draining: no new clients");
  };
  const control = answerWatchdog(slot, {
    onDrain: drain,
    onStop: () => {
      drain();
      stop();
    },
  });
  const listener = listenOrFail(cfg.host, cfg.port, "dispatcher");

  async function serve(tcp: Deno.TcpConn): Promise<void> {
    const conn = new LineConn(tcp, { maxLineBytes: cfg.maxLineBytes });
    const clientAddr = conn.peer;
    const addr = hostOf(clientAddr);
    const admitted = admission.admit(addr);
    try {
      if (Admission.refused(admitted)) throw new ProtocolError(admitted.reason, admitted.status);
      await conn.writeLine(greeting("dispatcher"));
      let timeout = cfg.handshakeTimeoutMs;
      // A line read while the client waited in the queue, handled next.
      let early: Promise<Read> | undefined;
      for (;;) {
        const line = early ? unwrap(await idleBound(early, cfg.idleTimeoutMs)) : await conn.readLine(timeout);
        early = undefined;
        timeout = cfg.idleTimeoutMs;
        if (line === null) return;
        // Every line is charged, bad ones too: pipelined garbage must not get free CPU.
        const tooFast = admission.request(addr);
        if (tooFast) throw new ProtocolError(tooFast.reason, tooFast.status);
        let cmd;
        try {
          cmd = parseDispatcherCommand(line);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          await conn.writeLine(formatReply(err.status || Status.BAD_REQUEST, err.message));
          continue; // a bad line costs the client nothing else
        }
        if (cmd.verb === "QUIT") {
          await conn.writeLine(formatReply(Status.BYE, "bye"));
          return;
        }
        if (cmd.verb === "HELLO") {
          const ok = cmd.version === VERSION_TOKEN;
          await conn.writeLine(
            ok ? formatReply(Status.OK, VERSION_TOKEN) : formatReply(
              Status.BAD_VERSION,
              `${cmd.version} not supported; this server speaks ${VERSION_TOKEN}`,
            ),
          );
          if (!ok) return;
          continue;
        }
        try {
          lookupService(cmd.type);
        } catch (err) {
          await conn.writeLine(formatReply(Status.UNKNOWN_TYPE, (err as Error).message));
          continue;
        }
        const left = new AbortController();
        const result = await pool.acquire(cmd.type, clientAddr, async (position) => {
          await conn.writeLine(formatReply(Status.QUEUED, `QUEUED ${position}`));
          // A waiting client has nothing to say: EOF (or a broken line) means it left. No idle
          // timeout while it waits on us; the queue timeout bounds the wait.
          early = conn.readLine().then((line) => ({ line }), (error) => ({ error }));
          early.then((r) => ("error" in r || r.line === null) && left.abort());
        }, left.signal);
        if (left.signal.aborted) {
          if (!("refused" in result)) pool.giveBack(result);
          unwrap(await early!); // a broken line gets its 4xx below
          return;
        }
        if ("refused" in result) {
          await conn.writeLine(formatReply(result.status, result.refused));
          continue;
        }
        slot.add("served", 1);
        await conn.writeLine(formatAssign(result));
      }
    } catch (err) {
      if (err instanceof ProtocolError && err.status) {
        await conn.writeLine(formatReply(err.status, err.message));
      } else throw err;
    } finally {
      conn.close();
      if (!Admission.refused(admitted)) admitted.release();
    }
  }

  pool.start();
  pool.probeEvery(cfg.probeMs, cfg.probeTimeoutMs);
  const accepting = acceptLoop(listener, conns, serve);
  // Clients arriving before the FIFOs are connected just queue; "ready" waits for the links.
  await pool.linked(2_000);
  control.ready(`dispatcher port ${cfg.port}`);
  log.info("dispatcher serving on {host}:{port} for {n} workers", {
    host: cfg.host,
    port: cfg.port,
    n: cfg.workers,
  });
  await stopped;
  await accepting;
  await conns.idle(cfg.graceMs);
  pool.close();
  segment.close();
  log.info("dispatcher stopped");
  return 0;
}
