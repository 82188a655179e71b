/**
 * Messages: PRIVMSG and NOTICE to channels (stored and numbered in groups,
 * `group_commit.ts`, then fanned out) and to users (wherever they are connected), IRCv3
 * TAGMSG (client-only tags, not stored), messages to the services (`services.ts`), and IRCv3
 * `draft/chathistory` (CHATHISTORY LATEST/BEFORE/AFTER) over the stored ones.
 * @module
 */
import type { ChannelEvent, HistoryQuery } from "./chat_store.ts";
import { byteLength, fold, formatMessage, type IrcMessage, isChannel, truncateBytes } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { CHATHISTORY_MAX, MAX_TARGETS, N } from "./numerics.ts";
import { clientTags, eventOutgoing, Outgoing, TagMask, type TagMeta, withTag } from "./tags.ts";
import { memberMayNotSpeak, speakRefusal } from "./moderation.ts";
import { notifyCompanions } from "./notify.ts";
import { isServiceName } from "./presence.ts";
import { serviceCommand } from "./services.ts";

/** The text cut so that the line relayed to others fits in 512 bytes. */
function fitText(s: IrcSession, cmd: string, target: string, text: string): string {
  return truncateBytes(text, 510 - byteLength(`:${s.source} ${cmd} ${target} :`));
}

/** Kinds of messages: the two that carry text, and IRCv3's TAGMSG (tags only, never stored). */
type MessageKind = "PRIVMSG" | "NOTICE" | "TAGMSG";

let privateIds = 0;

/** A private message as delivered (and echoed): its line and tags. */
export function privateOutgoing(
  source: string,
  cmd: MessageKind,
  to: string,
  text: string,
  meta: TagMeta,
): Outgoing {
  const params = cmd === "TAGMSG" ? [to] : [to, text];
  return new Outgoing(formatMessage(source, cmd, params, { trailing: cmd !== "TAGMSG" }), meta);
}

/**
 * Queues a message to a channel for group commit; the session reads on
 * while it is stored (it is delivered and published once committed). A
 * labeled one waits for its commit, so that its echo is part of its answer.
 */
async function channelMessage(s: IrcSession, cmd: MessageKind, target: string, body: string, tags: string) {
  const quiet = cmd !== "PRIVMSG"; // no error replies to a NOTICE or a TAGMSG
  if (!s.joined.has(fold(target))) {
    const info = await s.ctx.store.channel(target);
    if (!info) return quiet ? undefined : s.replyText(N.ERR_NOSUCHCHANNEL, target, "No such channel");
    const why = await speakRefusal(s, info, null);
    if (why) return quiet ? undefined : s.replyText(N.ERR_CANNOTSENDTOCHAN, info.name, why);
    if (cmd === "TAGMSG") return; // tags only reach members' companions
  } else if (await memberMayNotSpeak(s, target)) {
    return; // refused (+m, a ban): replied 404
  }
  if (cmd === "TAGMSG") {
    const line = formatMessage(s.source, "TAGMSG", [target]);
    const meta = { msgid: `${s.ctx.owner}.t${(++privateIds).toString(36)}`, tags };
    return notifyCompanions(s, line, { cap: "message-tags", self: s.echo, meta, channels: [fold(target)] });
  }
  const event = {
    kind: cmd,
    source: s.source,
    params: [body],
    ...(s.account ? { account: s.account } : {}),
    ...(tags ? { tags } : {}),
  };
  const committed = s.ctx.commits.append({ channel: target, event }, s);
  await s.pipeline(committed);
  if (s.labeling) await committed;
}

async function message(s: IrcSession, m: IrcMessage): Promise<void> {
  const cmd = m.command as MessageKind;
  const quiet = cmd !== "PRIVMSG"; // RFC 2812 §3.3.2: never an automatic reply to a NOTICE
  const [targets, text = ""] = m.params;
  if (!targets) return quiet ? undefined : s.replyText(N.ERR_NORECIPIENT, `No recipient given (${cmd})`);
  if (!text && cmd !== "TAGMSG") {
    return quiet ? undefined : s.replyText(N.ERR_NOTEXTTOSEND, "No text to send");
  }
  const { store, hub } = s.ctx;
  const bot = s.modes.includes("B");
  const client = clientTags(m.tags);
  const tags = bot ? (client ? `bot;${client}` : "bot") : client;
  for (const target of targets.split(",").filter((t) => t !== "").slice(0, MAX_TARGETS)) {
    const body = cmd === "TAGMSG" ? "" : fitText(s, cmd, target, text);
    if (isChannel(target)) {
      await channelMessage(s, cmd, target, body, tags);
      continue;
    }
    await s.settled(); // delivered at once: it must not overtake this session's channel messages
    if (isServiceName(target)) {
      if (cmd === "PRIVMSG") await serviceCommand(s, target, body);
      continue;
    }
    const to = await store.user(target);
    if (!to) {
      if (!quiet) s.replyText(N.ERR_NOSUCHNICK, target, "No such nick/channel");
      continue;
    }
    const meta: TagMeta = {
      at: Date.now(),
      msgid: `${s.ctx.owner}.${(++privateIds).toString(36)}`,
      ...(s.account ? { account: s.account } : {}),
      ...(tags ? { tags } : {}),
    };
    const out = privateOutgoing(s.source, cmd, to.nick, body, meta);
    if (!hub.privateMessage(to.nick, out)) {
      s.ctx.publish({ t: "priv", to: fold(to.nick), source: s.source, cmd, text: body, origin: s.id, meta });
    }
    if (s.echo) s.deliver(out, true);
    if (!quiet && to.away) s.replyText(N.RPL_AWAY, to.nick, to.away);
  }
}

/** A CHATHISTORY selector: `*`, `timestamp=ISO`, or `msgid=SEQ:channel`. */
function selector(text: string): { seq?: number; at?: number } | "*" | null {
  if (text === "*") return "*";
  const [kind, value = ""] = text.split(/=(.*)/s, 2);
  if (kind === "timestamp") {
    const at = Date.parse(value);
    return Number.isFinite(at) ? { at } : null;
  }
  if (kind === "msgid") {
    const seq = Number(value.split(":")[0]);
    return Number.isInteger(seq) && seq > 0 ? { seq } : null;
  }
  return null;
}

function fail(s: IrcSession, code: string, ...rest: string[]): void {
  s.conn.send(
    formatMessage(s.ctx.cfg.serverName, "FAIL", ["CHATHISTORY", code, ...rest], { trailing: true }),
  );
}

let batchCounter = 0;

/** Sends stored messages, in a `chathistory` batch when the client enabled batches. */
export function sendHistory(s: IrcSession, target: string, events: readonly ChannelEvent[]): void {
  const batch = s.caps.has("batch") ? `h${(++batchCounter).toString(36)}` : "";
  if (batch) s.conn.send(formatMessage(s.ctx.cfg.serverName, "BATCH", [`+${batch}`, "chathistory", target]));
  // Replayed messages carry their time even without server-time: without it a client would show them as new.
  const mask = s.tagMask | (batch ? TagMask.time : 0);
  for (const ev of events) {
    const line = eventOutgoing(ev).line(mask);
    s.conn.send(batch ? withTag(line, `batch=${batch}`) : line);
  }
  if (batch) s.conn.send(formatMessage(s.ctx.cfg.serverName, "BATCH", [`-${batch}`]));
}

async function chathistory(s: IrcSession, m: IrcMessage): Promise<void> {
  const [sub = "", target = "", point = "", count = ""] = m.params;
  const limit = Math.min(Number(count), CHATHISTORY_MAX);
  const at = selector(point);
  if (!["LATEST", "BEFORE", "AFTER"].includes(sub.toUpperCase())) {
    return fail(s, "INVALID_PARAMS", sub, "Unknown CHATHISTORY subcommand");
  }
  if (
    at === null || !Number.isInteger(limit) || limit < 1 || (at === "*" && sub.toUpperCase() !== "LATEST")
  ) {
    return fail(s, "INVALID_PARAMS", sub, "Invalid parameters");
  }
  if (!isChannel(target)) return sendHistory(s, target, []); // private messages are not stored
  if (!s.joined.has(fold(target))) {
    return fail(s, "INVALID_TARGET", sub, target, "Messages could not be retrieved");
  }
  const q: HistoryQuery = sub.toUpperCase() === "AFTER"
    ? { after: at as { seq?: number; at?: number }, limit }
    : { before: at === "*" ? undefined : at, limit };
  sendHistory(s, target, await s.ctx.store.history(target, q));
}

/** Message commands, by name. */
export const MESSAGE_COMMANDS: Record<string, Command> = {
  PRIVMSG: { min: 0, run: message, pipelined: true },
  NOTICE: { min: 0, run: message, pipelined: true },
  TAGMSG: { min: 0, run: message, pipelined: true },
  CHATHISTORY: { min: 4, run: chathistory },
};
