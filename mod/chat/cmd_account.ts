/**
 * IRCv3 `draft/account-registration`: `REGISTER <account> <email|*>
 * <password>` and `VERIFY <account> <code>`, before registration (the
 * capability says `before-connect`) or after it. An account name may differ
 * from the nickname (`custom-account-name`), but not be a nickname someone
 * else is using. Answers are standard replies (`REGISTER SUCCESS …`,
 * `FAIL REGISTER <code> …`); what VERIFY's code is depends on
 * `--irc-register` (`accounts.ts`).
 * @module
 */
import { fold, formatMessage } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { AccountError } from "./accounts.ts";
import { logIn } from "./login.ts";

function reply(s: IrcSession, params: string[]): void {
  s.conn.send(formatMessage(s.ctx.cfg.serverName, params[0]!, params.slice(1), { trailing: true }));
}

/** FAIL codes of the spec for the service's failures. */
function failCode(err: AccountError): string {
  switch (err.code) {
    case "RATE_LIMITED":
      return "TEMPORARILY_UNAVAILABLE";
    case "ACCOUNT_NOT_FOUND":
      return "INVALID_CODE";
    default:
      return err.code;
  }
}

async function register(s: IrcSession, name: string, email: string, password: string): Promise<void> {
  const account = name === "*" ? s.nick : name;
  if (account === "*") return reply(s, ["FAIL", "REGISTER", "NEED_NICK", "*", "Choose a nickname first"]);
  if (s.account) {
    return reply(s, [
      "FAIL",
      "REGISTER",
      "ALREADY_AUTHENTICATED",
      account,
      `You are logged in as ${s.account}`,
    ]);
  }
  const holder = await s.ctx.store.user(account);
  if (holder && !(s.registered && fold(holder.nick) === fold(s.nick))) {
    return reply(s, ["FAIL", "REGISTER", "ACCOUNT_EXISTS", account, "That name is a nickname in use"]);
  }
  try {
    const r = await s.ctx.accounts.register(account, password, { email, address: s.host });
    if (!r.verified) {
      return reply(s, [
        "REGISTER",
        "VERIFICATION_REQUIRED",
        r.account,
        "Account created; it waits for VERIFY with the code the operator gives you",
      ]);
    }
    reply(s, ["REGISTER", "SUCCESS", r.account, "Account successfully registered"]);
    await logIn(s, r.account);
  } catch (err) {
    if (!(err instanceof AccountError)) throw err;
    reply(s, ["FAIL", "REGISTER", failCode(err), account, err.message]);
  }
}

async function verify(s: IrcSession, name: string, code: string): Promise<void> {
  try {
    const account = await s.ctx.accounts.verify(name, code);
    reply(s, ["VERIFY", "SUCCESS", account, "Account successfully verified"]);
    if (!s.account) await logIn(s, account);
  } catch (err) {
    if (!(err instanceof AccountError)) throw err;
    reply(s, ["FAIL", "VERIFY", failCode(err), name, err.message]);
  }
}

/** REGISTER and VERIFY. */
export const ACCOUNT_COMMANDS: Record<string, Command> = {
  REGISTER: { min: 3, early: true, run: (s, m) => register(s, m.params[0]!, m.params[1]!, m.params[2]!) },
  VERIFY: { min: 2, early: true, run: (s, m) => verify(s, m.params[0]!, m.params[1]!) },
};
