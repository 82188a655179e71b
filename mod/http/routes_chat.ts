/**
 * `/v1/channels`: the chat's channels over HTTP, read from the same
 * ChatStore IRC uses, and their live events by Server-Sent Events from the
 * same fan-out (the worker's hub), so an HTTP reader and an IRC user see the
 * same channel, in the same order, with the same ids (`<seq>:<channel>`, as
 * CHATHISTORY's `msgid`).
 *
 * What outsiders see is what IRC shows them: a secret channel (`+s`) does
 * not exist for them (404), a keyed one (`+k`) shows its topic but not its
 * messages (403), as a JOIN without the key would be refused.
 * @module
 */
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { ChatServer } from "../chat/chat_server.ts";
import type { ChannelEvent, ChannelInfo } from "../chat/chat_store.ts";
import type { Watched } from "../chat/chat_hub.ts";
import { byteLength, fold, truncateBytes, validChannel } from "../chat/irc_message.ts";
import { accountOf, type AccountsApi } from "./auth.ts";
import { CHATHISTORY_MAX } from "../chat/numerics.ts";
import { ApiError } from "./problem.ts";
import { type ApiEnv, errorResponses, plain } from "./api_schemas.ts";
import { streamed } from "./http_conn.ts";
import { SseStream } from "./sse.ts";

const Name = z.object({
  name: z.string().min(1).max(60).openapi({
    param: { name: "name", in: "path" },
    description: "the channel, with its # percent-encoded (%23osps) or left out (osps)",
    example: "osps",
  }),
});

/** A channel as listed. */
export const ChannelSummary = z.object({
  name: z.string(),
  topic: z.string(),
  users: z.number().int(),
  modes: z.string().openapi({ description: "flag modes, e.g. nt" }),
}).openapi("ChannelSummary");

/** One channel, with its members. */
export const ChannelDetail = z.object({
  name: z.string(),
  topic: z.object({ text: z.string(), by: z.string(), at: z.string().nullable() }),
  modes: z.string(),
  keyed: z.boolean(),
  limit: z.number().int().nullable(),
  created_at: z.string(),
  members: z.array(z.object({ nick: z.string(), op: z.boolean(), voice: z.boolean() })),
}).openapi("Channel");

/** One channel event (a message, a join, a topic …), as history and event streams show it. */
export const EventSchema = z.object({
  id: z.string().openapi({ description: "<seq>:<folded channel>, the msgid of IRCv3 CHATHISTORY" }),
  seq: z.number().int().openapi({ description: "the channel's event number: 1, 2, 3 …" }),
  channel: z.string(),
  at: z.string().openapi({ description: "ISO 8601 time" }),
  kind: z.enum(["PRIVMSG", "NOTICE", "JOIN", "PART", "KICK", "TOPIC", "MODE"]),
  nick: z.string(),
  source: z.string().openapi({ description: "nick!user@host" }),
  params: z.array(z.string()).openapi({ description: "the IRC parameters after the channel" }),
  text: z.string().openapi({ description: 'the message, topic or reason ("" when none)' }),
  account: z.string().optional().openapi({ description: "the sender's account, when it was logged in" }),
}).openapi("ChannelEvent");

const History = z.object({
  messages: z.array(EventSchema),
}).openapi("History");

const Bound = z.string().regex(/^\d{1,15}(:.*)?$/).optional().openapi({
  description: "a message id (<seq>:<channel>) or seq number: strictly before / after it",
});

const listRoute = createRoute({
  method: "get",
  path: "/",
  summary: "Channels with members (secret ones are not listed), as IRC's LIST shows them",
  responses: {
    200: {
      description: "the channels",
      content: { "application/json": { schema: z.object({ channels: z.array(ChannelSummary) }) } },
    },
    ...errorResponses(503),
  },
});

const channelRoute = createRoute({
  method: "get",
  path: "/{name}",
  summary: "A channel: topic, modes and members",
  request: { params: Name },
  responses: {
    200: { description: "the channel", content: { "application/json": { schema: ChannelDetail } } },
    ...errorResponses(400, 404, 503),
  },
});

const messagesRoute = createRoute({
  method: "get",
  path: "/{name}/messages",
  summary:
    "A channel's stored messages (PRIVMSG, NOTICE), oldest first: the latest, or before/after a message",
  request: {
    params: Name,
    query: z.object({
      before: Bound,
      after: Bound,
      limit: z.coerce.number().int().min(1).max(CHATHISTORY_MAX).optional().openapi({ example: 50 }),
    }),
  },
  responses: {
    200: { description: "the messages", content: { "application/json": { schema: History } } },
    ...errorResponses(400, 403, 404, 503),
  },
});

const eventsRoute = createRoute({
  method: "get",
  path: "/{name}/events",
  summary: "A channel's live events as Server-Sent Events; Last-Event-ID (or ?after=) resumes without a gap",
  description:
    "Each numbered event is `id: <seq>`, `event: <kind in lower case>`, `data: <ChannelEvent JSON>`. " +
    "Members leaving the network and renaming come as `event: quit` / `event: nick` without an id. " +
    "A comment line every 15 s keeps the stream alive.",
  request: {
    params: Name,
    headers: z.object({ "last-event-id": z.string().optional() }),
    query: z.object({ after: Bound }),
  },
  responses: {
    200: { description: "the event stream", content: { "text/event-stream": { schema: z.string() } } },
    ...errorResponses(400, 403, 404, 503),
  },
});

const PostBody = z.object({
  text: z.string().min(1).openapi({ example: "hello from HTTP" }),
  notice: z.boolean().optional().openapi({
    description: "send as a NOTICE (no automatic reply) instead of a PRIVMSG",
  }),
}).strict().openapi("PostMessage");

const postRoute = createRoute({
  method: "post",
  path: "/{name}/messages",
  summary: "Say something in a channel as an account (HTTP Basic or a bearer token from /v1/tokens)",
  description:
    "The message comes from the account's nickname, as from an IRC user: a channel with +n takes " +
    "messages only from its members (join it by IRC, the WebSocket or the web page), +m only from voiced ones.",
  security: [{ basic: [] }, { bearer: [] }],
  request: {
    params: Name,
    body: {
      // An empty body is refused by the handler ("No text to send"); Hono would validate JSON for any type if required.
      required: false,
      content: {
        "text/plain": { schema: z.string().openapi({ example: "hello from HTTP" }) },
        "application/json": { schema: PostBody },
      },
    },
  },
  responses: {
    201: {
      description: "stored and delivered: the event",
      content: { "application/json": { schema: EventSchema } },
    },
    ...errorResponses(400, 401, 403, 404, 413, 415, 429, 503),
  },
});

/** The JSON form of a stored event. */
export function eventJson(ev: ChannelEvent): z.infer<typeof EventSchema> {
  const textAt = ev.kind === "KICK" ? 1 : 0;
  const account = (ev as { account?: string }).account; // stored with the event where the chat has accounts
  return {
    id: `${ev.seq}:${fold(ev.channel)}`,
    seq: ev.seq,
    channel: ev.channel,
    at: new Date(ev.at).toISOString(),
    kind: ev.kind,
    nick: ev.source.split("!")[0]!,
    source: ev.source,
    params: [...ev.params],
    text: ev.kind === "MODE" ? ev.params.join(" ") : ev.params[textAt] ?? "",
    ...(account ? { account } : {}),
  };
}

function seqOf(bound: string | undefined): number | undefined {
  return bound === undefined ? undefined : Number(bound.split(":")[0]);
}

/** The chat routes, mounted at `/v1/channels`. */
export function chatRoutes(
  chat: ChatServer | undefined,
  closing: AbortSignal,
  accounts: () => AccountsApi | undefined,
): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const on = (): ChatServer => {
    if (!chat) throw new ApiError(503, "chat is not enabled on this instance (start it with --irc-port)");
    return chat;
  };
  /** The channel an outsider may see (404 for none, and for a secret one). */
  const visible = async (given: string): Promise<ChannelInfo> => {
    const name = given.startsWith("#") ? given : `#${given}`;
    if (!validChannel(name)) throw new ApiError(400, `bad channel name ${JSON.stringify(name.slice(0, 60))}`);
    const info = await on().store.channel(name);
    if (!info || info.modes.includes("s")) throw new ApiError(404, `no such channel: ${name}`);
    return info;
  };
  const readable = async (given: string): Promise<ChannelInfo> => {
    const info = await visible(given);
    if (info.key) throw new ApiError(403, `${info.name} has a key (+k): only its members read it`);
    return info;
  };

  app.openapi(listRoute, async (c) => {
    const all = await on().store.channels();
    const channels = all
      .filter(({ info, users }) => users > 0 && !info.modes.includes("s"))
      .map(({ info, users }) => ({ name: info.name, topic: info.topic, users, modes: info.modes }));
    return c.json({ channels }, 200);
  });

  app.openapi(channelRoute, async (c) => {
    const info = await visible(c.req.valid("param").name);
    const members = await on().store.members(info.name);
    return c.json({
      name: info.name,
      topic: {
        text: info.topic,
        by: info.topicBy,
        at: info.topicAt ? new Date(info.topicAt).toISOString() : null,
      },
      modes: info.modes,
      keyed: info.key !== "",
      limit: info.limit || null,
      created_at: new Date(info.createdAt).toISOString(),
      members: members.map((m) => ({ nick: m.nick, op: m.op, voice: m.voice })),
    }, 200);
  });

  app.openapi(messagesRoute, async (c) => {
    const info = await readable(c.req.valid("param").name);
    const q = c.req.valid("query");
    const before = seqOf(q.before), after = seqOf(q.after);
    const events = await on().store.history(info.name, {
      before: before === undefined ? undefined : { seq: before },
      after: after === undefined ? undefined : { seq: after },
      limit: q.limit ?? 50,
    });
    return c.json({ messages: events.map(eventJson) }, 200);
  });

  app.openapi(postRoute, async (c) => {
    const account = await accountOf(accounts(), c.req.header("authorization"), c.env.info.peer);
    const json = (c.req.header("content-type") ?? "").startsWith("application/json");
    const body = json
      ? c.req.valid("json" as never) as z.infer<typeof PostBody>
      : { text: await c.req.text(), notice: false };
    if (/[\r\n\0]/.test(body.text)) throw new ApiError(400, "a message is one line: no CR, LF or NUL");
    if (body.text === "") throw new ApiError(400, "No text to send");
    const store = on().store;
    const given = c.req.param("name") ?? ""; // checked by the route's schema already
    const name = given.startsWith("#") ? given : `#${given}`;
    const info = validChannel(name) ? await store.channel(name) : null;
    const member = info
      ? (await store.members(info.name)).find((m) => fold(m.nick) === fold(account))
      : undefined;
    if (!info || (info.modes.includes("s") && !member)) throw new ApiError(404, `no such channel: ${name}`);
    if (info.modes.includes("n") && !member) {
      throw new ApiError(
        403,
        `Cannot send to channel ${info.name} (+n): ${account} is not in it; join it first`,
      );
    }
    if (info.modes.includes("m") && !(member?.op || member?.voice)) {
      throw new ApiError(403, `Cannot send to channel ${info.name} (+m): ${account} has no voice`);
    }
    const user = await store.user(account);
    const source = user
      ? `${user.nick}!${user.user}@${user.host}`
      : `${account}!~${account.slice(0, 10)}@http`;
    const kind = body.notice ? "NOTICE" : "PRIVMSG";
    const prefix = `:${source} ${kind} ${info.name} :`;
    const text = truncateBytes(body.text, 510 - byteLength(prefix));
    const ev = await on().say(info.name, { kind, source, params: [text], account });
    if (!ev) throw new ApiError(404, `no such channel: ${name}`);
    return plain(Response.json(eventJson(ev), {
      status: 201,
      headers: {
        location: `/v1/channels/${encodeURIComponent(info.name)}/messages?after=${ev.seq - 1}&limit=1`,
      },
    }));
  });

  app.openapi(eventsRoute, async (c) => {
    const info = await readable(c.req.valid("param").name);
    const resume = seqOf(c.req.valid("query").after) ??
      seqOf(c.req.header("last-event-id")?.trim() || undefined);
    const stream = new SseStream(closing);
    const events = (w: Watched) => {
      if (w.t === "event") stream.event(w.ev.seq, w.ev.kind.toLowerCase(), eventJson(w.ev));
      else if (w.t === "quit") {
        stream.event(null, "quit", {
          nick: w.source.split("!")[0],
          source: w.source,
          text: w.reason,
          at: iso(w.at),
        });
      } else {stream.event(null, "nick", {
          nick: w.source.split("!")[0],
          source: w.source,
          text: w.nick,
          at: iso(w.at),
        });}
    };
    // Watched first, then the stored backlog read: together they leave no gap (the stream drops repeats).
    stream.onClose = on().watch(info.name, events);
    if (resume !== undefined) {
      const backlog = await on().store.eventsBetween(info.name, resume, Number.MAX_SAFE_INTEGER);
      stream.backlog(
        backlog.map((ev) => ({ seq: ev.seq, name: ev.kind.toLowerCase(), data: eventJson(ev) })),
      );
    } else stream.backlog([]);
    return plain(streamed(
      new Response(stream.readable, {
        headers: {
          "content-type": "text/event-stream; charset=utf-8",
          "cache-control": "no-store",
          "x-accel-buffering": "no",
        },
      }),
    ));
  });
  return app;
}

function iso(at: number): string {
  return new Date(at).toISOString();
}
