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
import type { ServiceCaller } from "./service_call.ts";
import type { Answer, FastPath } from "./http_conn.ts";
import { HTTPException } from "hono/http-exception";

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
  readonly contentType: string;
  readonly accept: string;
  /** POST: the body's bytes (text), or the parsed `arg` (JSON). */
  readonly body?: Uint8Array;
  readonly jsonArg?: string;
  /** GET: the query's `arg`. */
  readonly queryArg?: string;
}

function wantsJson(accept: string, sentJson: boolean): boolean {
  if (sentJson) return true;
  return /application\/json/.test(accept) && !/text\/plain/.test(accept);
}

/** Runs what was asked; throws {@link ApiError} for every refusal. */
async function serve(caller: ServiceCaller, a: Asked): Promise<Answer> {
  let arg: string;
  const ctype = a.contentType.split(";")[0]!.trim().toLowerCase();
  if (a.method === "GET") {
    if (!caller.service(a.type).safe) {
      throw new ApiError(405, `${a.type} changes the worker (or is a session): use POST`, {
        headers: { allow: "POST" },
      });
    }
    arg = a.queryArg ?? "";
  } else if (a.jsonArg !== undefined) arg = a.jsonArg;
  else {
    try {
      arg = strictUtf8.decode(a.body ?? new Uint8Array(0));
    } catch {
      throw new ApiError(400, "body is not valid UTF-8", { code: Status.BAD_REQUEST });
    }
  }
  const r = await caller.call(a.type, arg);
  const headers: Record<string, string> = {
    "x-worker": r.worker,
    "server-timing": `queue;dur=${r.queueMs.toFixed(3)}, run;dur=${r.runMs.toFixed(3)}`,
  };
  if (wantsJson(a.accept, ctype === "application/json")) {
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
    const contentType = c.req.header("content-type") ?? "";
    const json = contentType.split(";")[0]!.trim().toLowerCase() === "application/json";
    return respond(
      await serve(caller, {
        method: "POST",
        type: c.req.valid("param").type,
        contentType,
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
        contentType: "",
        accept: c.req.header("accept") ?? "",
        queryArg: c.req.valid("query").arg,
      }),
    ));
  return app;
}

const PATH = /^\/v1\/requests\/([^/?]*)(?:\?(.*))?$/;

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
    const m = PATH.exec(r.target);
    if (!m) return null;
    return (async () => {
      let type: string;
      try {
        type = decodeURIComponent(m[1]!);
      } catch {
        throw new ApiError(400, "malformed percent-encoding in the path");
      }
      if (!TYPE_NAME.test(type)) { // the schema's own rule; the schema words the refusal
        const param = TypeParam.safeParse({ type });
        if (!param.success) throw invalid(param.error.issues);
      }
      const contentType = r.header("content-type") ?? "";
      const accept = r.header("accept") ?? "";
      if (r.method === "GET") {
        const values = new URLSearchParams(m[2] ?? "").getAll("arg");
        const query = GetQuery.safeParse(
          values.length === 0 ? {} : { arg: values.length === 1 ? values[0] : values },
        );
        if (!query.success) throw invalid(query.error.issues);
        return await serve(caller, { method: "GET", type, contentType, accept, queryArg: query.data.arg });
      }
      const ctype = contentType.split(";")[0]!.trim().toLowerCase();
      if (ctype === "application/json") {
        let parsed: unknown;
        try {
          parsed = JSON.parse(strictUtf8.decode(r.body ?? new Uint8Array(0)));
        } catch {
          throw new ApiError(400, "Malformed JSON in request body");
        }
        const body = ArgBody.safeParse(parsed);
        if (!body.success) throw invalid(body.error.issues);
        return await serve(caller, { method: "POST", type, contentType, accept, jsonArg: body.data.arg });
      }
      // As Hono's validator decides: a type not declared, or a body without a type, is 415.
      if (ctype === "" ? r.body !== undefined && r.body.length > 0 : !TEXT_TYPES.has(ctype)) {
        throw new HTTPException(415, { message: "Unsupported Media Type" });
      }
      return await serve(caller, { method: "POST", type, contentType, accept, body: r.body });
    })();
  };
}
