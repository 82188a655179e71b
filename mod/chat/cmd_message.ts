/**
 * Messages: PRIVMSG and NOTICE to channels (stored and numbered in groups,
 * `group_commit.ts`, then fanned out) and to users (wherever they are connected), IRCv3
 * TAGMSG (client-only tags, not stored), and messages to the services (`services.ts`).
 * Their history: `cmd_history.ts`.
 * @module
 */
import { byteLength, fold, formatMessage, type IrcMessage, isChannel, truncateBytes } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { MAX_TARGETS, N } from "./numerics.ts";
import { clientTags, Outgoing, type TagMeta } from "./tags.ts";
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
  origin = "",
): Outgoing {
  const params = cmd === "TAGMSG" ? [to] : [to, text];
  return new Outgoing(formatMessage(source, cmd, params, { trailing: cmd !== "TAGMSG" }), meta, { origin });
}

/**
 * Queues a message to a channel for group commit; the session reads on
 * while it is stored (it is delivered and published once committed), and its
 * next other command waits until this worker handed it on. A labeled one
 * waits for that itself, so that its echo is part of its answer.
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
    return notifyCompanions(s, line, { cap: "message-tags", self: s.echoes, meta, channels: [fold(target)] });
  }
  const event = {
    kind: cmd,
    source: s.source,
    params: [body],
    ...(s.account ? { account: s.account } : {}),
    ...(tags ? { tags } : {}),
  };
  const committed = s.ctx.commits.append({ channel: target, event }, s);
  // Settled once this worker handed it on, not once committed: the echo and what members here get must come
  // before the answer to the sender's next command and before a private message it sends next.
  const handedOn = committed.then((ev) => ev ? s.ctx.hub.whenApplied(ev.channel, ev.seq) : undefined);
  await s.pipeline(handedOn);
  if (s.labeling) await handedOn; // its echo is part of its answer
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
    if (s.echoes) s.deliver(out, true);
    if (!quiet && to.away) s.replyText(N.RPL_AWAY, to.nick, to.away);
  }
}

/** Message commands, by name. */
export const MESSAGE_COMMANDS: Record<string, Command> = {
  PRIVMSG: { min: 0, run: message, pipelined: true },
  NOTICE: { min: 0, run: message, pipelined: true },
  TAGMSG: { min: 0, run: message, pipelined: true },
};
