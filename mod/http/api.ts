/**
 * The HTTP API of a worker, as one Hono application: every route under
 * `/v1`, declared once with `@hono/zod-openapi` so that the schemas that
 * validate requests are the ones `/v1/openapi.json` publishes; one `onError`
 * that turns every typed error into problem+json; `X-Request-Id` on every
 * answer (the client's, when it sent a sane one); CORS only when
 * `--http-cors-origin` allows an origin.
 * @module
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { logger } from "../log.ts";
import { ApiError, problemResponse } from "./problem.ts";
import { type ApiEnv, invalid, requestIdOf } from "./api_schemas.ts";
import type { HttpHandler } from "./http_conn.ts";

/** The version of the API (the `/v1` prefix). */
export const API_VERSION = "v1";

/** What the API is built from. */
export interface ApiParts {
  /** Sub-applications by mount point under `/v1` (`/requests`, `/channels` …). */
  readonly mounts: ReadonlyArray<readonly [string, OpenAPIHono<ApiEnv>]>;
  /** Routes outside `/v1` (the web chat page at `/`). */
  readonly root?: OpenAPIHono<ApiEnv>;
  /** Origins allowed to call the API from a browser (CORS); empty: none. */
  readonly corsOrigin: string;
  /** The server's version, for the document. */
  readonly version: string;
}

/** Builds the application. */
export function buildApi(parts: ApiParts): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({
    defaultHook: (result) => {
      if (!result.success) throw invalid(result.error.issues);
    },
  });
  app.use("*", async (c, next) => {
    const id = requestIdOf(c.req.header("x-request-id"));
    c.set("requestId", id);
    await next();
    c.res.headers.set("x-request-id", id);
  });
  if (parts.corsOrigin) {
    const allowed = parts.corsOrigin.split(",").map((o) => o.trim()).filter((o) => o !== "");
    app.use(
      "/v1/*",
      cors({
        origin: allowed.includes("*") ? "*" : allowed,
        allowHeaders: ["content-type", "authorization", "x-request-id", "last-event-id"],
        exposeHeaders: ["x-request-id", "x-worker", "server-timing", "retry-after"],
        maxAge: 600,
      }),
    );
  }
  for (const [path, sub] of parts.mounts) app.route(`/${API_VERSION}${path}`, sub);
  if (parts.root) app.route("/", parts.root);
  app.doc31(`/${API_VERSION}/openapi.json`, {
    openapi: "3.1.0",
    info: {
      title: "osps HTTP API",
      version: parts.version,
      description:
        "Request types and chat of an osps instance: docs/HTTP.md. Errors are RFC 9457 problem+json.",
    },
  });
  app.notFound((c) =>
    problemResponse(
      404,
      `no such resource: ${c.req.path}; the API is described at /${API_VERSION}/openapi.json`,
    )
  );
  app.onError(errorResponse);
  return app;
}

/** The one mapping of every error a route throws to its problem+json answer. */
export function errorResponse(err: unknown): Response {
  if (err instanceof ApiError) {
    return problemResponse(err.status, err.message, { headers: err.headers, code: err.code });
  }
  if (err instanceof HTTPException) {
    return problemResponse(
      err.status,
      err.status === 415 ? "unsupported Content-Type: send text/plain or application/json" : err.message,
    );
  }
  logger().error("http: request failed: {err}", { err: String(err) });
  return problemResponse(500, "the server failed; see the worker's log");
}

/** The application as the connection layer calls it. */
export function apiHandler(app: OpenAPIHono<ApiEnv>): HttpHandler {
  return (req, info) => app.fetch(req, { info });
}
