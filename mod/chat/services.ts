/**
 * NickServ and ChanServ, built in: the account and channel commands for
 * clients that know nothing of IRCv3 (`/msg NickServ IDENTIFY password`),
 * answering with NOTICEs. They are not users in the store: their names are
 * reserved (no one can take them), and messages to them are handled by the
 * worker the sender is on. `/ns …` and `/cs …` (commands NS, CS, NICKSERV,
 * CHANSERV) reach them too.
 *
 * NickServ: REGISTER, IDENTIFY, LOGOUT, VERIFY, GHOST, REGAIN, INFO, SET
 * PASSWORD, DROP, HELP. ChanServ: REGISTER, DROP, INFO, OP, DEOP, VOICE,
 * DEVOICE, ACCESS (LIST, ADD, DEL), HELP.
 *
 * A registered channel does not vanish when empty: its topic, modes and ban
 * list stay, and its access list gives operator or voice to the accounts on
 * it when they join (ChanServ sets the mode); an empty registered channel
 * gives no one operator for joining first.
 * @module
 */
import { sleep } from "../deadline.ts";
import { fold, validChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { AccountError } from "./accounts.ts";
import type { AccessLevel } from "./account_store.ts";
import { logIn, logOut } from "./login.ts";
import { killUser, serviceNotice } from "./notify.ts";
import { changeNick } from "./cmd_connection.ts";
import { publishEvent } from "./cmd_channel.ts";

type Reply = (text: string) => void;

const NICKSERV_HELP = [
  "NickServ keeps accounts. An account's name is a nickname only its owner keeps.",
  "REGISTER <password> [email]      register your current nickname as an account",
  "IDENTIFY [account] <password>    log in",
  "LOGOUT                           log out",
  "VERIFY <account> <code>          verify a new account (the operator has the code)",
  "GHOST <nick>                     disconnect someone using your nickname",
  "REGAIN <nick>                    disconnect them and take the nickname",
  "INFO [account]                   about an account",
  "SET PASSWORD <new password>      change your password",
  "DROP <password>                  delete your account",
];

const CHANSERV_HELP = [
  "ChanServ keeps registered channels: their topic, modes and bans stay, and their access list gives +o/+v.",
  "REGISTER <#channel>                  register a channel you are an operator of",
  "DROP <#channel>                      unregister it (founder)",
  "INFO <#channel>                      about a registered channel",
  "OP|DEOP|VOICE|DEVOICE <#channel> [nick]   set a member's mode (op access)",
  "ACCESS <#channel> LIST               who has access",
  "ACCESS <#channel> ADD <account> <op|voice>   give access (founder)",
  "ACCESS <#channel> DEL <account>      take it away (founder)",
];

function address(s: IrcSession): string {
  return s.host;
}

async function nickServ(s: IrcSession, say: Reply, cmd: string, args: string[]): Promise<void> {
  const { accounts } = s.ctx;
  switch (cmd) {
    case "REGISTER": {
      const [password, email] = args;
      if (!password) return say("Syntax: REGISTER <password> [email]");
      if (s.account) return say(`You are already logged in as ${s.account}`);
      const { account, verified } = await accounts.register(s.nick, password, { email, address: address(s) });
      say("Account created");
      if (verified) return await logIn(s, account);
      return say(
        `Your account waits for verification: /msg NickServ VERIFY ${account} <code> (ask the operator)`,
      );
    }
    case "IDENTIFY": {
      const [name, password] = args.length >= 2 ? args : [s.nick, args[0]];
      if (!password || !name) return say("Syntax: IDENTIFY [account] <password>");
      if (s.account) return say(`You are already logged in as ${s.account}`);
      const account = await accounts.authenticate(name, password, address(s));
      if (!account) return say("Invalid account name or password");
      say(`You are now identified as ${account}`);
      return await logIn(s, account);
    }
    case "LOGOUT":
      if (!s.account) return say("You are not logged in");
      await logOut(s);
      return say("You are now logged out");
    case "VERIFY": {
      const [name, code] = args;
      if (!name || !code) return say("Syntax: VERIFY <account> <code>");
      const account = await accounts.verify(name, code);
      say(`Account ${account} verified`);
      if (!s.account) await logIn(s, account);
      return;
    }
    case "GHOST":
    case "REGAIN": {
      const [nick] = args;
      if (!nick) return say(`Syntax: ${cmd} <nick>`);
      if (!s.account || fold(s.account) !== fold(nick)) return say(`${nick} is not your account's nickname`);
      if (fold(nick) === fold(s.nick)) return say("That is you");
      if (await s.ctx.store.user(nick)) {
        killUser(s.ctx, nick, `Killed (NickServ (${cmd} command used by ${s.nick}))`, s.id);
        say(`${nick} has been disconnected`);
      }
      if (cmd === "GHOST") return;
      for (let i = 0; i < 40 && (await s.ctx.store.user(nick)); i++) await sleep(50);
      if (!(await changeNick(s, nick))) say(`${nick} is still in use; try again`);
      return;
    }
    case "INFO": {
      const a = await accounts.store.account(args[0] || s.account || s.nick);
      if (!a) return say(`${args[0] ?? s.nick} is not registered`);
      say(
        `Account ${a.name}: registered ${new Date(a.createdAt).toUTCString()}${
          a.verified ? "" : " (unverified)"
        }`,
      );
      if (fold(a.name) === fold(s.account) && a.email) say(`E-mail: ${a.email}`);
      return;
    }
    case "SET": {
      const [what, value] = args;
      if (what?.toUpperCase() !== "PASSWORD" || !value) return say("Syntax: SET PASSWORD <new password>");
      if (!s.account) return say("You are not logged in");
      await accounts.setPassword(s.account, value, address(s));
      return say("Password changed");
    }
    case "DROP": {
      const [password] = args;
      if (!s.account) return say("You are not logged in");
      if (!password || !(await accounts.authenticate(s.account, password, address(s)))) {
        return say("Syntax: DROP <password> (your current password)");
      }
      const name = s.account;
      await accounts.drop(name);
      await logOut(s);
      return say(`Account ${name} dropped`);
    }
    case "HELP":
    case "":
      return NICKSERV_HELP.forEach(say);
  }
  say(`Unknown command ${cmd}; /msg NickServ HELP`);
}

/** The member's entry, or null. */
async function membership(s: IrcSession, channel: string, nick: string) {
  return (await s.ctx.store.members(channel)).find((m) => fold(m.nick) === fold(nick)) ?? null;
}

/** Sets a prefix mode as ChanServ (a numbered MODE event, like an operator's). */
async function setPrefix(
  s: IrcSession,
  channel: string,
  nick: string,
  mode: "o" | "v",
  on: boolean,
): Promise<void> {
  const ev = await s.ctx.store.append(
    channel,
    {
      kind: "MODE",
      source: `ChanServ!ChanServ@${s.ctx.cfg.serverName}`,
      params: [`${on ? "+" : "-"}${mode}`, nick],
    },
    { setPrefixes: [{ nick, mode, on }] },
  );
  if (ev) publishEvent(s, ev);
}

/** After `s` joined a registered channel: the mode its account's access gives. */
export async function accessOnJoin(s: IrcSession, channel: string): Promise<void> {
  if (!s.account) return;
  const level = await s.ctx.accounts.store.accessOf(channel, s.account);
  if (level) await setPrefix(s, channel, s.nick, level === "voice" ? "v" : "o", true);
}

async function chanServ(s: IrcSession, say: Reply, cmd: string, args: string[]): Promise<void> {
  const { accounts, store } = s.ctx;
  if (cmd === "HELP" || cmd === "") return CHANSERV_HELP.forEach(say);
  const channel = args[0] ?? "";
  if (!validChannel(channel)) return say(`Syntax: ${cmd} <#channel> …; /msg ChanServ HELP`);
  const info = await store.channel(channel);
  const reg = await accounts.store.channelRegistration(channel);
  const mine: AccessLevel | null = s.account ? await accounts.store.accessOf(channel, s.account) : null;
  switch (cmd) {
    case "REGISTER": {
      if (!s.account) return say("You must be logged in (NickServ IDENTIFY) to register a channel");
      if (!info) return say(`${channel} does not exist`);
      if (reg) return say(`${info.name} is registered already (founder ${reg.founder})`);
      if (!(await membership(s, channel, s.nick))?.op) return say(`You must be an operator of ${info.name}`);
      if (!(await accounts.store.registerChannel(channel, s.account))) {
        return say(`${info.name} is registered already`);
      }
      return say(`${info.name} is registered to ${s.account}`);
    }
    case "INFO":
      if (!reg) return say(`${channel} is not registered`);
      return say(
        `${info?.name ?? channel}: founder ${reg.founder}, registered ${
          new Date(reg.registeredAt).toUTCString()
        }`,
      );
    case "DROP":
      if (!reg) return say(`${channel} is not registered`);
      if (mine !== "founder") return say("Only the founder can do that");
      await accounts.store.dropChannel(channel);
      return say(`${info?.name ?? channel} is no longer registered`);
    case "OP":
    case "DEOP":
    case "VOICE":
    case "DEVOICE": {
      if (!reg) return say(`${channel} is not registered`);
      if (mine !== "founder" && mine !== "op") return say("You have no operator access to that channel");
      const nick = args[1] ?? s.nick;
      if (!(await membership(s, channel, nick))) return say(`${nick} is not on ${channel}`);
      return await setPrefix(s, channel, nick, cmd.endsWith("OP") ? "o" : "v", !cmd.startsWith("DE"));
    }
    case "ACCESS": {
      if (!reg) return say(`${channel} is not registered`);
      const [, sub = "LIST", account, level] = args;
      switch (sub.toUpperCase()) {
        case "LIST":
          if (!mine) return say("You have no access to that channel");
          for (const e of await accounts.store.accessList(channel)) say(`${e.account} ${e.level}`);
          return say("End of access list");
        case "ADD": {
          if (mine !== "founder") return say("Only the founder can do that");
          const lvl = level?.toLowerCase();
          if (!account || (lvl !== "op" && lvl !== "voice")) {
            return say("Syntax: ACCESS <#channel> ADD <account> <op|voice>");
          }
          const a = await accounts.store.account(account);
          if (!a) return say(`${account} is not registered`);
          await accounts.store.setAccess(channel, a.name, lvl);
          return say(`${a.name} now has ${lvl} access to ${channel}`);
        }
        case "DEL": {
          if (mine !== "founder") return say("Only the founder can do that");
          if (!account || fold(account) === fold(reg.founder)) {
            return say("Syntax: ACCESS <#channel> DEL <account>");
          }
          await accounts.store.setAccess(channel, account, null);
          return say(`${account} has no access to ${channel} any more`);
        }
      }
      return say("Syntax: ACCESS <#channel> LIST|ADD|DEL …");
    }
  }
  say(`Unknown command ${cmd}; /msg ChanServ HELP`);
}

/** A message to a service: one command line. Account errors are told as notices. */
export async function serviceCommand(s: IrcSession, service: string, text: string): Promise<void> {
  const name = fold(service) === "nickserv" ? "NickServ" : "ChanServ";
  const say: Reply = (t) => serviceNotice(s, name, t);
  const [cmd = "", ...args] = text.trim().split(/\s+/);
  try {
    if (name === "NickServ") await nickServ(s, say, cmd.toUpperCase(), args);
    else await chanServ(s, say, cmd.toUpperCase(), args);
  } catch (err) {
    if (!(err instanceof AccountError)) throw err;
    say(err.message);
  }
}

const alias = (service: string): Command => ({
  min: 0,
  run: (s, m) => serviceCommand(s, service, m.params.join(" ")),
});

/** NS, CS, NICKSERV, CHANSERV: the services as commands. */
export const SERVICE_COMMANDS: Record<string, Command> = {
  NS: alias("NickServ"),
  NICKSERV: alias("NickServ"),
  CS: alias("ChanServ"),
  CHANSERV: alias("ChanServ"),
};
