/**
 * One client's connection to a worker: greeting, one `RUN <ticket> <type>
 * [arg]`, the ticket checked against what the dispatcher assigned, the
 * service run, one answer, close. Every failure ends this connection only; a
 * refusal is always a status line.
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import { addrKey, Admission, hostOf } from "../net/admission.ts";
import { LineConn } from "../net/line_conn.ts";
import { formatReply, greeting, parseRunCommand, Status } from "../net/protocol.ts";
import type { ClaimRefusal, DispatcherLink } from "../link/worker_link.ts";
import { lookupService, type ServiceContext } from "./registry.ts";

const REFUSALS: Record<ClaimRefusal, string> = {
  "no-ticket": "no ticket is pending for this worker; ask the dispatcher first",
  mismatch: "invalid ticket",
  expired: "ticket expired; ask the dispatcher again",
  "wrong-type": "ticket was issued for another request type",
};

/**
 * Refuses a bad ticket: 401 with the reason, or 429 once this address has
 * shown too many. Only bad tickets are throttled: a client of the same
 * address with a valid ticket is served.
 */
async function badTicket(conn: LineConn, key: string, why: string, admission: Admission): Promise<void> {
  const locked = admission.badTicket(key);
  if (locked) {
    logger().warn("refusing bad tickets from {addr}: {why}", { addr: key, why: locked.reason });
    return await conn.refuse(formatReply(locked.status, locked.reason));
  }
  logger().debug("refused {peer}: {why}", { peer: conn.peer, why });
  await conn.refuse(formatReply(Status.BAD_TICKET, why));
}

/** What a worker's session needs. */
export interface RunSessionDeps {
  readonly id: number;
  readonly maxLineBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly link: DispatcherLink;
  readonly admission: Admission;
  /** The context services see (counters of this worker). */
  context(): ServiceContext;
  /** A claimed request has finished (answered or not): the worker is free again. */
  onDone(): void;
  /**
   * Takes over the connection of a {@link Service.handover} type (chat), with
   * the bytes already read past the RUN line; resolves when that session ends.
   * Absent when the worker does not serve such sessions.
   */
  handover?(type: string, arg: string, conn: Deno.Conn, buffered: Uint8Array): Promise<void>;
}

/** Serves one client connection to a worker. */
export async function serveRunClient(tcp: Deno.TcpConn, d: RunSessionDeps): Promise<void> {
  const conn = new LineConn(tcp, { maxLineBytes: d.maxLineBytes });
  const key = addrKey(hostOf(conn.peer));
  const admitted = d.admission.admit(key);
  if (Admission.refused(admitted)) return await conn.refuse(formatReply(admitted.status, admitted.reason));
  let claimed = false;
  let handedOver = false;
  try {
    await conn.writeLine(greeting("worker", String(d.id)));
    const line = await conn.readLine({ timeoutMs: d.handshakeTimeoutMs });
    if (line === null) return;
    const run = parseRunCommand(line);
    const refusal = d.link.claim(run.ticket, run.type, run.arg);
    if (refusal) return await badTicket(conn, key, REFUSALS[refusal], d.admission);
    claimed = true;
    const service = lookupService(run.type);
    if (service.handover && !d.handover) {
      return await conn.refuse(formatReply(Status.BUSY, `${run.type} is not enabled on this instance`));
    }
    const result = await service.run(run.arg, d.context());
    await conn.writeLine(formatReply(Status.OK, result));
    if (service.handover && d.handover) {
      claimed = false;
      d.onDone(); // the session goes on; the worker's slot is free for the next request now
      handedOver = true;
      return await d.handover(run.type, run.arg, conn.conn, conn.takeBuffered());
    }
  } catch (err) {
    if (err instanceof ProtocolError && err.status === Status.BAD_TICKET) {
      return await badTicket(conn, key, err.message, d.admission); // malformed: a bad ticket too
    }
    if (err instanceof ProtocolError && err.status) {
      return await conn.refuse(formatReply(err.status, err.message));
    }
    logger().error("request failed: {err}", { err: String(err) });
    await conn.writeLine(formatReply(Status.INTERNAL, "the service failed; see the worker's log"));
  } finally {
    if (!handedOver) conn.close(); // else the session closed it
    await conn.settled(); // the descriptor is free only then
    admitted.release();
    if (claimed) d.onDone();
  }
}
