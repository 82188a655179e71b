/**
 * A worker's HTTP API (`--http-port`). Every worker listens on the port with
 * `SO_REUSEPORT`, as for IRC, and the kernel spreads connections: a request
 * is answered by the process that accepted it, with no hop through another
 * (the chat's fan-out lives in the workers too, which Server-Sent Events and
 * IRC over WebSocket need). Connections are accepted by the same loop and
 * admitted by the same per-address limits as the worker's other ports
 * (`mod/net/server.ts`, `mod/net/admission.ts`); HTTP framing and its limits
 * are `http_wire.ts`'s, the routes Hono's (`api.ts`).
 * @module
 */
import { CannotBootError } from "../errors.ts";
import type { StatsView } from "../ipc/stats.ts";
import { logger } from "../log.ts";
import type { Admission } from "../net/admission.ts";
import { Server } from "../net/server.ts";
import type { ServiceContext } from "../services/registry.ts";
import { apiHandler, buildApi, errorResponse } from "./api.ts";
import type { HttpConfig } from "./http_config.ts";
import { type FastPath, serveHttpConn } from "./http_conn.ts";
import { problemResponse } from "./problem.ts";
import { fastRequests, requestRoutes } from "./routes_requests.ts";
import { chatRoutes } from "./routes_chat.ts";
import { ircRoutes } from "./routes_irc.ts";
import { tokenRoutes } from "./routes_tokens.ts";
import type { AccountsApi } from "./auth.ts";
import { pageRoutes } from "./chat_page.ts";
import { ServiceCaller } from "./service_call.ts";
import type { ChatServer } from "../chat/chat_server.ts";
import denoJson from "../../deno.json" with { type: "json" };

/** Header fields one request may have. */
const MAX_HEADERS = 100;

/** Where a worker's HTTP API runs and what it counts with. */
export interface HttpPlace {
  readonly host: string;
  readonly workerId: number;
  /** This worker's own port (where tickets for it are presented). */
  readonly ownPort: number;
  /** The instance's dispatcher port (also its base port). */
  readonly dispatcherPort: number;
  readonly admission: Admission;
  readonly stats: StatsView;
  /** Connections this process may hold (the worker's budget). */
  readonly maxInFlight: number;
  readonly headTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** A client must take each answer within this (`--write-timeout-ms`; 0 = no limit). */
  readonly writeTimeoutMs: number;
  context(): ServiceContext;
  onServed(): void;
  /** Uses up a ticket the dispatcher issued for this worker, running nothing (see `ServiceCallDeps.own`). */
  giveBack(ticket: string, type: string): void;
  /** The worker's chat service, when chat is on (channels, events, IRC over WebSocket). */
  readonly chat?: ChatServer;
}

/** A worker's HTTP API. */
export class HttpService {
  readonly #server: Server;
  readonly #caller: ServiceCaller;
  /** Where it listens. */
  readonly addr: Deno.NetAddr;

  readonly #closing: AbortController;

  private constructor(server: Server, caller: ServiceCaller, closing: AbortController) {
    this.#server = server;
    this.#caller = caller;
    this.#closing = closing;
    this.addr = server.listener.addr as Deno.NetAddr;
  }

  /** Listens on the HTTP port and starts serving. */
  static start(cfg: HttpConfig, place: HttpPlace): HttpService {
    const host = cfg.host || place.host;
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: host, port: cfg.port, reusePort: true });
    } catch (err) {
      throw new CannotBootError(`http cannot listen on ${host}:${cfg.port}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const caller = new ServiceCaller({
      workerId: place.workerId,
      dispatcher: { host: place.host, port: place.dispatcherPort },
      basePort: place.dispatcherPort,
      stats: place.stats,
      context: place.context,
      onServed: place.onServed,
      timeoutMs: 120_000,
      own: { port: place.ownPort, giveBack: place.giveBack },
    });
    const closing = new AbortController();
    const idle = new Set<Deno.Conn>();
    closing.signal.addEventListener("abort", () => {
      for (const c of idle) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
    });
    const accounts = () => accountsOf(place.chat);
    const app = buildApi({
      mounts: [
        ["/requests", requestRoutes(caller)],
        ["/channels", chatRoutes(place.chat, closing.signal, accounts)],
        ["/tokens", tokenRoutes(accounts)],
        ["/irc", ircRoutes(place.chat, cfg.corsOrigin)],
      ],
      root: pageRoutes(),
      corsOrigin: cfg.corsOrigin,
      version: denoJson.version,
    });
    const handler = apiHandler(app);
    // Requests with an Origin go through Hono when CORS is on: its middleware answers them.
    const direct = fastRequests(caller);
    const fast: FastPath = cfg.corsOrigin ? (r, id) => r.header("origin") ? null : direct(r, id) : direct;
    const server = new Server(listener, place.maxInFlight);
    server.serve((tcp) =>
      serveHttpConn(tcp, {
        admission: place.admission,
        handler,
        fast,
        errorResponse,
        stopping: closing.signal,
        idle,
        options: {
          maxHeadBytes: cfg.maxHeaderBytes,
          maxBodyBytes: cfg.maxBodyBytes,
          maxHeaders: MAX_HEADERS,
          headTimeoutMs: place.headTimeoutMs,
          bodyTimeoutMs: place.headTimeoutMs,
          idleTimeoutMs: place.idleTimeoutMs,
          writeTimeoutMs: place.writeTimeoutMs,
          refusal: (status, detail) => problemResponse(status, detail),
        },
        onRefusal: (status) => place.stats.refusal(status),
      })
    );
    logger().info("http: API on http://{host}:{port}/v1/", { host, port: cfg.port });
    return new HttpService(server, caller, closing);
  }

  /**
   * Stops listening; kept-alive connections close when idle, requests being
   * served are answered (with `connection: close`) within `graceMs`, event
   * streams end (their clients resume elsewhere with Last-Event-ID).
   */
  async close(graceMs = 2_000): Promise<void> {
    this.#server.close();
    this.#closing.abort();
    await this.#server.closed();
    await this.#server.conns.idle(graceMs);
    this.#caller.close();
  }
}

/** The chat's account service, when chat is on and has one. */
function accountsOf(chat: ChatServer | undefined): AccountsApi | undefined {
  return chat?.accounts;
}
