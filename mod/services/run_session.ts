/**
 * One client's connection to a worker: greeting, one `RUN <ticket> <type>
 * [arg]`, the ticket checked against what the dispatcher assigned, the
 * service run, one answer, close. Every failure ends this connection only; a
 * refusal is always a status line.
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import type { Admission } from "../net/admission.ts";
import { admitClient, type Client, type DoorOptions } from "../net/door.ts";
import type { LineConn } from "../net/line_conn.ts";
import { formatReply, greeting, parseRunCommand, Status } from "../net/protocol.ts";
import type { Claim, ClaimRefusal, DispatcherLink } from "../link/worker_link.ts";
import type { StatsView } from "../ipc/stats.ts";
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
async function badTicket(client: Client, why: string, d: RunSessionDeps): Promise<void> {
  const locked = d.admission.badTicket(client.key);
  if (locked) {
    logger().warn("refusing bad tickets from {addr}: {why}", { addr: client.key, why: locked.reason });
    return await refuse(client.conn, locked.status, locked.reason, d.stats);
  }
  logger().debug("refused {peer}: {why}", { peer: client.peer, why });
  await refuse(client.conn, Status.BAD_TICKET, why, d.stats);
}

/** Refuses the connection with `status`, counted in the worker's stats. */
function refuse(conn: LineConn, status: number, why: string, stats: StatsView): Promise<void> {
  stats.refusal(status);
  return conn.refuse(formatReply(status, why));
}

/** How long a worker attached over the network waits for a ticket its client outran. */
const TICKET_IN_FLIGHT_MS = 1_000;

/** What a worker's session needs. */
export interface RunSessionDeps {
  readonly id: number;
  /** The client port's limits and trusted proxies. */
  readonly door: DoorOptions;
  readonly link: DispatcherLink;
  readonly admission: Admission;
  /** This worker's counters in shared memory (requests by type and code, durations, refusals). */
  readonly stats: StatsView;
  /** The context services see (counters of this worker). */
  context(): ServiceContext;
  /** A claimed request has finished (answered or not): its place is free again. */
  onDone(claim: Claim): void;
  /**
   * Takes over the connection of a {@link Service.handover} type (chat), with
   * the bytes already read past the RUN line; resolves when that session ends.
   * Absent when the worker does not serve such sessions.
   */
  handover?(type: string, arg: string, conn: Deno.Conn, buffered: Uint8Array): Promise<void>;
}

/** Serves one client connection to a worker. */
export async function serveRunClient(tcp: Deno.TcpConn, d: RunSessionDeps): Promise<void> {
  const client = await admitClient(tcp, d.admission, d.door);
  if (!client) return;
  const conn = client.conn;
  /** The request once its ticket is claimed: from then on its end is counted as a request, not a refusal. */
  let claimed: { type: string; startedAt: number; claim: Claim } | undefined;
  const answered = (status: number) =>
    d.stats.request(claimed!.type, status, (performance.now() - claimed!.startedAt) / 1000);
  let handedOver = false;
  try {
    await conn.writeLine(greeting("worker", String(d.id)));
    const line = await conn.readLine({ timeoutMs: d.door.handshakeTimeoutMs });
    if (line === null) return;
    client.admitted.spoke(); // no longer line-less: never closed to make room
    const run = parseRunCommand(line);
    let claim = d.link.claim(run.ticket, run.type, run.arg);
    // Over the network the client may have outrun its ticket: wait for it a moment, then look again. A
    // ticket the worker does not hold is "mismatch" while it holds others (many clients), "no-ticket" else.
    if (
      (claim === "no-ticket" || claim === "mismatch") &&
      (await d.link.ticketInFlight?.(run.ticket, TICKET_IN_FLIGHT_MS))
    ) {
      claim = d.link.claim(run.ticket, run.type, run.arg);
    }
    if (typeof claim === "string") return await badTicket(client, REFUSALS[claim], d);
    claimed = { type: run.type, startedAt: performance.now(), claim };
    d.stats.ticket("used");
    const service = lookupService(run.type);
    if (service.handover && !d.handover) {
      answered(Status.BUSY);
      return await conn.refuse(formatReply(Status.BUSY, `${run.type} is not enabled on this instance`));
    }
    // While the service runs synchronously it holds the event loop: a hang then is this request's alone.
    d.link.running(claim);
    let pending: string | Promise<string>;
    try {
      pending = service.run(run.arg, d.context());
    } finally {
      d.link.running(null);
    }
    const result = await pending;
    // Handed to the connection, the answer is the request's end: its place is free at once. A client that
    // does not read it holds its own connection (until --write-timeout-ms), never this worker.
    const sent = conn.writeLine(formatReply(Status.OK, result));
    answered(Status.OK);
    claimed = undefined;
    d.onDone(claim);
    if (!(await sent) || !service.handover || !d.handover) return;
    handedOver = true; // the session goes on, in the worker's session code for this type
    return await d.handover(run.type, run.arg, conn.conn, conn.takeBuffered());
  } catch (err) {
    if (err instanceof ProtocolError && err.status === Status.BAD_TICKET) {
      return await badTicket(client, err.message, d); // malformed: a bad ticket too
    }
    if (err instanceof ProtocolError && err.status) {
      if (!claimed) return await refuse(conn, err.status, err.message, d.stats);
      answered(err.status);
      return await conn.refuse(formatReply(err.status, err.message));
    }
    logger().error("request failed: {err}", { err: String(err) });
    await conn.writeLine(formatReply(Status.INTERNAL, "the service failed; see the worker's log"));
    if (claimed) answered(Status.INTERNAL);
    else d.stats.refusal(Status.INTERNAL);
  } finally {
    if (claimed) d.onDone(claimed.claim);
    await client.finish(handedOver);
  }
}
