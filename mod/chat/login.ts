/**
 * Logging a session in to an account and out of it, whatever the way in
 * (SASL, REGISTER, NickServ IDENTIFY): the session's account, the user's row
 * in the store (so WHOIS, WHO and other workers see it), `account-notify`
 * to its channel companions, and the 900/901 numerics.
 * @module
 */
import { fold, formatMessage } from "./irc_message.ts";
import type { IrcSession } from "./irc_session.ts";
import { notifyCompanions } from "./notify.ts";
import { N } from "./numerics.ts";
import { guardNick } from "./nick_guard.ts";

/** `nick!user@host` as the 900/901 numerics show it (before registration: what is known). */
function mask(s: IrcSession): string {
  return `${s.nick}!${s.user || "*"}@${s.host}`;
}

/** Logs `s` in to `account` (its name as registered). */
export async function logIn(s: IrcSession, account: string): Promise<void> {
  s.account = account;
  if (s.registered) {
    await s.ctx.accounts.store.setLogin(s.nick, account);
    notifyCompanions(s, formatMessage(s.source, "ACCOUNT", [account]), { cap: "account-notify" });
    if (fold(account) === fold(s.nick)) await guardNick(s); // identified for its nickname: the guard stands down
  }
  s.reply(N.RPL_LOGGEDIN, mask(s), account, `You are now logged in as ${account}`);
}

/** Logs `s` out. */
export async function logOut(s: IrcSession): Promise<void> {
  if (s.account === "") return;
  s.account = "";
  if (s.registered) {
    await s.ctx.accounts.store.setLogin(s.nick, "");
    notifyCompanions(s, formatMessage(s.source, "ACCOUNT", ["*"]), { cap: "account-notify" });
    await guardNick(s);
  }
  s.replyText(N.RPL_LOGGEDOUT, mask(s), "You are now logged out");
}
