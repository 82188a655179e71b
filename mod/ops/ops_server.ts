/**
 * The watchdog's HTTP endpoint for operators (`--metrics-port`): `/metrics`,
 * `/healthz`, `/readyz`, `/status.json` and the status page `/`. Read-only:
 * only GET and HEAD, no request changes anything. It runs on the watchdog's
 * event loop, so it is kept cheap and bounded: small answers rendered from
 * shared memory, each reused for {@link REUSE_MS}, no request body read.
 * @module
 */
import { CannotBootError } from "../errors.ts";
import { logger } from "../log.ts";
import { PROM_CONTENT_TYPE } from "./prom_text.ts";
import type { Readiness } from "./readiness.ts";

/** What the endpoints answer, computed on each request. */
export interface OpsHandlers {
  metrics(): string;
  readiness(): Readiness;
  page(): string;
  /** The instance's status (the shape of `osps status --json`); null while none runs. */
  statusJson(): unknown | null;
}

/**
 * A rendered page or scrape is reused for this long: a scraper storm costs
 * HTTP handling, not a render per request, on the loop that also supervises.
 * Health and readiness are cheap and always fresh.
 */
const REUSE_MS = 200;
const REUSED = new Set(["/metrics", "/", "/status.json"]);

const TEXT = "text/plain; charset=utf-8";

/** An answer before it becomes a Response (a Response's body can be read once). */
export interface Answer {
  readonly status: number;
  readonly type: string;
  readonly body: string;
}

/** Answers one GET of `path`. */
export function answer(path: string, h: OpsHandlers): Answer {
  switch (path) {
    case "/metrics":
      return { status: 200, type: PROM_CONTENT_TYPE, body: h.metrics() };
    case "/healthz":
      return { status: 200, type: TEXT, body: "ok: the watchdog is running\n" };
    case "/readyz": {
      const r = h.readiness();
      return { status: r.ready ? 200 : 503, type: TEXT, body: `${r.reason}\n` };
    }
    case "/status.json": {
      const s = h.statusJson();
      return s === null
        ? {
          status: 503,
          type: "application/json",
          body: JSON.stringify({ error: "no instance is running (starting, or being rebuilt)" }) + "\n",
        }
        : { status: 200, type: "application/json", body: JSON.stringify(s) + "\n" };
    }
    case "/":
      return { status: 200, type: "text/html; charset=utf-8", body: h.page() };
  }
  return { status: 404, type: TEXT, body: "not found: try /, /metrics, /healthz, /readyz, /status.json\n" };
}

function respond(a: Answer, head: boolean): Response {
  return new Response(head ? null : a.body, {
    status: a.status,
    headers: { "content-type": a.type, "cache-control": "no-store", "x-content-type-options": "nosniff" },
  });
}

/** The listening endpoint. */
export class OpsServer implements AsyncDisposable {
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  /** Where it listens (the port is the real one when 0 was asked for). */
  readonly addr: Deno.NetAddr;

  private constructor(server: Deno.HttpServer<Deno.NetAddr>) {
    this.#server = server;
    this.addr = server.addr;
  }

  /** Listens on `host:port`; an address in use or not permitted is {@link CannotBootError}. */
  static listen(host: string, port: number, handlers: OpsHandlers): OpsServer {
    const recent = new Map<string, { at: number; answer: Answer }>();
    const handler = (req: Request): Response => {
      if (req.method !== "GET" && req.method !== "HEAD") {
        return new Response("read-only: GET or HEAD\n", { status: 405, headers: { allow: "GET, HEAD" } });
      }
      const path = new URL(req.url).pathname;
      const now = performance.now();
      let a = recent.get(path);
      if (!a || now - a.at > REUSE_MS) {
        try {
          a = { at: now, answer: answer(path, handlers) };
        } catch (err) {
          logger().error("metrics endpoint: {err}", { err: String(err) });
          return new Response("internal error; see the watchdog's log\n", { status: 500 });
        }
        if (REUSED.has(path)) recent.set(path, a);
      }
      return respond(a.answer, req.method === "HEAD");
    };
    try {
      return new OpsServer(Deno.serve({ hostname: host, port, onListen: () => {} }, handler));
    } catch (err) {
      throw new CannotBootError(`cannot serve metrics on ${host}:${port}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  /** Stops listening and ends open connections. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server.shutdown();
  }
}
