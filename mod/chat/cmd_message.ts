/**
 * Messages: PRIVMSG and NOTICE to channels (stored and numbered in groups,
 * `group_commit.ts`, then fanned out) and to users (wherever they are
 * connected: delivered at once here, or over the bus, not stored).
 * @module
 */
import { byteLength, fold, formatMessage, type IrcMessage, isChannel, truncateBytes } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { MAX_TARGETS, N } from "./numerics.ts";
import { Outgoing } from "./outgoing.ts";

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
  // A member's channel exists (it has a member) and takes its messages: nothing to look up.
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
    const out = new Outgoing(
      formatMessage(s.source, cmd, [to.nick, body], { trailing: true }),
      Date.now(),
      s.id,
    );
    if (!hub.privateMessage(to.nick, out)) {
      s.ctx.publish({
        t: "priv",
        to: fold(to.nick),
        source: s.source,
        cmd,
        text: body,
        at: out.at,
        origin: s.id,
      });
    }
    if (!notice && to.away) s.replyText(N.RPL_AWAY, to.nick, to.away);
  }
}

/** Message commands, by name. */
export const MESSAGE_COMMANDS: Record<string, Command> = {
  PRIVMSG: { min: 0, run: message, pipelined: true },
  NOTICE: { min: 0, run: message, pipelined: true },
};
