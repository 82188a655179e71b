/**
 * One client's connection to the dispatcher, from greeting to goodbye: the
 * protocol's dispatcher side (HELLO, REQUEST, OUTCOME, HOSTS, QUIT). Every failure
 * here ends this connection at most; a refusal is always a status line.
 * @module
 */
import type { DispatcherConfig } from "../cli/config.ts";
import { ProtocolError } from "../errors.ts";
import { logger } from "../log.ts";
import type { Admission } from "../net/admission.ts";
import { admitClient, type DoorOptions } from "../net/door.ts";
import type { LineConn } from "../net/line_conn.ts";
import {
  BadCommand,
  type DispatcherCommand,
  formatAssign,
  formatHosts,
  formatReply,
  greeting,
  parseDispatcherCommand,
  Status,
  VERSION_TOKEN,
} from "../net/protocol.ts";
import { lookupService } from "../services/registry.ts";
import { lostWorkText } from "../supervise/exit_reason.ts";
import type { SlotView } from "../ipc/shm.ts";
import type { StatsView } from "../ipc/stats.ts";
import { sleep } from "../deadline.ts";
import type { Quarantine } from "./quarantine.ts";
import type { WorkerPool } from "./worker_pool.ts";

/** What a dispatcher session needs. */
export interface SessionDeps {
  readonly cfg: DispatcherConfig;
  readonly pool: WorkerPool;
  readonly admission: Admission;
  /** The client port's limits and trusted proxies. */
  readonly door: DoorOptions;
  readonly quarantine: Quarantine;
  /** The dispatcher's own slot (hand-off counter). */
  readonly slot: SlotView;
  /** The dispatcher's counters in shared memory (refusals, tickets issued). */
  readonly stats: StatsView;
}

/** How long OUTCOME waits for a dead worker's account before answering what it knows. */
const OUTCOME_WAIT_MS = 2_000;
/** Abort reasons (an abort without one makes a DOMException, which costs on a hot path). */
const SERVED = "served";

/** Serves one client connection until it quits, breaks the protocol, times out or goes away. */
export async function serveDispatcherClient(tcp: Deno.TcpConn, d: SessionDeps): Promise<void> {
  const client = await admitClient(tcp, d.admission, d.door);
  if (!client) return;
  const { conn, peer, key, admitted } = client;
  /** A refusal's status line, counted. */
  const refusal = (status: number, why: string) => {
    d.stats.refusal(status);
    return formatReply(status, why);
  };
  try {
    await conn.writeLine(greeting("dispatcher"));
    let timeoutMs = d.cfg.handshakeTimeoutMs;
    /** The last ticket this connection got: it may hold one unused ticket at a time. */
    let lastTicket: string | undefined;
    for (;;) {
      const line = await conn.readLine({ timeoutMs });
      timeoutMs = d.cfg.idleTimeoutMs;
      if (line === null) return;
      admitted.spoke(); // no longer line-less: never closed to make room (cheap, and idempotent)
      // Every line is charged, bad ones too: pipelined garbage must not get free CPU.
      const tooFast = d.admission.request(key);
      if (tooFast) return await conn.refuse(refusal(tooFast.status, tooFast.reason));
      let cmd: DispatcherCommand;
      try {
        cmd = parseDispatcherCommand(line);
      } catch (err) {
        if (!(err instanceof BadCommand)) throw err;
        await conn.writeLine(refusal(err.status, err.message));
        continue; // a bad line costs the client nothing else
      }
      switch (cmd.verb) {
        case "QUIT":
          await conn.writeLine(formatReply(Status.BYE, "bye"));
          return;
        case "HELLO":
          if (cmd.version !== VERSION_TOKEN) {
            return await conn.refuse(
              refusal(
                Status.BAD_VERSION,
                `${cmd.version} not supported; this server speaks ${VERSION_TOKEN}`,
              ),
            );
          }
          await conn.writeLine(formatReply(Status.OK, VERSION_TOKEN));
          continue;
        case "OUTCOME":
          await conn.writeLine(await outcome(d.pool, cmd.ticket));
          continue;
        case "HOSTS":
          await conn.writeLine(formatHosts(d.pool.hosts()));
          continue;
        case "REQUEST": {
          const refused = checkType(cmd.type, d.quarantine);
          if (refused) {
            await conn.writeLine(refusal(refused.status, refused.why));
            continue;
          }
          // One unused ticket per connection: a pipelined REQUEST waits until the last one is used or expires.
          const held = lastTicket;
          if (held !== undefined) {
            while (d.pool.unused(held)) await sleep(1);
          }
          const ticket = await request(conn, cmd.type, peer, key, d);
          if (ticket === null) return;
          lastTicket = ticket;
        }
      }
    }
  } catch (err) {
    if (err instanceof ProtocolError && err.status) {
      return await conn.refuse(refusal(err.status, err.message));
    }
    throw err;
  } finally {
    await client.finish();
  }
}

/** Why `type` is refused, or null when it may be served. */
function checkType(type: string, quarantine: Quarantine): { status: number; why: string } | null {
  try {
    lookupService(type);
  } catch (err) {
    if (err instanceof ProtocolError) return { status: err.status, why: err.message };
    throw err;
  }
  const q = quarantine.check(type);
  return q ? { status: q.status, why: q.refused } : null;
}

/**
 * Gets a worker for one REQUEST and answers with its ASSIGN (or a refusal).
 * While the client waits in the queue its connection is watched: EOF or a
 * broken line means it left, and it gives up its place. Returns the ticket
 * sent, `""` after a refusal, or null when the client is gone.
 */
async function request(
  conn: LineConn,
  type: string,
  peer: string,
  key: string,
  d: SessionDeps,
): Promise<string | null> {
  // Made only if the client has to wait; aborted with a plain reason (a DOMException costs).
  let watch: AbortController | undefined;
  let left = false;
  let notice: Promise<unknown> | undefined;
  const result = await d.pool.acquire(
    type,
    // Loopback is one address for every local client: its share is not held against it, it holds one unused
    // ticket per connection instead (see SECURITY.md).
    { peer, owner: key, capped: key !== "loopback" },
    // Told once it has waited QUEUED_NOTICE_MS (a shorter wait, the usual one under load, costs no line).
    (position) => notice = conn.writeLine(formatReply(Status.QUEUED, `QUEUED ${position}`)),
    // Watched from the moment it waits: a waiting client has nothing to say, so EOF or a broken line means it
    // left and gives up its place at once (a line it pipelines stays for later). No idle timeout while it
    // waits on us: the queue timeout bounds the wait.
    (leave) => {
      watch = new AbortController();
      conn.peek(watch.signal).then((r) => {
        if (r === "line") return;
        left = true;
        leave();
      }, () => {});
    },
    d.quarantine.suspect(type),
  );
  await notice; // the QUEUED line goes out before what follows it
  watch?.abort(SERVED);
  if ("refused" in result) {
    if (left) return null;
    d.stats.refusal(result.status);
    await conn.writeLine(formatReply(result.status, result.refused));
    return "";
  }
  if (left || !(await conn.writeLine(formatAssign(result)))) {
    d.pool.giveBack(result); // the client never got it, or will never use it
    return null;
  }
  d.slot.add("served", 1);
  d.stats.ticket("issued");
  return result.ticket;
}

/** The answer to `OUTCOME <ticket>`: what became of a ticket, waiting a little for a dead worker's account. */
async function outcome(pool: WorkerPool, ticket: string): Promise<string> {
  const worker = pool.workerOf(ticket);
  if (worker === undefined) {
    return formatReply(Status.UNKNOWN_TYPE, "no such ticket was issued here (or it is too old to remember)");
  }
  const until = performance.now() + OUTCOME_WAIT_MS;
  let fate = pool.fate(ticket);
  while ((fate.state === "unknown" || fate.state === "running") && performance.now() < until) {
    await sleep(10);
    fate = pool.fate(ticket);
  }
  if (fate.state === "lost") {
    const l = fate.lost;
    const request = l.arg ? `${l.type} ${l.arg}` : l.type;
    const text = lostWorkText(`worker ${worker}`, request, l.reason, l.limitMs, l.started, l.culprit);
    logger().debug("outcome of a lost ticket: {text}", { text });
    return formatReply(Status.WORKER_LOST, text);
  }
  return formatReply(Status.OK, `OUTCOME ${fate.state}`);
}
