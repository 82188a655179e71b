/**
 * The client side of the flow, used by `osps client` and `osps bench`:
 * one dispatcher connection, any number of requests, each handed to a worker
 * with a ticket.
 * @module
 */
import { ProtocolError, ServiceError } from "../errors.ts";
import { LineConn } from "../net/line_conn.ts";
import {
  type Assignment,
  checkGreeting,
  formatRun,
  parseAssign,
  parseReply,
  type Reply,
  Status,
} from "../net/protocol.ts";

/** The answer to one request. */
export interface Answer {
  readonly code: number;
  readonly text: string;
  readonly worker: Assignment;
  /** Times spent waiting in the dispatcher queue, 0 when served at once. */
  readonly queued: boolean;
}

/** Options of a session. */
export interface SessionOptions {
  /** Give up on any single reply after this long. */
  readonly timeoutMs?: number;
}

async function expectLine(conn: LineConn, what: string, timeoutMs?: number): Promise<Reply> {
  let line: string | null;
  try {
    line = await conn.readLine(timeoutMs);
  } catch (err) {
    if (err instanceof ProtocolError && err.status === Status.TIMEOUT) {
      throw new ServiceError(`${what} did not answer within ${timeoutMs} ms`, Status.TIMEOUT, { cause: err });
    }
    throw err;
  }
  if (line === null) throw new ConnectionLost(`${what} closed the connection before answering`);
  return parseReply(line);
}

/** The dispatcher connection dropped before an answer (the client may retry once). */
export class ConnectionLost extends ServiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, Status.WORKER_LOST, options);
  }
}

/** A connection to a dispatcher. */
export class Session {
  readonly host: string;
  readonly port: number;
  readonly #conn: LineConn;
  readonly #timeoutMs: number | undefined;
  #greeted = false;

  private constructor(host: string, port: number, conn: LineConn, timeoutMs?: number) {
    this.host = host;
    this.port = port;
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Connects to the dispatcher. Its greeting (protocol version) is checked
   * with the first reply: the first REQUEST goes out before the greeting is
   * read, so a one-shot request costs no extra round trip.
   */
  static async open(host: string, port: number, options: SessionOptions = {}): Promise<Session> {
    try {
      return new Session(host, port, await LineConn.connect(host, port), options.timeoutMs);
    } catch (err) {
      throw new ServiceError(`cannot reach the dispatcher at ${host}:${port}: ${(err as Error).message}`, 0, {
        cause: err,
      });
    }
  }

  async #greeting(): Promise<void> {
    if (this.#greeted) return;
    const reply = await expectLine(this.#conn, "dispatcher", this.#timeoutMs);
    if (reply.code !== Status.READY) {
      // Refused at the door (429 and the like): the server's own words.
      throw new ServiceError(`dispatcher: ${reply.code} ${reply.text}`, reply.code);
    }
    checkGreeting(reply);
    this.#greeted = true;
  }

  /** Asks the dispatcher for a worker, then runs the request there. */
  async request(type: string, arg = ""): Promise<Answer> {
    const { worker, queued } = await this.#assignment(type);
    return { ...(await this.#run(worker, type, arg)), worker, queued };
  }

  async #assignment(type: string): Promise<{ worker: Assignment; queued: boolean }> {
    if (!(await this.#conn.writeLine(`REQUEST ${type}`))) {
      throw new ConnectionLost("dispatcher closed the connection");
    }
    await this.#greeting();
    let queued = false;
    for (;;) {
      const reply = await expectLine(this.#conn, "dispatcher", this.#timeoutMs);
      if (reply.code === Status.QUEUED) {
        queued = true;
        continue;
      }
      if (reply.code !== Status.ASSIGN) {
        throw new ServiceError(`dispatcher: ${reply.code} ${reply.text}`, reply.code);
      }
      const worker = parseAssign(reply);
      // The dispatcher may name a wildcard address it listens on; reach the worker where we reached it.
      const host = worker.host === "0.0.0.0" || worker.host === "::" ? this.host : worker.host;
      return { worker: { ...worker, host }, queued };
    }
  }

  async #run(worker: Assignment, type: string, arg: string): Promise<{ code: number; text: string }> {
    let conn: LineConn;
    try {
      conn = await LineConn.connect(worker.host, worker.port);
    } catch (err) {
      throw new ServiceError(
        `cannot reach worker at ${worker.host}:${worker.port}: ${(err as Error).message}`,
        Status.WORKER_LOST,
        {
          cause: err,
        },
      );
    }
    try {
      // Pipelined: the request goes out before the greeting is read.
      await conn.writeLine(formatRun(worker.ticket, type, arg));
      const what = `worker at port ${worker.port}`;
      try {
        checkGreeting(await expectLine(conn, what, this.#timeoutMs));
        const reply = await expectLine(conn, what, this.#timeoutMs);
        if (reply.code >= 400) throw new ServiceError(`worker: ${reply.code} ${reply.text}`, reply.code);
        return reply;
      } catch (err) {
        if (err instanceof ConnectionLost) {
          throw new ServiceError(
            `worker at port ${worker.port} closed the connection before answering (it was stopped or restarted); retry`,
            Status.WORKER_LOST,
            { cause: err },
          );
        }
        throw err;
      }
    } finally {
      conn.close();
    }
  }

  /** Says QUIT and closes. */
  async close(): Promise<void> {
    await this.#conn.writeLine("QUIT");
    this.#conn.close();
  }

  /** Closes without QUIT. */
  abort(): void {
    this.#conn.close();
  }
}
