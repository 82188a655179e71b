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
import { type ApiEnv, errorResponses, plain } from "./api_schemas.ts";
import type { CallResult, ServiceCaller } from "./service_call.ts";

const TypeParam = z.object({
  type: z.string().regex(/^[a-z][a-z0-9_-]{0,15}$/).openapi({
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

const get = createRoute({
  method: "get",
  path: "/{type}",
  summary: "Run a request type that changes nothing (echo, upper, sha256, time, stats, fib, sleep)",
  request: {
    params: TypeParam,
    query: z.object({ arg: z.string().optional().openapi({ example: "hello" }) }),
  },
  responses: { ...answers, ...errorResponses(405) },
});

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function wantsJson(accept: string | undefined, sentJson: boolean): boolean {
  if (sentJson) return true;
  return !!accept && /application\/json/.test(accept) && !/text\/plain/.test(accept);
}

function answer(r: CallResult, type: string, json: boolean): Response {
  const headers = {
    "x-worker": r.worker,
    "server-timing": `queue;dur=${r.queueMs.toFixed(3)}, run;dur=${r.runMs.toFixed(3)}`,
  };
  if (json) {
    return Response.json({ result: r.text, type, worker: r.worker }, { headers });
  }
  return new Response(r.text, { headers: { ...headers, "content-type": "text/plain; charset=utf-8" } });
}

/** The routes, mounted at `/v1/requests`. */
export function requestRoutes(caller: ServiceCaller): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  app.openapi(post, async (c) => {
    const { type } = c.req.valid("param");
    const ctype = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    let arg: string;
    const sentJson = ctype === "application/json";
    if (sentJson) arg = (c.req.valid("json" as never) as z.infer<typeof ArgBody>).arg;
    else if (ctype === "text/plain" || ctype === "" || ctype === "application/x-www-form-urlencoded") {
      try {
        arg = strictUtf8.decode(await c.req.arrayBuffer());
      } catch {
        throw new ApiError(400, "body is not valid UTF-8", { code: Status.BAD_REQUEST });
      }
    } else {
      throw new ApiError(415, `send the argument as text/plain or as JSON {"arg": …}, not ${ctype}`);
    }
    const r = await caller.call(type, arg);
    return plain(answer(r, type, wantsJson(c.req.header("accept"), sentJson)));
  });
  app.openapi(get, async (c) => {
    const { type } = c.req.valid("param");
    const service = caller.service(type);
    if (!service.safe) {
      throw new ApiError(405, `${type} changes the worker (or is a session): use POST`, {
        headers: { allow: "POST" },
      });
    }
    const r = await caller.call(type, c.req.valid("query").arg ?? "");
    return plain(answer(r, type, wantsJson(c.req.header("accept"), false)));
  });
  return app;
}
