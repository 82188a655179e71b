/**
 * The client side of the flow, used by `osps client` and `osps bench`:
 * one dispatcher connection, any number of requests, each handed to a worker
 * with a ticket. Failures are typed, so callers decide what to retry by
 * class, never by message.
 * @module
 */
import { ProtocolError, ServiceError } from "../errors.ts";
import { LineConn } from "../net/line_conn.ts";
import {
  type Assignment,
  checkGreeting,
  formatRun,
  parseAssign,
  parseHosts,
  parseReply,
  type Reply,
  Status,
  unescapeText,
  VERSION_TOKEN,
} from "../net/protocol.ts";
import { mayReach, OutOfScope } from "./reach.ts";

/** The answer to one request. */
export interface Answer {
  readonly code: number;
  /** The result, unescaped (it may contain line breaks). */
  readonly text: string;
  readonly worker: Assignment;
  /** True when the request waited in the dispatcher's queue. */
  readonly queued: boolean;
  /** When the dispatcher's ASSIGN arrived (`performance.now()`): the wait before it is the queue's. */
  readonly assignedAt: number;
}

/** Options of a session. */
export interface SessionOptions {
  /** Give up on any single reply after this long. */
  readonly timeoutMs?: number;
}

/** The dispatcher could not be reached at all. */
export class DispatcherUnreachable extends ServiceError {}

/** The dispatcher connection dropped before an answer (nothing ran: the client may retry once). */
export class DispatcherLost extends ServiceError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, Status.WORKER_LOST, options);
  }
}

/** The assigned worker could not be reached (nothing ran: the client may retry once). */
export class WorkerUnreachable extends ServiceError {}

/**
 * The worker closed the connection before answering: it was stopped, it
 * crashed, or the watchdog killed it (the message says which, when the
 * dispatcher knows). The request may have run partly: not retried, unless
 * {@link WorkerLost.nothingRan} (the worker died before the request reached it).
 */
export class WorkerLost extends ServiceError {
  /** True when the dispatcher says the request never reached the worker (safe to retry). */
  nothingRan = false;
}

async function expectLine(
  conn: LineConn,
  what: string,
  lost: (m: string) => Error,
  timeoutMs?: number,
): Promise<Reply> {
  let line: string | null;
  try {
    line = await conn.readLine({ timeoutMs });
  } catch (err) {
    if (err instanceof ProtocolError && err.status === Status.TIMEOUT) {
      throw new ServiceError(`${what} did not answer within ${timeoutMs} ms`, Status.TIMEOUT, { cause: err });
    }
    throw err;
  }
  if (line === null) throw lost(`${what} closed the connection before answering`);
  return parseReply(line);
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
      throw new DispatcherUnreachable(
        `cannot reach the dispatcher at ${host}:${port}: ${(err as Error).message}`,
        0,
        {
          cause: err,
        },
      );
    }
  }

  #lostDispatcher = (m: string) => new DispatcherLost(m);

  async #greeting(): Promise<void> {
    if (this.#greeted) return;
    const reply = await expectLine(this.#conn, "dispatcher", this.#lostDispatcher, this.#timeoutMs);
    if (reply.code !== Status.READY) {
      // Refused at the door (429 and the like): the server's own words.
      throw new ServiceError(`dispatcher: ${reply.code} ${unescapeText(reply.text)}`, reply.code);
    }
    checkGreeting(reply);
    this.#greeted = true;
  }

  /** Says HELLO and waits for the dispatcher's agreement: the session is then known to work. */
  async hello(): Promise<string> {
    if (!(await this.#conn.writeLine(`HELLO ${VERSION_TOKEN}`))) {
      throw this.#lostDispatcher("closed the connection");
    }
    await this.#greeting();
    const reply = await expectLine(this.#conn, "dispatcher", this.#lostDispatcher, this.#timeoutMs);
    if (reply.code !== Status.OK) {
      throw new ServiceError(`dispatcher: ${reply.code} ${reply.text}`, reply.code);
    }
    return reply.text;
  }

  /**
   * The hosts of the workers the dispatcher may assign (`HOSTS`); empty from
   * a dispatcher that does not know the command.
   */
  async hosts(): Promise<string[]> {
    if (!(await this.#conn.writeLine("HOSTS"))) {
      throw this.#lostDispatcher("dispatcher closed the connection");
    }
    await this.#greeting();
    const reply = await expectLine(this.#conn, "dispatcher", this.#lostDispatcher, this.#timeoutMs);
    if (reply.code === Status.BAD_REQUEST) return [];
    if (reply.code !== Status.OK) {
      throw new ServiceError(`dispatcher: ${reply.code} ${unescapeText(reply.text)}`, reply.code);
    }
    return parseHosts(reply);
  }

  /** Asks the dispatcher for a worker, then runs the request there. */
  async request(type: string, arg = ""): Promise<Answer> {
    const { worker, queued } = await this.assign(type);
    const assignedAt = performance.now();
    return { ...(await this.#run(worker, type, arg)), worker, queued, assignedAt };
  }

  /**
   * Runs a request on a worker this session was assigned ({@link Session.assign}):
   * the second half of {@link Session.request}.
   */
  async runOn(worker: Assignment, type: string, arg: string): Promise<{ code: number; text: string }> {
    return await this.#run(worker, type, arg);
  }

  /** Asks the dispatcher for a worker (waiting in its queue if need be): the first half of {@link Session.request}. */
  async assign(type: string): Promise<{ worker: Assignment; queued: boolean }> {
    if (!(await this.#conn.writeLine(`REQUEST ${type}`))) {
      throw this.#lostDispatcher("dispatcher closed the connection");
    }
    await this.#greeting();
    let queued = false;
    for (;;) {
      const reply = await expectLine(this.#conn, "dispatcher", this.#lostDispatcher, this.#timeoutMs);
      if (reply.code === Status.QUEUED) {
        queued = true;
        continue;
      }
      if (reply.code !== Status.ASSIGN) {
        throw new ServiceError(`dispatcher: ${reply.code} ${unescapeText(reply.text)}`, reply.code);
      }
      const worker = parseAssign(reply);
      // The dispatcher may name a wildcard address it listens on; reach the worker where we reached it.
      const host = worker.host === "0.0.0.0" || worker.host === "::" ? this.host : worker.host;
      return { worker: { ...worker, host }, queued };
    }
  }

  async #run(worker: Assignment, type: string, arg: string): Promise<{ code: number; text: string }> {
    const { conn, code, text } = await this.#start(worker, type, arg);
    conn.close();
    return { code, text };
  }

  /**
   * Connects to the worker, sends RUN, and reads its greeting and first
   * reply; the connection stays open (the caller closes it). Refusals and
   * lost workers throw as for {@link Session.request}.
   */
  async #start(
    worker: Assignment,
    type: string,
    arg: string,
  ): Promise<{ conn: LineConn; code: number; text: string }> {
    if (!mayReach(worker.host, worker.port)) throw new OutOfScope(worker.host, worker.port);
    let conn: LineConn;
    try {
      conn = await LineConn.connect(worker.host, worker.port);
    } catch (err) {
      throw new WorkerUnreachable(
        `cannot reach worker at ${worker.host}:${worker.port}: ${(err as Error).message}`,
        Status.WORKER_LOST,
        { cause: err },
      );
    }
    const what = `worker at ${worker.host}:${worker.port}`;
    const lost = (m: string) => new WorkerLost(m, Status.WORKER_LOST);
    try {
      // Pipelined: the request goes out before the greeting is read.
      await conn.writeLine(formatRun(worker.ticket, type, arg));
      const greeting = await expectLine(conn, what, lost, this.#timeoutMs);
      if (greeting.code !== Status.READY) {
        throw new ServiceError(`worker: ${greeting.code} ${unescapeText(greeting.text)}`, greeting.code);
      }
      checkGreeting(greeting);
      const reply = await expectLine(conn, what, lost, this.#timeoutMs);
      const text = unescapeText(reply.text);
      if (reply.code >= 400) throw new ServiceError(`worker: ${reply.code} ${text}`, reply.code);
      return { conn, code: reply.code, text };
    } catch (err) {
      conn.close();
      if (err instanceof WorkerLost) throw await this.#explain(err, worker.ticket);
      throw err;
    }
  }

  /**
   * Asks for a worker and starts a request whose connection the worker keeps
   * (`chat`): returns that connection after the worker's `200`, for the
   * caller to speak the session's protocol on (and close).
   */
  async takeOver(type: string, arg: string): Promise<{ conn: LineConn; text: string; worker: Assignment }> {
    const { worker } = await this.assign(type);
    const { conn, text } = await this.#start(worker, type, arg);
    return { conn, text, worker };
  }

  /** Asks the dispatcher what became of the ticket, to say why the worker went away. */
  async #explain(err: WorkerLost, ticket: string): Promise<WorkerLost> {
    try {
      if (!(await this.#conn.writeLine(`OUTCOME ${ticket}`))) return err;
      const reply = await expectLine(this.#conn, "dispatcher", this.#lostDispatcher, 5_000);
      if (reply.code === Status.WORKER_LOST) {
        const text = unescapeText(reply.text);
        if (text.endsWith("nothing ran")) {
          const lost = new WorkerLost(`${text}; retry`, Status.WORKER_LOST, { cause: err });
          lost.nothingRan = true;
          return lost;
        }
        return new WorkerLost(`${text}; not retried (it may have partly run)`, Status.WORKER_LOST, {
          cause: err,
        });
      }
    } catch { /* the dispatcher cannot say: keep what we know */ }
    return new WorkerLost(`${err.message} (it was stopped or restarted); retry`, Status.WORKER_LOST, {
      cause: err,
    });
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
