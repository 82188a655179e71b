/**
 * Channel commands: JOIN (with keys), PART, TOPIC, NAMES, LIST, KICK and
 * MODE. Each change is one store transaction that also numbers the event
 * (`ChatStore.join`/`append`), delivered here, then published to the other
 * workers.
 * @module
 */
import type { ChannelChange, ChannelEvent, ChannelInfo, Member } from "./chat_store.ts";
import { fold, TOPICLEN, truncateBytes, validChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { CHANNEL_FLAGS, CHANNEL_MODES, MAX_CHANNELS_PER_CLIENT, N, NEW_CHANNEL_MODES } from "./numerics.ts";
import { userModeCommand } from "./cmd_connection.ts";
import { namesEntry } from "./member_view.ts";
import { mayJoin } from "./moderation.ts";
import { banListChange, sendBanList } from "./ban_list.ts";
import { afterJoin } from "./presence.ts";

/** Delivers a stored event here and sends it to the other workers. */
export function publishEvent(s: IrcSession, ev: ChannelEvent): void {
  s.ctx.handOn([{ ev, origin: s.id }]);
}

/** The channel, and whether `s` is in it; replies 403 and returns null when it does not exist. */
async function existing(s: IrcSession, name: string): Promise<ChannelInfo | null> {
  const info = validChannel(name) ? await s.ctx.store.channel(name) : null;
  if (!info) s.replyText(N.ERR_NOSUCHCHANNEL, name, "No such channel");
  return info;
}

function isIn(s: IrcSession, channel: string): boolean {
  return s.joined.has(fold(channel));
}

/** RPL_NAMREPLY lines (as many as the line limit needs; "@" marks a secret channel), then RPL_ENDOFNAMES. */
export function sendNames(s: IrcSession, info: ChannelInfo, members: readonly Member[]): void {
  const channel = info.name;
  const names = members.map((m) => namesEntry(m, s.caps));
  for (let i = 0; i < names.length;) {
    let line = "";
    for (; i < names.length && line.length + names[i]!.length < 400; i++) {
      line += (line ? " " : "") + names[i];
    }
    s.replyText(N.RPL_NAMREPLY, info.modes.includes("s") ? "@" : "=", channel, line);
  }
  s.replyText(N.RPL_ENDOFNAMES, channel, "End of /NAMES list");
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
  if (isIn(s, name)) return;
  if (s.joined.size >= MAX_CHANNELS_PER_CLIENT) {
    return s.replyText(N.ERR_TOOMANYCHANNELS, name, "You have joined too many channels");
  }
  const { store, hub } = s.ctx;
  const before = await store.channel(name);
  if (before && !(await mayJoin(s, before))) return; // +i, bans: replied
  const fields = { params: [s.account || "*", s.realname], ...(s.account ? { account: s.account } : {}) };
  const ev = await store.join(name, s.source, s.nick, key, NEW_CHANNEL_MODES, fields);
  if (ev === "bad-key") return s.replyText(N.ERR_BADCHANNELKEY, name, "Cannot join channel (+k)");
  if (ev === "full") return s.replyText(N.ERR_CHANNELISFULL, name, "Cannot join channel (+l)");
  if (ev === null) return;
  hub.joined(s, ev);
  s.ctx.publish({ t: "ch", ev, origin: s.id });
  const info = await store.channel(ev.channel);
  if (info) sendTopic(s, info, false);
  if (info) sendNames(s, info, await store.members(ev.channel));
  await afterJoin(s, ev.channel);
}

async function part(s: IrcSession, name: string, reason: string | undefined): Promise<void> {
  if (!(await existing(s, name))) return;
  if (!isIn(s, name)) return s.replyText(N.ERR_NOTONCHANNEL, name, "You're not on that channel");
  const params = reason ? [truncateBytes(reason, 300)] : [];
  const ev = await s.ctx.store.append(name, { kind: "PART", source: s.source, params }, {
    removeMember: s.nick,
  });
  if (ev) publishEvent(s, ev);
}

async function topic(s: IrcSession, name: string, text: string | undefined): Promise<void> {
  const info = await existing(s, name);
  if (!info) return;
  if (text === undefined) {
    if (!isIn(s, name) && info.modes.includes("s")) {
      return s.replyText(N.ERR_NOTONCHANNEL, name, "Not on channel");
    }
    return sendTopic(s, info, true);
  }
  if (!isIn(s, name)) return s.replyText(N.ERR_NOTONCHANNEL, name, "You're not on that channel");
  if (info.modes.includes("t") && !(await isOp(s, name))) {
    return s.replyText(N.ERR_CHANOPRIVSNEEDED, name, "You're not channel operator");
  }
  const t = truncateBytes(text, TOPICLEN);
  const ev = await s.ctx.store.append(name, { kind: "TOPIC", source: s.source, params: [t] }, {
    topic: { text: t, by: s.source },
  });
  if (ev) publishEvent(s, ev);
}

async function isOp(s: IrcSession, channel: string, nick = s.nick): Promise<boolean> {
  const members = await s.ctx.store.members(channel);
  return members.some((m) => m.op && fold(m.nick) === fold(nick));
}

async function kick(s: IrcSession, name: string, targets: string, reason: string | undefined): Promise<void> {
  if (!(await existing(s, name))) return;
  if (!isIn(s, name)) return s.replyText(N.ERR_NOTONCHANNEL, name, "You're not on that channel");
  const members = await s.ctx.store.members(name);
  if (!members.some((m) => m.op && fold(m.nick) === fold(s.nick))) {
    return s.replyText(N.ERR_CHANOPRIVSNEEDED, name, "You're not channel operator");
  }
  for (const target of targets.split(",").filter((t) => t !== "")) {
    const victim = members.find((m) => fold(m.nick) === fold(target));
    if (!victim) {
      s.replyText(N.ERR_USERNOTINCHANNEL, target, name, "They aren't on that channel");
      continue;
    }
    const params = [victim.nick, truncateBytes(reason ?? s.nick, 390)];
    const ev = await s.ctx.store.append(name, { kind: "KICK", source: s.source, params }, {
      removeMember: victim.nick,
    });
    if (ev) publishEvent(s, ev);
  }
}

/** Parses and applies a channel mode change; replies for errors; publishes one MODE event. */
async function channelMode(s: IrcSession, info: ChannelInfo, args: readonly string[]): Promise<void> {
  const [change, ...rest] = args;
  if (change === undefined) {
    const shown = [`+${info.modes}${info.key ? "k" : ""}${info.limit ? "l" : ""}`];
    if (isIn(s, info.name)) {
      if (info.key) shown.push(info.key);
      if (info.limit) shown.push(String(info.limit));
    }
    s.reply(N.RPL_CHANNELMODEIS, info.name, ...shown);
    return s.reply(N.RPL_CREATIONTIME, info.name, String(Math.floor(info.createdAt / 1000)));
  }
  if (/^[+-]?b$/.test(change) && rest.length === 0) return await sendBanList(s, info);
  for (const ch of change) {
    if (ch !== "+" && ch !== "-" && !CHANNEL_MODES.includes(ch)) {
      s.replyText(N.ERR_UNKNOWNMODE, ch, "is unknown mode char to me");
    }
  }
  const members = await s.ctx.store.members(info.name);
  if (!members.some((m) => m.op && fold(m.nick) === fold(s.nick))) {
    return s.replyText(N.ERR_CHANOPRIVSNEEDED, info.name, "You're not channel operator");
  }
  let adding = true, modes = info.modes, key = info.key, limit = info.limit;
  const setPrefixes: Array<{ nick: string; mode: "o" | "v"; on: boolean }> = [];
  const done: Array<[string, string, string?]> = []; // sign, letter, argument
  for (const ch of change) {
    if (ch === "+" || ch === "-") {
      adding = ch === "+";
      continue;
    }
    const sign = adding ? "+" : "-";
    if (CHANNEL_FLAGS.includes(ch)) {
      if (adding === modes.includes(ch)) continue;
      modes = adding ? [...modes, ch].sort().join("") : modes.replace(ch, "");
      done.push([sign, ch]);
    } else if (ch === "k") {
      const arg = adding ? rest.shift() : (rest.shift(), "*");
      if (adding && (!arg || /[\s,]/.test(arg))) continue;
      key = adding ? arg! : "";
      done.push([sign, ch, arg]);
    } else if (ch === "l") {
      if (adding) {
        const n = Number(rest.shift());
        if (!Number.isInteger(n) || n <= 0) continue;
        limit = n;
        done.push([sign, ch, String(n)]);
      } else if (limit) {
        limit = 0;
        done.push([sign, ch]);
      }
    } else if (ch === "o" || ch === "v") {
      const who = rest.shift();
      if (who === undefined) continue;
      const m = members.find((x) => fold(x.nick) === fold(who));
      if (!m) {
        if (await s.ctx.store.user(who)) {
          s.replyText(N.ERR_USERNOTINCHANNEL, who, info.name, "They aren't on that channel");
        } else s.replyText(N.ERR_NOSUCHNICK, who, "No such nick/channel");
        continue;
      }
      setPrefixes.push({ nick: m.nick, mode: ch, on: adding });
      done.push([sign, ch, m.nick]);
    } else if (ch === "b") {
      const mask = rest.shift();
      if (mask === undefined) continue;
      const changed = await banListChange(s, info, mask, adding);
      if (changed) done.push([sign, ch, changed]);
    }
  }
  if (done.length === 0) return;
  let text = "", sign = "";
  for (const [sg, letter] of done) {
    if (sg !== sign) text += sign = sg;
    text += letter;
  }
  const params = [text, ...done.map(([, , a]) => a).filter((a): a is string => a !== undefined)];
  const c: ChannelChange = { modes: { modes, key, limit }, setPrefixes };
  const ev = await s.ctx.store.append(info.name, { kind: "MODE", source: s.source, params }, c);
  if (ev) publishEvent(s, ev);
}

/** Channel commands, by name. */
export const CHANNEL_COMMANDS: Record<string, Command> = {
  JOIN: {
    min: 1,
    run: async (s, m) => {
      if (m.params[0] === "0") {
        for (const ch of [...s.joined.keys()]) await part(s, ch, "Left all channels");
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
  NAMES: {
    min: 0,
    run: async (s, m) => {
      const name = m.params[0]?.split(",")[0];
      if (name === undefined) return s.replyText(N.RPL_ENDOFNAMES, "*", "End of /NAMES list");
      const info = validChannel(name) ? await s.ctx.store.channel(name) : null;
      const members = info ? await s.ctx.store.members(name) : [];
      const hidden = info?.modes.includes("s") && !isIn(s, name); // secret: only members see who is in
      if (!info || members.length === 0 || hidden) {
        return s.replyText(N.RPL_ENDOFNAMES, name, "End of /NAMES list");
      }
      sendNames(s, info, members);
    },
  },
  LIST: {
    min: 0,
    run: async (s, m) => {
      const only = m.params[0] ? new Set(m.params[0].split(",").map(fold)) : null;
      s.replyText(N.RPL_LISTSTART, "Channel", "Users  Name");
      for (const { info, users } of await s.ctx.store.channels()) {
        if (users === 0 || (only && !only.has(fold(info.name)))) continue;
        if (info.modes.includes("s") && !isIn(s, info.name)) continue; // secret: only members see it
        s.replyText(N.RPL_LIST, info.name, String(users), info.topic);
      }
      s.replyText(N.RPL_LISTEND, "End of /LIST");
    },
  },
  KICK: { min: 2, run: (s, m) => kick(s, m.params[0]!, m.params[1]!, m.params[2]) },
  MODE: {
    min: 1,
    run: async (s, m) => {
      const target = m.params[0]!;
      if (!target.startsWith("#")) return userModeCommand(s, m);
      const info = await existing(s, target);
      if (info) await channelMode(s, info, m.params.slice(1));
    },
  },
};
