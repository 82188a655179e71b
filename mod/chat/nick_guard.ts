/**
 * Nick ownership: an account's name is a nickname its owner keeps. Someone
 * else who takes it (at registration or with NICK) is told so by NickServ and
 * given `--irc-nick-grace-ms` (30 s) to identify as its owner; past that it is
 * renamed to `Guest<n>`. Its owner, while logged in, keeps the nickname (and
 * can take it back from a holder with `NickServ GHOST`/`REGAIN`). Only a
 * verified account holds its name this way.
 * @module
 */
import { fold } from "./irc_message.ts";
import type { IrcSession } from "./irc_session.ts";
import { serviceNotice } from "./notify.ts";
import { changeNick } from "./cmd_connection.ts";
import { logger } from "../log.ts";

/** (Re)considers `s`'s nickname: arms the rename when it holds someone else's, disarms it otherwise. */
export async function guardNick(s: IrcSession): Promise<void> {
  clearTimeout(s.guard);
  s.guard = undefined;
  if (!s.registered || s.closing) return;
  const owner = await s.ctx.accounts.store.account(s.nick);
  if (!owner || !owner.verified || fold(owner.name) === fold(s.account)) return;
  const nick = s.nick;
  const grace = s.ctx.cfg.nickGraceMs;
  serviceNotice(
    s,
    "NickServ",
    `This nickname is registered. Identify with /msg NickServ IDENTIFY ${owner.name} <password> ` +
      `within ${Math.round(grace / 1000)} seconds, or you will be renamed`,
  );
  s.guard = setTimeout(() => void rename(s, nick), grace);
}

async function rename(s: IrcSession, nick: string): Promise<void> {
  s.guard = undefined;
  if (s.closing || fold(s.nick) !== fold(nick) || fold(s.account) === fold(nick)) return;
  try {
    for (let i = 0; i < 5; i++) {
      const guest = `Guest${Math.floor(10_000 + Math.random() * 90_000)}`;
      if (await changeNick(s, guest)) {
        serviceNotice(s, "NickServ", `You did not identify for ${nick}: you are now ${guest}`);
        return;
      }
    }
  } catch (err) {
    logger().error("chat: cannot rename {nick}: {err}", { nick, err: String(err) });
  }
  s.close(`Nickname ${nick} is registered to another account`);
}
