/**
 * Connection commands: capability negotiation (CAP), PASS, NICK, USER and
 * the welcome burst, PING/PONG, QUIT, MOTD, AWAY and user modes.
 * @module
 */
import { fold, formatMessage, type IrcMessage, validNick } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { isupportTokens, N, USER_MODES } from "./numerics.ts";
import { channelModeLetters, MODE_KINDS } from "./channel_modes.ts";
import { capCommand } from "./caps.ts";
import { afterNickChange, afterRegistration, isServiceName, sendLusers } from "./presence.ts";
import { notifyCompanions } from "./notify.ts";
import { abortable, deadline } from "../deadline.ts";

/** Longest a PONG waits for other workers' events (a store or a bus that does not answer: the PONG goes anyway). */
const PING_BARRIER_MS = 1_000;

/**
 * A PING's answer follows every event already stored in the client's
 * channels, whichever worker stored it: the store says each channel's last
 * number and this worker hands each one on before the PONG (read from the
 * store if the bus has not brought it by then: `ChatHub.caughtUp`). A client
 * that synchronises by PING (bots, irctest) so sees what other users said
 * before it asked, not a few milliseconds after its PONG. Private messages
 * are not stored: they keep the bus's pace.
 */
async function caughtUp(s: IrcSession): Promise<void> {
  if (s.joined.size === 0) return;
  using d = deadline(PING_BARRIER_MS, () => new Error("PING barrier"));
  const stored = async () => {
    const seqs = await s.ctx.store.lastSeqs([...s.joined.keys()]);
    await Promise.all([...seqs].map(([channel, seq]) => s.ctx.hub.caughtUp(channel, seq)));
  };
  await abortable(stored(), d.signal).catch(() => {}); // late or failed: answered as it stands
}

const VERSION = "osps-0.1";

/** Registers once NICK, USER (and PASS, and CAP END when negotiating) are in. */
export async function tryRegister(s: IrcSession): Promise<void> {
  if (s.registered || s.nick === "*" || !s.userGiven || s.capHold) return;
  if (!s.passOk) {
    s.replyText(N.ERR_PASSWDMISMATCH, "Password incorrect");
    return s.close("Bad password");
  }
  const { store, hub, owner, cfg } = s.ctx;
  const claim = () =>
    store.claimNick({
      nick: s.nick,
      user: s.user,
      host: s.host,
      realname: s.realname,
      away: "",
      modes: s.modes,
      owner,
      sid: s.id,
      signonAt: Date.now(),
      account: s.account,
    });
  const claimed = await claim() || (await releasedSoon(s, s.nick) && await claim());
  if (!claimed) {
    const taken = s.nick;
    s.nick = "*";
    return s.replyText(N.ERR_NICKNAMEINUSE, taken, "Nickname is already in use");
  }
  s.registeredNow();
  hub.register(s);
  s.replyText(N.RPL_WELCOME, `Welcome to the ${cfg.network} IRC network ${s.source}`);
  s.replyText(N.RPL_YOURHOST, `Your host is ${cfg.serverName}, running version ${VERSION}`);
  s.replyText(N.RPL_CREATED, `This server was created ${s.ctx.startedAt.toUTCString()}`);
  const withArg = Object.keys(MODE_KINDS).filter((l) => MODE_KINDS[l] !== "flag").sort().join("");
  s.reply(N.RPL_MYINFO, cfg.serverName, VERSION, USER_MODES, channelModeLetters(), withArg);
  const tokens = isupportTokens(cfg.network);
  for (let i = 0; i < tokens.length; i += 12) {
    s.reply(N.RPL_ISUPPORT, ...tokens.slice(i, i + 12), "are supported by this server");
  }
  await sendLusers(s);
  sendMotd(s);
  await afterRegistration(s);
}

/** How long a registration waits for a nickname whose holder may be leaving (its connection just closed). */
const RELEASE_WAIT_MS = 200;
const RELEASE_POLL_MS = 20;

/**
 * True when `nick` is free, or is freed within {@link RELEASE_WAIT_MS}: a
 * client that reconnects at once after its connection dropped gets its
 * nickname back instead of 433 while the old session's release is still on
 * its way (on this worker or another). A holder that is a live session of
 * this worker is not waited for.
 */
async function releasedSoon(s: IrcSession, nick: string): Promise<boolean> {
  const { store, hub, owner } = s.ctx;
  const until = performance.now() + RELEASE_WAIT_MS;
  for (;;) {
    const holder = await store.user(nick);
    if (!holder) return true;
    const local = holder.owner === owner ? hub.client(holder.sid) : undefined;
    if ((local && !local.closing) || performance.now() >= until) return false;
    await new Promise((resolve) => setTimeout(resolve, RELEASE_POLL_MS));
  }
}

function sendMotd(s: IrcSession): void {
  const motd = s.ctx.cfg.motd;
  if (motd === "") return s.replyText(N.ERR_NOMOTD, "MOTD File is missing");
  s.replyText(N.RPL_MOTDSTART, `- ${s.ctx.cfg.serverName} Message of the day - `);
  for (const line of motd.split("\n")) s.replyText(N.RPL_MOTD, `- ${line}`);
  s.replyText(N.RPL_ENDOFMOTD, "End of /MOTD command.");
}

async function nick(s: IrcSession, wanted: string): Promise<void> {
  if (!validNick(wanted) || isServiceName(wanted)) {
    return s.replyText(N.ERR_ERRONEUSNICKNAME, wanted, "Erroneous nickname");
  }
  if (!s.registered) {
    if (!(await releasedSoon(s, wanted))) {
      return s.replyText(N.ERR_NICKNAMEINUSE, wanted, "Nickname is already in use");
    }
    s.nick = wanted;
    return await tryRegister(s);
  }
  if (wanted === s.nick) return;
  if (!(await changeNick(s, wanted))) s.replyText(N.ERR_NICKNAMEINUSE, wanted, "Nickname is already in use");
}

/** Renames a registered user (everyone sharing a channel is told); false when `wanted` is taken. */
export async function changeNick(s: IrcSession, wanted: string): Promise<boolean> {
  const { store, hub } = s.ctx;
  const oldSource = s.source, oldNick = s.nick;
  const events = await store.renameNick(s.actor, wanted);
  if (events === "taken") return false;
  if (events === "gone") {
    s.drop("Connection lost (nickname no longer held)");
    return true;
  }
  s.nick = wanted;
  hub.register(s, oldNick);
  s.send(formatMessage(oldSource, "NICK", [wanted]));
  s.ctx.commit(events, s.id);
  for (const ev of events) await hub.whenApplied(ev.channel, ev.seq);
  await afterNickChange(s, oldNick);
  return true;
}

/** MODE on a nickname (user modes; channel modes are in cmd_channel.ts, which routes here). */
export function userModeCommand(s: IrcSession, m: IrcMessage): Promise<void> {
  return userModes(s, m.params[0]!, m.params[1]);
}

async function userModes(s: IrcSession, target: string, change: string | undefined): Promise<void> {
  if (fold(target) !== fold(s.nick)) {
    const exists = await s.ctx.store.user(target);
    if (!exists) return s.replyText(N.ERR_NOSUCHNICK, target, "No such nick/channel");
    return s.replyText(N.ERR_USERSDONTMATCH, "Cannot change mode for other users");
  }
  if (change === undefined) return s.reply(N.RPL_UMODEIS, `+${s.modes}`);
  let adding = true, modes = s.modes, unknown = false;
  for (const ch of change) {
    if (ch === "+" || ch === "-") adding = ch === "+";
    else if (!USER_MODES.includes(ch)) unknown = true;
    else if (adding && !modes.includes(ch)) modes += ch;
    else if (!adding) modes = modes.replace(ch, "");
  }
  if (unknown) s.replyText(N.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag");
  if (modes === s.modes) return;
  const before = s.modes;
  s.modes = modes;
  await s.ctx.store.setUserModes(s.actor, modes);
  const added = [...modes].filter((m) => !before.includes(m)).join("");
  const removed = [...before].filter((m) => !modes.includes(m)).join("");
  s.send(
    formatMessage(s.source, "MODE", [s.nick, `${added ? `+${added}` : ""}${removed ? `-${removed}` : ""}`]),
  );
}

/** Connection commands, by name. */
export const CONNECTION_COMMANDS: Record<string, Command> = {
  CAP: {
    min: 1,
    early: true,
    run: (s, m) => capCommand(s, m.params[0]!.toUpperCase(), m.params[1] ?? "", tryRegister),
  },
  PASS: {
    min: 1,
    early: true,
    run: (s, m) => {
      if (s.registered) return s.replyText(N.ERR_ALREADYREGISTERED, "You may not reregister");
      s.passOk = s.ctx.cfg.password === "" || m.params[0] === s.ctx.cfg.password;
    },
  },
  NICK: {
    min: 0,
    early: true,
    run: (s, m) => {
      const wanted = m.params[0];
      if (wanted === undefined || wanted === "") {
        return s.replyText(N.ERR_NONICKNAMEGIVEN, "No nickname given");
      }
      return nick(s, wanted);
    },
  },
  USER: {
    min: 4,
    early: true,
    run: (s, m) => {
      if (s.registered || s.userGiven) return s.replyText(N.ERR_ALREADYREGISTERED, "You may not reregister");
      if (m.params[3] === "") return s.replyText(N.ERR_NEEDMOREPARAMS, "USER", "Not enough parameters");
      s.user = `~${m.params[0]!.replace(/[^A-Za-z0-9._-]/g, "").slice(0, 17) || "user"}`;
      s.realname = m.params[3]!;
      s.userGiven = true;
      return tryRegister(s);
    },
  },
  PING: {
    min: 1,
    early: true,
    run: async (s, m) => {
      await caughtUp(s);
      const server = s.ctx.cfg.serverName;
      s.conn.send(formatMessage(server, "PONG", [server, m.params[0]!], { trailing: true }));
    },
  },
  PONG: { min: 0, early: true, run: () => {} },
  QUIT: {
    min: 0,
    early: true,
    run: (s, m) => {
      const text = m.params[0];
      s.close(text ? `Quit: ${text}` : "Quit", text ? `Quit: ${text}` : "Quit");
    },
  },
  MOTD: { min: 0, run: (s) => sendMotd(s) },
  AWAY: {
    min: 0,
    run: async (s, m) => {
      s.away = (m.params[0] ?? "").slice(0, 200);
      await s.ctx.store.setAway(s.actor, s.away);
      if (s.away) s.replyText(N.RPL_NOWAWAY, "You have been marked as being away");
      else s.replyText(N.RPL_UNAWAY, "You are no longer marked as being away");
      notifyCompanions(
        s,
        formatMessage(s.source, "AWAY", s.away ? [s.away] : [], { trailing: s.away !== "" }),
        {
          cap: "away-notify",
        },
      );
    },
  },
};
