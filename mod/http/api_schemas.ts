/**
 * What every route of the HTTP API shares: its Hono environment, the
 * problem+json schema, and the error responses routes declare (so the
 * OpenAPI document lists each status a route can answer).
 * @module
 */
import { z } from "@hono/zod-openapi";
import { ApiError } from "./problem.ts";
import type { RequestInfo } from "./http_conn.ts";

/** Hono's environment of the API: the connection's facts travel as bindings. */
export interface ApiEnv {
  Bindings: { info: RequestInfo };
  Variables: { requestId: string };
}

/** RFC 9457 problem details, as the API sends them. */
export const ProblemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  detail: z.string(),
  osps_code: z.number().int().optional().openapi({ description: "the line protocol's status code" }),
}).openapi("Problem");

const WHY: Record<number, string> = {
  400: "bad argument or malformed request (the line protocol's 400 text)",
  401: "credentials missing or wrong",
  403: "not allowed for this account",
  404: "no such request type, channel or route",
  405: "method not allowed for this resource",
  408: "the request did not arrive in time",
  409: "conflict",
  413: "body too long",
  415: "unsupported body type",
  429: "too many connections or requests from your address (Retry-After)",
  500: "the worker died under the request, or the server failed",
  503: "every worker busy and the queue full, the type quarantined, or chat off (Retry-After)",
  504: "the request ran past its deadline and its worker was killed",
};

/** Declared error responses for `codes`, all problem+json. */
export function errorResponses(...codes: number[]) {
  return Object.fromEntries(codes.map((c) => [c, {
    description: WHY[c] ?? "error",
    content: { "application/problem+json": { schema: ProblemSchema } },
  }])) as Record<
    number,
    { description: string; content: { "application/problem+json": { schema: typeof ProblemSchema } } }
  >;
}

/**
 * A handler's plain `Response`, typed to satisfy any declared route: the
 * routes declare their statuses and bodies for the document, while
 * handlers build answers with headers, text and streams Hono's typed
 * responses cannot express.
 */
export function plain(res: Response): never {
  return res as never;
}

/** The 400 for a request that failed its route's schema (the same text whichever dispatcher checked it). */
export function invalid(issues: readonly z.core.$ZodIssue[]): ApiError {
  const issue = issues[0];
  const where = issue?.path.length ? ` (${issue.path.join(".")})` : "";
  return new ApiError(400, `${issue?.message ?? "invalid request"}${where}`);
}

const REQUEST_ID = /^[A-Za-z0-9._:@+=/-]{1,128}$/;

/** The request's id: the client's `X-Request-Id` when it is a sane one, else a new UUID. */
export function requestIdOf(given: string | null | undefined): string {
  return given && REQUEST_ID.test(given) ? given : crypto.randomUUID();
}
