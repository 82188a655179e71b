/**
 * `/v1/requests/{type}`: the request types every osps client has, over HTTP.
 * `POST` with the argument as the body (`text/plain`, or `{"arg": …}` as
 * JSON); `GET …?arg=` for the types that change nothing (`Service.safe`).
 * The answer is the result as text (or `{"result": …}` when the request was
 * JSON or asked for it), with `X-Worker` and `Server-Timing` saying where
 * and how long it ran. Refusals are problem+json with the line protocol's
 * texts (see `problem.ts` for the status mapping).
 * @module
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { Status } from "../net/protocol.ts";
import { serviceNames, SERVICES } from "../services/registry.ts";
import { ApiError } from "./problem.ts";
import { type ApiEnv, errorResponses, invalid, plain } from "./api_schemas.ts";
import type { CallResult, ServiceCaller } from "./service_call.ts";
import type { Answer, FastPath } from "./http_conn.ts";
import { HTTPException } from "hono/http-exception";
import { latin1Of } from "./http_head.ts";

/** A request type's name in a path (the line protocol's `type` rule). */
const TYPE_NAME = /^[a-z][a-z0-9_-]{0,15}$/;

const TypeParam = z.object({
  type: z.string().regex(TYPE_NAME).openapi({
    param: { name: "type", in: "path" },
    description: `a request type: ${serviceNames().filter((t) => !SERVICES[t]!.handover).join(", ")}`,
    example: "echo",
  }),
});

/** A JSON request body. */
export const ArgBody = z.object({ arg: z.string().openapi({ example: "hello" }) }).strict().openapi(
  "RequestArg",
);
/** A JSON answer. */
export const ResultBody = z.object({
  result: z.string(),
  type: z.string(),
  worker: z.string(),
}).openapi("RequestResult");

const answers = {
  200: {
    description: "the result (text, or JSON when the request was JSON or asked for it with Accept)",
    headers: z.object({
      "x-worker": z.string().openapi({ description: "the worker that ran it (its slot number)" }),
      "server-timing": z.string().openapi({ description: "queue;dur=MS, run;dur=MS" }),
      "x-request-id": z.string(),
    }),
    content: {
      "text/plain": { schema: z.string() },
      "application/json": { schema: ResultBody },
    },
  },
  ...errorResponses(400, 404, 408, 413, 415, 429, 500, 503, 504),
};

const post = createRoute({
  method: "post",
  path: "/{type}",
  summary: "Run a request type with the body as its argument",
  request: {
    params: TypeParam,
    body: {
      required: false,
      content: {
        "text/plain": { schema: z.string().openapi({ example: "hello" }) },
        "application/json": { schema: ArgBody },
        // curl -d's default type: the body is taken as text, unchanged (not form-decoded).
        "application/x-www-form-urlencoded": { schema: { type: "string" } },
      },
    },
  },
  responses: answers,
});

const GetQuery = z.object({ arg: z.string().optional().openapi({ example: "hello" }) });

const get = createRoute({
  method: "get",
  path: "/{type}",
  summary: "Run a request type that changes nothing (echo, upper, sha256, time, stats, fib, sleep)",
  request: {
    params: TypeParam,
    query: GetQuery,
  },
  responses: { ...answers, ...errorResponses(405) },
});

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** What a request to `/v1/requests/{type}` says, however it was dispatched. */
interface Asked {
  readonly method: "GET" | "POST";
  readonly type: string;
  /** The body is JSON (its media type is `application/json`). */
  readonly sentJson: boolean;
  readonly accept: string;
  /** POST: the body's bytes (text), or the parsed `arg` (JSON). */
  readonly body?: Uint8Array;
  readonly jsonArg?: string;
  /** GET: the query's `arg`. */
  readonly queryArg?: string;
}

function wantsJson(accept: string, sentJson: boolean): boolean {
  if (sentJson) return true;
  return accept.includes("application/json") && !accept.includes("text/plain");
}

/** The media type of a Content-Type value, in lower case, without its parameters. */
function mediaType(contentType: string): string {
  const semi = contentType.indexOf(";");
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/** `bytes` as text, refused (400) unless valid UTF-8; short ASCII without a decoder call. */
function utf8Of(bytes: Uint8Array | undefined): string {
  if (!bytes || bytes.length === 0) return "";
  if (bytes.length <= 256 && bytes.every((c) => c < 0x80)) return latin1Of(bytes, 0, bytes.length);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new ApiError(400, "body is not valid UTF-8", { code: Status.BAD_REQUEST });
  }
}

/** Runs what was asked; throws {@link ApiError} for every refusal. An answer at once when the service gave one. */
function serve(caller: ServiceCaller, a: Asked): Answer | Promise<Answer> {
  let arg: string;
  if (a.method === "GET") {
    if (!caller.service(a.type).safe) {
      throw new ApiError(405, `${a.type} changes the worker (or is a session): use POST`, {
        headers: { allow: "POST" },
      });
    }
    arg = a.queryArg ?? "";
  } else arg = a.jsonArg ?? utf8Of(a.body);
  const r = caller.call(a.type, arg);
  return r instanceof Promise ? r.then((done) => answerOf(a, done)) : answerOf(a, r);
}

/** The answer to what was asked, from its result. */
function answerOf(a: Asked, r: CallResult): Answer {
  const headers: Record<string, string> = {
    "x-worker": r.worker,
    "server-timing": `queue;dur=${r.queueMs.toFixed(3)}, run;dur=${r.runMs.toFixed(3)}`,
  };
  if (wantsJson(a.accept, a.sentJson)) {
    headers["content-type"] = "application/json";
    return { status: 200, headers, body: JSON.stringify({ result: r.text, type: a.type, worker: r.worker }) };
  }
  headers["content-type"] = "text/plain; charset=utf-8";
  return { status: 200, headers, body: r.text };
}

/** Content types a POST body may have. */
const TEXT_TYPES = new Set(["text/plain", "application/x-www-form-urlencoded"]);

/** The routes, mounted at `/v1/requests`. */
export function requestRoutes(caller: ServiceCaller): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const respond = (a: Answer) => plain(new Response(a.body, { status: a.status, headers: a.headers }));
  app.openapi(post, async (c) => {
    const json = mediaType(c.req.header("content-type") ?? "") === "application/json";
    return respond(
      await serve(caller, {
        method: "POST",
        type: c.req.valid("param").type,
        sentJson: json,
        accept: c.req.header("accept") ?? "",
        jsonArg: json ? (c.req.valid("json" as never) as z.infer<typeof ArgBody>).arg : undefined,
        body: json ? undefined : new Uint8Array(await c.req.arrayBuffer()),
      }),
    );
  });
  app.openapi(get, async (c) =>
    respond(
      await serve(caller, {
        method: "GET",
        type: c.req.valid("param").type,
        sentJson: false,
        accept: c.req.header("accept") ?? "",
        queryArg: c.req.valid("query").arg,
      }),
    ));
  return app;
}

const PREFIX = "/v1/requests/";

/**
 * The same two routes without building a `Request` or going through Hono's
 * dispatch: the answer of the request path at its floor (a `Request` object
 * costs about 8 µs and Hono's dispatch about 11, more than the rest of an
 * echo). It checks with the routes' own schemas and answers through the
 * same {@link serve}; it declines (null) whatever is not plainly one of these
 * two routes, which then goes to the Hono application.
 */
export function fastRequests(caller: ServiceCaller): FastPath {
  return (r) => {
    if (r.method !== "POST" && r.method !== "GET") return null;
    if (!r.target.startsWith(PREFIX)) return null;
    const q = r.target.indexOf("?", PREFIX.length);
    const segment = r.target.slice(PREFIX.length, q < 0 ? undefined : q);
    if (segment.includes("/")) return null;
    let type = segment;
    if (segment.includes("%")) {
      try {
        type = decodeURIComponent(segment);
      } catch {
        throw new ApiError(400, "malformed percent-encoding in the path");
      }
    }
    if (!TYPE_NAME.test(type)) { // the schema's own rule; the schema words the refusal
      const param = TypeParam.safeParse({ type });
      if (!param.success) throw invalid(param.error.issues);
    }
    const ctype = mediaType(r.header("content-type") ?? "");
    const accept = r.header("accept") ?? "";
    if (r.method === "GET") {
      const values = new URLSearchParams(q < 0 ? "" : r.target.slice(q + 1)).getAll("arg");
      const query = GetQuery.safeParse(
        values.length === 0 ? {} : { arg: values.length === 1 ? values[0] : values },
      );
      if (!query.success) throw invalid(query.error.issues);
      const sentJson = ctype === "application/json";
      return serve(caller, { method: "GET", type, sentJson, accept, queryArg: query.data.arg });
    }
    if (ctype === "application/json") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(strictUtf8.decode(r.body ?? new Uint8Array(0)));
      } catch {
        throw new ApiError(400, "Malformed JSON in request body");
      }
      const body = ArgBody.safeParse(parsed);
      if (!body.success) throw invalid(body.error.issues);
      return serve(caller, { method: "POST", type, sentJson: true, accept, jsonArg: body.data.arg });
    }
    // As Hono's validator decides: a type not declared, or a body without a type, is 415.
    if (ctype === "" ? r.body !== undefined && r.body.length > 0 : !TEXT_TYPES.has(ctype)) {
      throw new HTTPException(415, { message: "Unsupported Media Type" });
    }
    return serve(caller, { method: "POST", type, sentJson: false, accept, body: r.body });
  };
}
