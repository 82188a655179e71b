/**
 * IRCv3 capability negotiation (`CAP LS [302]`, `LIST`, `REQ`, `END`): the
 * capabilities osps implements, their values for `CAP LS 302`, and what a
 * session's set of enabled capabilities means for the tags it receives.
 *
 * A `REQ` is all or nothing (one unknown name NAKs the lot). With `CAP LS
 * 302`, `cap-notify` is on implicitly (osps never adds or removes a
 * capability at run time, so no `CAP NEW`/`DEL` is ever sent). Registration
 * waits for `CAP END` once the client has spoken CAP.
 * @module
 */
import { formatMessage } from "./irc_message.ts";
import type { IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { TagMask } from "./tags.ts";
import { abortSasl, SASL_MECHANISMS } from "./sasl.ts";

/** Every capability osps implements. */
export const CAPS = [
  "account-notify",
  "account-tag",
  "away-notify",
  "batch",
  "cap-notify",
  "draft/account-registration",
  "draft/chathistory",
  "echo-message",
  "extended-join",
  "invite-notify",
  "labeled-response",
  "message-tags",
  "multi-prefix",
  "sasl",
  "server-time",
  "setname",
  "userhost-in-names",
] as const;

/** A capability's name. */
export type Cap = typeof CAPS[number];

const KNOWN: ReadonlySet<string> = new Set(CAPS);

/** The capabilities offered to `s` (registration off: no `draft/account-registration`). */
function offered(s: IrcSession): Cap[] {
  return CAPS.filter((c) =>
    c !== "draft/account-registration" || s.ctx.accounts.policy.registration !== "closed"
  );
}

/** A capability's value in `CAP LS 302`, or "" for none. */
function capValue(cap: Cap): string {
  switch (cap) {
    case "sasl":
      return SASL_MECHANISMS.join(",");
    case "draft/account-registration":
      return "before-connect,custom-account-name";
    default:
      return "";
  }
}

/** The tag mask of a capability set (see `tags.ts`). */
export function tagMaskOf(caps: ReadonlySet<string>): number {
  return (caps.has("server-time") ? TagMask.time : 0) |
    (caps.has("message-tags") ? TagMask.messageTags : 0) |
    (caps.has("account-tag") ? TagMask.account : 0) |
    (caps.has("extended-join") ? TagMask.extendedJoin : 0);
}

/** Sends `CAP <nick> <sub> …`, split over several lines (`*` continuation, 302) when the list is long. */
function sendList(s: IrcSession, sub: string, items: readonly string[]): void {
  const server = s.ctx.cfg.serverName;
  const lines: string[] = [];
  let cur = "";
  for (const item of items) {
    if (cur !== "" && cur.length + item.length + 1 > 380) {
      lines.push(cur);
      cur = "";
    }
    cur += cur === "" ? item : ` ${item}`;
  }
  lines.push(cur);
  lines.forEach((text, i) => {
    const more = i < lines.length - 1 && s.capVersion >= 302 ? ["*"] : [];
    s.conn.send(formatMessage(server, "CAP", [s.nick, sub, ...more, text], { trailing: true }));
  });
}

/** Applies a `CAP REQ`: all or nothing. */
function request(s: IrcSession, arg: string): void {
  const server = s.ctx.cfg.serverName;
  const asked = arg.split(" ").filter((c) => c !== "");
  const names = asked.map((c) => c.replace(/^-/, ""));
  const offer = new Set<string>(offered(s));
  if (asked.length === 0 || names.some((c) => !KNOWN.has(c) || !offer.has(c))) {
    s.conn.send(formatMessage(server, "CAP", [s.nick, "NAK", arg], { trailing: true }));
    return;
  }
  for (const c of asked) c.startsWith("-") ? s.caps.delete(c.slice(1)) : s.caps.add(c);
  if (s.capVersion >= 302) s.caps.add("cap-notify");
  s.tagMask = tagMaskOf(s.caps);
  s.conn.send(formatMessage(server, "CAP", [s.nick, "ACK", arg], { trailing: true }));
}

/**
 * The CAP command. `then` finishes registration (CAP END releases it).
 *
 * @example
 * ```ts
 * await capCommand(s, "LS", "302", tryRegister); // CAP * LS :account-notify … sasl=PLAIN,SCRAM-SHA-256 …
 * ```
 */
export function capCommand(
  s: IrcSession,
  sub: string,
  arg: string,
  then: (s: IrcSession) => void | Promise<void>,
): void | Promise<void> {
  switch (sub) {
    case "LS": {
      if (!s.registered) s.capHold = true;
      const version = Number(arg);
      if (Number.isInteger(version) && version > s.capVersion) s.capVersion = version;
      if (s.capVersion >= 302) s.caps.add("cap-notify");
      s.tagMask = tagMaskOf(s.caps);
      const v302 = s.capVersion >= 302;
      return sendList(s, "LS", offered(s).map((c) => v302 && capValue(c) ? `${c}=${capValue(c)}` : c));
    }
    case "LIST":
      return sendList(s, "LIST", [...s.caps]);
    case "REQ":
      if (!s.registered) s.capHold = true;
      return request(s, arg);
    case "END":
      if (s.registered) return;
      abortSasl(s); // an exchange still in progress ends with registration
      s.capHold = false;
      return then(s);
  }
  s.replyText(N.ERR_INVALIDCAPCMD, sub, "Invalid CAP command");
}
