/**
 * Runs a request type for the HTTP API with the line protocol's own rules.
 *
 * - An inline type (`Service.inline`: bounded work that never waits) runs
 *   here, in the worker that received the request, with the same service
 *   function the line protocol runs, and is counted in this worker's stats.
 * - Any other type (one that can wait, block its worker, or be killed past a
 *   deadline: `sleep`, `fib`, `hold`) goes through the dispatcher exactly as
 *   `osps client` does: a ticket, the queue (and its `503`s), quarantine, the
 *   per-type deadline, and the dispatcher's account of a worker that died
 *   holding it (`OUTCOME`), which becomes `500` or `504`. The worker that
 *   runs it is chosen by the dispatcher, so a request that kills its worker
 *   usually leaves this one alive to say so.
 * @module
 */
import { ProtocolError, ServiceError } from "../errors.ts";
import { DispatcherLost, DispatcherUnreachable, Session, WorkerLost } from "../client/session.ts";
import type { StatsView } from "../ipc/stats.ts";
import { type Assignment, Status } from "../net/protocol.ts";
import { lookupService, type Service, type ServiceContext } from "../services/registry.ts";
import { ApiError, httpStatusOf } from "./problem.ts";

/** A request's answer, with where and how long it ran. */
export interface CallResult {
  readonly text: string;
  /** The worker that ran it: its slot number, or `host:port` for a remote one. */
  readonly worker: string;
  /** Time waiting for a worker (the dispatcher's queue), ms. */
  readonly queueMs: number;
  /** Time the request ran (for a ticket: the worker's connection, RUN and answer), ms. */
  readonly runMs: number;
}

/** Where this worker is and what it counts with. */
export interface ServiceCallDeps {
  readonly workerId: number;
  /** The dispatcher of the instance (ticketed types). */
  readonly dispatcher: { readonly host: string; readonly port: number };
  /** The instance's base port: a local worker's slot is its port minus this. */
  readonly basePort: number;
  readonly stats: StatsView;
  context(): ServiceContext;
  /** An inline request was served here (the slot's `served` counter). */
  onServed(): void;
  /** Longest wait for any one reply of the dispatcher or a worker. */
  readonly timeoutMs: number;
  /**
   * This worker's own slot, when it has one the dispatcher can assign: its
   * port, and how to use up a ticket for it without running anything.
   */
  readonly own?: { readonly port: number; giveBack(ticket: string, type: string): void };
}

/** Dispatcher sessions kept open between requests, per worker process. */
const MAX_IDLE_SESSIONS = 16;

/** The HTTP API's way to run request types. */
export class ServiceCaller {
  readonly #d: ServiceCallDeps;
  readonly #idle: Session[] = [];

  constructor(deps: ServiceCallDeps) {
    this.#d = deps;
  }

  /** The service of `type`, or the 404 the line protocol answers. */
  service(type: string): Service {
    try {
      return lookupService(type);
    } catch (err) {
      if (err instanceof ProtocolError) throw new ApiError(404, err.message, { code: err.status });
      throw err;
    }
  }

  /**
   * Runs `type` with `arg`; throws {@link ApiError} with the line protocol's
   * text on any refusal. An inline type whose service answers at once is
   * answered at once (no promise): the HTTP fast path writes it in the same
   * turn, as the line protocol does.
   */
  call(type: string, arg: string): CallResult | Promise<CallResult> {
    const service = this.service(type);
    if (service.handover) {
      throw new ApiError(400, `${type} is a session, not a request: use the IRC WebSocket at /v1/irc`, {
        code: Status.BAD_REQUEST,
      });
    }
    if (arg.includes("\0")) throw new ApiError(400, "NUL byte in argument", { code: Status.BAD_REQUEST });
    return service.inline ? this.#inline(type, service, arg) : this.#ticketed(type, arg);
  }

  #inline(type: string, service: Service, arg: string): CallResult | Promise<CallResult> {
    const started = performance.now();
    let text: string | Promise<string>;
    try {
      text = service.run(arg, this.#d.context());
    } catch (err) {
      throw this.#failed(type, started, err);
    }
    if (typeof text === "string") return this.#ran(type, started, text);
    return text.then((t) => this.#ran(type, started, t), (err) => {
      throw this.#failed(type, started, err);
    });
  }

  #ran(type: string, started: number, text: string): CallResult {
    const d = this.#d;
    const runMs = performance.now() - started;
    d.stats.request(type, Status.OK, runMs / 1000);
    d.onServed();
    return { text, worker: String(d.workerId), queueMs: 0, runMs };
  }

  /** Counts a failed inline run; what to throw (the service's own failure when it is no refusal). */
  #failed(type: string, started: number, err: unknown): unknown {
    const code = err instanceof ProtocolError && err.status ? err.status : Status.INTERNAL;
    this.#d.stats.request(type, code, (performance.now() - started) / 1000);
    if (code === Status.INTERNAL) return err;
    return new ApiError(httpStatusOf(code, (err as Error).message), (err as Error).message, {
      code,
      cause: err,
    });
  }

  async #ticketed(type: string, arg: string): Promise<CallResult> {
    if (/[\r\n]/.test(arg)) {
      throw new ApiError(400, `${type} takes one line: its argument may not hold a line break`, {
        code: Status.BAD_REQUEST,
      });
    }
    const started = performance.now();
    const { session, worker } = await this.#assignOther(type);
    const assignedAt = performance.now();
    try {
      const { text } = await session.runOn(worker, type, arg);
      this.#release(session);
      return {
        text,
        worker: this.#name(worker),
        queueMs: assignedAt - started,
        runMs: performance.now() - assignedAt,
      };
    } catch (err) {
      if (err instanceof DispatcherLost) session.abort();
      else this.#release(session);
      throw toApiError(err);
    }
  }

  /**
   * A ticket for a worker other than this one whenever another has a free
   * place: a request that kills the worker running it (a deadline, a hang)
   * then leaves alive the worker holding the client's connection, which
   * answers 500 or 504 with the dispatcher's account. When the dispatcher
   * names this worker, its ticket is held while a second session asks (the
   * dispatcher's round moves on to the next worker; with one place per
   * worker this one is full meanwhile), then used up here with nothing run.
   * Named again (no other worker has a free place), the request runs here.
   */
  async #assignOther(type: string): Promise<{ session: Session; worker: Assignment }> {
    const first = await this.#assign(type);
    const own = this.#d.own;
    if (!own || first.worker.port !== own.port || first.worker.host !== this.#d.dispatcher.host) return first;
    let other;
    try {
      other = await this.#assign(type);
    } catch (err) {
      if (err instanceof ApiError && err.status === 503) return first; // no other: this one it is
      own.giveBack(first.worker.ticket, type);
      this.#release(first.session);
      throw err;
    }
    own.giveBack(first.worker.ticket, type);
    this.#release(first.session);
    return other;
  }

  /** A session and a worker assigned on it; a dispatcher connection that dropped is tried once more. */
  async #assign(type: string): Promise<{ session: Session; worker: Assignment }> {
    for (let attempt = 0;; attempt++) {
      const session = await this.#session();
      try {
        return { session, worker: (await session.assign(type)).worker };
      } catch (err) {
        if (err instanceof DispatcherLost) {
          session.abort();
          if (attempt === 0) continue;
        } else this.#release(session);
        throw toApiError(err);
      }
    }
  }

  #name(w: Assignment): string {
    return w.host === this.#d.dispatcher.host ? String(w.port - this.#d.basePort) : `${w.host}:${w.port}`;
  }

  async #session(): Promise<Session> {
    const kept = this.#idle.pop();
    if (kept) return kept;
    const { host, port } = this.#d.dispatcher;
    try {
      return await Session.open(host, port, { timeoutMs: this.#d.timeoutMs });
    } catch (err) {
      if (err instanceof DispatcherUnreachable) {
        throw new ApiError(503, "the dispatcher cannot be reached; retry later", {
          code: Status.BUSY,
          cause: err,
        });
      }
      throw err;
    }
  }

  #release(s: Session): void {
    if (this.#idle.length < MAX_IDLE_SESSIONS) this.#idle.push(s);
    else void s.close().catch(() => {});
  }

  /** Closes the kept dispatcher sessions. */
  close(): void {
    for (const s of this.#idle.splice(0)) s.abort();
  }
}

/** A refusal or failure of the ticketed path as the API's error. */
function toApiError(err: unknown): ApiError {
  if (err instanceof WorkerLost) {
    const text = err.message.replace(/; (retry|not retried \(it may have partly run\))$/, "");
    return new ApiError(err.nothingRan ? 503 : httpStatusOf(Status.WORKER_LOST, text), text, {
      code: Status.WORKER_LOST,
      cause: err,
    });
  }
  if (err instanceof ServiceError || err instanceof ProtocolError) {
    const text = err.message.replace(/^(dispatcher|worker): \d{3} /, "");
    const code = err.status || Status.INTERNAL;
    return new ApiError(httpStatusOf(code, text), text, { code, cause: err });
  }
  return new ApiError(500, "the request failed; see the worker's log", { cause: err });
}
