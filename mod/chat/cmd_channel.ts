/**
 * Channel commands: JOIN (with keys; `+i` and bans are checked by
 * `moderation.ts`), PART, TOPIC, KICK and MODE (ban lists: `ban_list.ts`). Each
 * change is one store transaction that checks who may make it, applies it
 * to the channel as it is then, and numbers its event; the event is
 * delivered here and published to the other workers, and the command
 * returns once this worker's replica applied it (so the session's next
 * command sees its effect). Queries of members are answered from the
 * replica; of others, from the store.
 * @module
 */
import type { ChangeRefusal, ChannelInfo } from "./chat_store.ts";
import { modeState } from "./chat_store.ts";
import { committed, hidden, seeChannel } from "./channel_access.ts";
import { describeModes, MODE_KINDS, type ModeOp, parseModes } from "./channel_modes.ts";
import { fold, TOPICLEN, truncateBytes, validChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { MAX_CHANNELS_PER_CLIENT, N, NEW_CHANNEL_MODES } from "./numerics.ts";
import { userModeCommand } from "./cmd_connection.ts";
import { sendNames } from "./cmd_list.ts";
import { mayJoin } from "./moderation.ts";
import { banListChange, sendBanList } from "./ban_list.ts";
import { afterJoin } from "./presence.ts";

function refused(s: IrcSession, name: string, why: ChangeRefusal, victim = ""): void {
  switch (why) {
    case "no-channel":
      return s.replyText(N.ERR_NOSUCHCHANNEL, name, "No such channel");
    case "not-member":
      return s.replyText(N.ERR_NOTONCHANNEL, name, "You're not on that channel");
    case "not-op":
      return s.replyText(N.ERR_CHANOPRIVSNEEDED, name, "You're not channel operator");
    case "no-victim":
      return s.replyText(N.ERR_USERNOTINCHANNEL, victim, name, "They aren't on that channel");
  }
}

function sendTopic(s: IrcSession, info: ChannelInfo, always: boolean): void {
  if (info.topic === "") {
    if (always) s.replyText(N.RPL_NOTOPIC, info.name, "No topic is set");
    return;
  }
  s.replyText(N.RPL_TOPIC, info.name, info.topic);
  s.reply(N.RPL_TOPICWHOTIME, info.name, info.topicBy, String(Math.floor(info.topicAt / 1000)));
}

async function join(s: IrcSession, name: string, key: string): Promise<void> {
  if (!validChannel(name)) return s.replyText(N.ERR_NOSUCHCHANNEL, name, "No such channel");
  if (s.joined.has(fold(name))) return;
  if (s.joined.size >= MAX_CHANNELS_PER_CLIENT) {
    return s.replyText(N.ERR_TOOMANYCHANNELS, name, "You have joined too many channels");
  }
  const { store, hub } = s.ctx;
  const before = hub.replica(name)?.info() ?? await store.channel(name);
  if (before && !(await mayJoin(s, before))) return; // +i, bans: replied
  // IRCv3 extended-join: the account and the real name go into the event.
  const fields = { params: [s.account || "*", s.realname], ...(s.account ? { account: s.account } : {}) };
  const snapshot = hub.pin(name); // the first local member brings the channel's replica
  let joined: string | undefined;
  try {
    const r = await store.join(name, s.actor, key, { createModes: NEW_CHANNEL_MODES, snapshot, fields });
    if (r.snapshot) hub.load(name, r.snapshot);
    if (r.refused === "bad-key") return s.replyText(N.ERR_BADCHANNELKEY, name, "Cannot join channel (+k)");
    if (r.refused === "full") return s.replyText(N.ERR_CHANNELISFULL, name, "Cannot join channel (+l)");
    if (r.refused === "gone") return s.drop("Connection lost (nickname no longer held)");
    if (!r.ev) return;
    hub.joined(s, r.ev);
    await committed(s, r.ev);
    const replica = hub.replica(name);
    if (!replica) return; // left again meanwhile (kicked at once)
    sendTopic(s, replica.info(), false);
    sendNames(s, replica.info(), replica);
    joined = replica.name;
  } finally {
    hub.unpin(name);
  }
  if (joined !== undefined) await afterJoin(s, joined);
}

async function part(s: IrcSession, name: string, reason: string | undefined): Promise<void> {
  if (!validChannel(name)) return s.replyText(N.ERR_NOSUCHCHANNEL, name, "No such channel");
  const r = await s.ctx.store.part(name, s.actor, reason ? truncateBytes(reason, 300) : undefined);
  if ("refused" in r) return refused(s, name, r.refused);
  await committed(s, r.ev);
}

async function topic(s: IrcSession, name: string, text: string | undefined): Promise<void> {
  const seen = await seeChannel(s, name);
  if (!seen) return s.replyText(N.ERR_NOSUCHCHANNEL, name, "No such channel");
  if (text === undefined) {
    if (hidden(seen)) return s.replyText(N.ERR_NOTONCHANNEL, name, "You're not on that channel");
    return sendTopic(s, seen.info, true);
  }
  const r = await s.ctx.store.setTopic(name, s.actor, truncateBytes(text, TOPICLEN));
  if ("refused" in r) return refused(s, name, r.refused);
  await committed(s, r.ev);
}

async function kick(s: IrcSession, name: string, targets: string, reason: string | undefined): Promise<void> {
  if (!validChannel(name)) return s.replyText(N.ERR_NOSUCHCHANNEL, name, "No such channel");
  for (const target of targets.split(",").filter((t) => t !== "")) {
    const r = await s.ctx.store.kick(name, s.actor, target, truncateBytes(reason ?? s.nick, 390));
    if ("refused" in r) {
      refused(s, name, r.refused, target);
      if (r.refused !== "no-victim") return;
      continue;
    }
    await committed(s, r.ev);
  }
}

/** MODE on a channel: a query (324, 329), or changes applied as a delta by the store. */
async function channelMode(s: IrcSession, name: string, args: readonly string[]): Promise<void> {
  const seen = await seeChannel(s, name);
  if (!seen || hidden(seen)) return s.replyText(N.ERR_NOSUCHCHANNEL, name, "No such channel");
  const [change, ...rest] = args;
  if (change === undefined) {
    s.reply(N.RPL_CHANNELMODEIS, seen.info.name, ...describeModes(modeState(seen.info), seen.member));
    return s.reply(N.RPL_CREATIONTIME, seen.info.name, String(Math.floor(seen.info.createdAt / 1000)));
  }
  if (/^[+-]?b$/.test(change) && rest.length === 0) return await sendBanList(s, seen.info);
  const { ops, unknown } = parseModes(change, rest);
  for (const letter of unknown) s.replyText(N.ERR_UNKNOWNMODE, letter, "is unknown mode char to me");
  // Ban lists live beside the channel: an operator's changes, shown in place in the one MODE event.
  if (ops.some((op) => MODE_KINDS[op.letter] === "list") && !seen.replica?.has(s.nick, "o")) {
    return refused(s, name, "not-op");
  }
  const changes: ModeOp[] = [];
  for (const op of ops) {
    if (MODE_KINDS[op.letter] !== "list") changes.push(op);
    else {
      const mask = await banListChange(s, seen.info, op.arg!, op.on);
      if (mask) changes.push({ on: op.on, letter: op.letter, arg: mask });
    }
  }
  if (changes.length === 0) return;
  const r = await s.ctx.store.changeModes(name, s.actor, changes);
  if ("refused" in r) return refused(s, name, r.refused === "not-member" ? "not-op" : r.refused);
  for (const who of r.missing) {
    if (await s.ctx.store.user(who)) {
      s.replyText(N.ERR_USERNOTINCHANNEL, who, seen.info.name, "They aren't on that channel");
    } else s.replyText(N.ERR_NOSUCHNICK, who, "No such nick/channel");
  }
  if (r.ev) await committed(s, r.ev);
}

/** Channel commands, by name. */
export const CHANNEL_COMMANDS: Record<string, Command> = {
  JOIN: {
    min: 1,
    run: async (s, m) => {
      if (m.params[0] === "0") {
        for (const key of [...s.joined.keys()]) {
          const name = s.ctx.hub.replica(key)?.name ?? key;
          await part(s, name, "Left all channels");
        }
        return;
      }
      const keys = (m.params[1] ?? "").split(",");
      const names = m.params[0]!.split(",").filter((c) => c !== "");
      for (const [i, name] of names.entries()) await join(s, name, keys[i] ?? "");
    },
  },
  PART: {
    min: 1,
    run: async (s, m) => {
      for (const name of m.params[0]!.split(",").filter((c) => c !== "")) await part(s, name, m.params[1]);
    },
  },
  TOPIC: { min: 1, run: (s, m) => topic(s, m.params[0]!, m.params[1]) },
  KICK: { min: 2, run: (s, m) => kick(s, m.params[0]!, m.params[1]!, m.params[2]) },
  MODE: {
    min: 1,
    run: (s, m) => {
      const target = m.params[0]!;
      if (!target.startsWith("#")) return userModeCommand(s, m);
      return channelMode(s, target, m.params.slice(1));
    },
  },
};
