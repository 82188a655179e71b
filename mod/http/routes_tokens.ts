/**
 * `/v1/tokens`: bearer tokens for the chat accounts. `POST` with HTTP Basic
 * (`account:password`) issues one (shown once; the server keeps only its
 * hash), so that scripts and pages need not keep the password;
 * `DELETE /v1/tokens/current` with the token revokes it.
 * @module
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { type ApiEnv, errorResponses, plain } from "./api_schemas.ts";
import { accountFailure, accountOf, type AccountsApi, credentialsOf } from "./auth.ts";
import { ApiError } from "./problem.ts";

/** The longest a token may live, and the default. */
const MAX_TTL_S = 365 * 24 * 3600;
const DEFAULT_TTL_S = 30 * 24 * 3600;

const TokenRequest = z.object({
  label: z.string().max(100).optional().openapi({
    description: "what the token is for (shown nowhere else)",
  }),
  ttl_seconds: z.number().int().min(60).max(MAX_TTL_S).optional().openapi({ example: 86_400 }),
}).strict().openapi("TokenRequest");

const Token = z.object({
  token: z.string().openapi({ description: "send it as Authorization: Bearer <token>" }),
  account: z.string(),
  expires_at: z.string(),
}).openapi("Token");

const issue = createRoute({
  method: "post",
  path: "/",
  summary: "Issue a bearer token for an account (HTTP Basic account:password)",
  security: [{ basic: [] }],
  request: {
    body: { required: false, content: { "application/json": { schema: TokenRequest } } },
  },
  responses: {
    201: { description: "the token, shown this once", content: { "application/json": { schema: Token } } },
    ...errorResponses(400, 401, 415, 429, 503),
  },
});

const revoke = createRoute({
  method: "delete",
  path: "/current",
  summary: "Revoke the bearer token this request presents",
  security: [{ bearer: [] }],
  responses: { 204: { description: "revoked" }, ...errorResponses(401, 503) },
});

/** The routes, mounted at `/v1/tokens`. */
export function tokenRoutes(accounts: () => AccountsApi | undefined): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  app.openAPIRegistry.registerComponent("securitySchemes", "basic", { type: "http", scheme: "basic" });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer" });
  app.openapi(issue, async (c) => {
    const header = c.req.header("authorization");
    if (credentialsOf(header).kind !== "basic") {
      throw new ApiError(400, "a token is issued for a password (HTTP Basic), not for another token");
    }
    const account = await accountOf(accounts(), header, c.env.info.peer);
    const body = c.req.header("content-type")?.startsWith("application/json")
      ? c.req.valid("json") as z.infer<typeof TokenRequest>
      : {};
    const ttl = (body.ttl_seconds ?? DEFAULT_TTL_S) * 1000;
    let token: string;
    try {
      token = await accounts()!.issueToken(account, { ttlMs: ttl, label: body.label });
    } catch (err) {
      throw accountFailure(err);
    }
    return plain(Response.json(
      { token, account, expires_at: new Date(Date.now() + ttl).toISOString() },
      { status: 201, headers: { "cache-control": "no-store" } },
    ));
  });
  app.openapi(revoke, async (c) => {
    const a = accounts();
    if (!a) throw new ApiError(503, "accounts are not available on this instance (chat is off)");
    const cred = credentialsOf(c.req.header("authorization"));
    if (cred.kind !== "bearer" || !(await a.revokeToken(cred.token))) {
      throw new ApiError(401, "unknown or expired token", {
        headers: { "www-authenticate": 'Bearer realm="osps"' },
      });
    }
    return plain(new Response(null, { status: 204 }));
  });
  return app;
}
