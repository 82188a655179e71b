/**
 * Messages: PRIVMSG and NOTICE to channels (stored and numbered in groups,
 * `group_commit.ts`, then fanned out) and to users (wherever they are connected), and IRCv3
 * `draft/chathistory` (CHATHISTORY LATEST/BEFORE/AFTER) over the stored ones.
 * @module
 */
import type { ChannelEvent, HistoryQuery } from "./chat_store.ts";
import { byteLength, fold, formatMessage, type IrcMessage, isChannel, truncateBytes } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { CHATHISTORY_MAX, MAX_TARGETS, N } from "./numerics.ts";

/** The text cut so that the line relayed to others fits in 512 bytes. */
function fitText(s: IrcSession, cmd: string, target: string, text: string): string {
  return truncateBytes(text, 510 - byteLength(`:${s.source} ${cmd} ${target} :`));
}

/**
 * Queues a message to a channel for group commit; the session reads on
 * while it is stored (it is delivered and published once committed).
 */
async function channelMessage(s: IrcSession, cmd: "PRIVMSG" | "NOTICE", target: string, body: string) {
  const notice = cmd === "NOTICE";
  // A member's channel exists (channels are never removed) and takes its messages: nothing to look up.
  if (!s.joined.has(fold(target))) {
    const info = await s.ctx.store.channel(target);
    if (!info) return notice ? undefined : s.replyText(N.ERR_NOSUCHCHANNEL, target, "No such channel");
    if (info.modes.includes("n")) {
      return notice ? undefined : s.replyText(N.ERR_CANNOTSENDTOCHAN, info.name, "Cannot send to channel");
    }
  }
  const event = { kind: cmd, source: s.source, params: [body] };
  await s.pipeline(s.ctx.commits.append({ channel: target, event }, s));
}

async function message(s: IrcSession, m: IrcMessage): Promise<void> {
  const cmd = m.command as "PRIVMSG" | "NOTICE";
  const notice = cmd === "NOTICE"; // RFC 2812 §3.3.2: never an automatic reply to a NOTICE
  const [targets, text] = m.params;
  if (!targets) return notice ? undefined : s.replyText(N.ERR_NORECIPIENT, `No recipient given (${cmd})`);
  if (!text) return notice ? undefined : s.replyText(N.ERR_NOTEXTTOSEND, "No text to send");
  const { store, hub } = s.ctx;
  for (const target of targets.split(",").filter((t) => t !== "").slice(0, MAX_TARGETS)) {
    const body = fitText(s, cmd, target, text);
    if (isChannel(target)) {
      await channelMessage(s, cmd, target, body);
      continue;
    }
    await s.settled(); // delivered at once: it must not overtake this session's channel messages
    const to = await store.user(target);
    if (!to) {
      if (!notice) s.replyText(N.ERR_NOSUCHNICK, target, "No such nick/channel");
      continue;
    }
    const line = formatMessage(s.source, cmd, [to.nick, body], { trailing: true });
    if (!hub.privateMessage(to.nick, line, Date.now())) {
      s.ctx.publish({ t: "priv", to: fold(to.nick), source: s.source, cmd, text: body, origin: s.id });
    }
    if (!notice && to.away) s.replyText(N.RPL_AWAY, to.nick, to.away);
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
  for (const ev of events) {
    const tags: Record<string, string> = {};
    if (batch) tags["batch"] = batch;
    if (s.caps.has("server-time") || batch) tags["time"] = new Date(ev.at).toISOString();
    if (s.caps.has("draft/chathistory")) tags["msgid"] = `${ev.seq}:${fold(ev.channel)}`;
    s.conn.send(formatMessage(ev.source, ev.kind, [ev.channel, ...ev.params], { trailing: true, tags }));
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
  CHATHISTORY: { min: 4, run: chathistory },
};
