/**
 * `/v1/irc`: IRC over WebSocket (the IRCv3 WebSocket transport), the way
 * ergo serves web clients: after the upgrade the connection is an IRC
 * session of this worker's chat, served by the same session code as a TCP
 * client, one IRC line per WebSocket message. A page of another origin may
 * open it only when `--http-cors-origin` allows that origin (browsers do not
 * apply CORS to WebSockets, so the server checks `Origin` itself).
 * @module
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { ChatServer } from "../chat/chat_server.ts";
import { type ApiEnv, errorResponses, plain } from "./api_schemas.ts";
import { withTakeover } from "./http_conn.ts";
import { ApiError } from "./problem.ts";
import { acceptKey, chooseSubprotocol, validKey, WsLines } from "./websocket.ts";

const route = createRoute({
  method: "get",
  path: "/",
  summary: "IRC over WebSocket (subprotocols text.ircv3.net, binary.ircv3.net): one IRC line per message",
  request: {
    headers: z.object({
      upgrade: z.string().openapi({ example: "websocket" }),
      "sec-websocket-key": z.string(),
      "sec-websocket-version": z.string().openapi({ example: "13" }),
      "sec-websocket-protocol": z.string().optional().openapi({ example: "text.ircv3.net" }),
    }),
  },
  responses: {
    101: { description: "switching to the WebSocket protocol; the connection is an IRC session from now on" },
    ...errorResponses(400, 403, 426, 503),
  },
});

/** Whether a page of `origin` may open the socket: its own server, or an origin `--http-cors-origin` allows. */
function originAllowed(origin: string | undefined, host: string | undefined, cors: string): boolean {
  if (!origin) return true; // not a browser: nothing ambient to abuse
  const allowed = cors.split(",").map((o) => o.trim()).filter((o) => o !== "");
  if (allowed.includes("*") || allowed.includes(origin)) return true;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** The route, mounted at `/v1/irc`. */
export function ircRoutes(chat: ChatServer | undefined, corsOrigin: string): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        throw new ApiError(
          426,
          "this is the IRC WebSocket: connect with a WebSocket client (Upgrade: websocket)",
          {
            headers: { upgrade: "websocket" },
          },
        );
      }
    },
  });
  app.openapi(route, async (c) => {
    if (!chat) throw new ApiError(503, "chat is not enabled on this instance (start it with --irc-port)");
    const h = c.req.valid("header");
    if (h.upgrade.toLowerCase() !== "websocket" || !/\bupgrade\b/i.test(c.req.header("connection") ?? "")) {
      throw new ApiError(
        426,
        "this is the IRC WebSocket: connect with a WebSocket client (Upgrade: websocket)",
        {
          headers: { upgrade: "websocket" },
        },
      );
    }
    if (h["sec-websocket-version"] !== "13") {
      throw new ApiError(426, "WebSocket version 13 only", { headers: { "sec-websocket-version": "13" } });
    }
    if (!validKey(h["sec-websocket-key"])) throw new ApiError(400, "bad Sec-WebSocket-Key");
    if (!originAllowed(c.req.header("origin"), c.req.header("host"), corsOrigin)) {
      throw new ApiError(
        403,
        `pages of ${c.req.header("origin")} may not open this socket (see --http-cors-origin)`,
      );
    }
    const protocol = chooseSubprotocol(h["sec-websocket-protocol"]);
    const headers: Record<string, string> = {
      upgrade: "websocket",
      connection: "Upgrade",
      "sec-websocket-accept": await acceptKey(h["sec-websocket-key"]),
    };
    if (protocol) headers["sec-websocket-protocol"] = protocol;
    return plain(withTakeover(
      new Response(null, { headers }), // written as 101 (a Response cannot hold a 1xx status)
      (tcp, buffered) => chat.serve(new WsLines(tcp, buffered, protocol)),
    ));
  });
  return app;
}
