/**
 * Notifications about users that are not channel events, across workers:
 * what a user's channel companions see when it goes away (`away-notify`),
 * logs in or out (`account-notify`), changes its real name (`setname`), is
 * invited (`invite-notify`), sends a TAGMSG; a line to one user wherever it
 * is connected (an INVITE, a services' notice); a user coming online
 * (MONITOR); and the services ending a session (NickServ GHOST).
 *
 * These are not numbered or stored: a notification lost with a restarting
 * dispatcher is lost (docs/CHAT.md says which events are best-effort). Each
 * is built once ({@link Outgoing}) and delivered to the local members that
 * enabled its capability; the other workers get it over the bus.
 * @module
 */
import { fold, formatMessage } from "./irc_message.ts";
import type { ChatContext, IrcSession } from "./irc_session.ts";
import { Outgoing, type TagMeta } from "./tags.ts";

/** What workers tell each other about users (part of `BusEvent`). */
export type NotifyEvent =
  /**
   * `line` to the members of `channels` (each once) that enabled `cap` ("": everyone), but not `except`;
   * with `only`, just those (folded nicks).
   */
  | {
    readonly t: "notify";
    readonly channels: readonly string[];
    readonly except: string;
    readonly only?: readonly string[];
    readonly line: string;
    readonly meta: TagMeta;
    readonly cap: string;
    readonly origin: string;
  }
  /** `line` to one user (folded nick), if it enabled `cap` ("": any). */
  | {
    readonly t: "tell";
    readonly to: string;
    readonly line: string;
    readonly meta: TagMeta;
    readonly cap: string;
    readonly origin: string;
  }
  /** A user registered (MONITOR): `nick!user@host`. */
  | { readonly t: "online"; readonly source: string; readonly origin: string }
  /** End a user's session (services): folded nick and the reason its companions see. */
  | { readonly t: "kill"; readonly to: string; readonly reason: string; readonly origin: string };

/**
 * Tells everyone sharing a channel with `s` (here and on other workers), if
 * they enabled `cap`; `self` also tells `s` itself (as its own response).
 */
export function notifyCompanions(
  s: IrcSession,
  line: string,
  options: {
    cap: string;
    self?: boolean;
    meta?: Partial<TagMeta>;
    channels?: readonly string[];
    only?: readonly string[];
  },
): void {
  const meta: TagMeta = { at: Date.now(), ...(s.account ? { account: s.account } : {}), ...options.meta };
  const channels = options.channels ?? [...s.joined.keys()];
  const out = new Outgoing(line, meta);
  const e = { channels, except: fold(s.nick), only: options.only, cap: options.cap };
  for (const c of s.ctx.hub.audience(channels, s)) if (wants(c, e)) c.deliver(out);
  if (options.self && (options.cap === "" || s.caps.has(options.cap))) s.deliver(out, true);
  if (channels.length > 0) s.ctx.publish({ t: "notify", ...e, line, meta, origin: s.id });
}

/** Whether a local client is in a notification's audience. */
function wants(
  c: { readonly nick: string; readonly caps: ReadonlySet<string> },
  e: { readonly except: string; readonly only?: readonly string[]; readonly cap: string },
): boolean {
  const nick = fold(c.nick);
  return nick !== e.except && (e.cap === "" || c.caps.has(e.cap)) && (!e.only || e.only.includes(nick));
}

/**
 * Sends `line` to the user `nick`, here or on another worker. Returns false
 * only when the user is known to be here and did not enable `cap`.
 */
export function tellUser(
  ctx: ChatContext,
  nick: string,
  line: string,
  options: { cap?: string; meta?: Partial<TagMeta>; origin: string },
): boolean {
  const cap = options.cap ?? "";
  const meta: TagMeta = { at: Date.now(), ...options.meta };
  const local = ctx.hub.clients.get(fold(nick));
  if (local) {
    if (cap !== "" && !local.caps.has(cap)) return false;
    local.deliver(new Outgoing(line, meta));
    return true;
  }
  ctx.publish({ t: "tell", to: fold(nick), line, meta, cap, origin: options.origin });
  return true;
}

/** Ends the session of `nick` wherever it is connected. */
export function killUser(ctx: ChatContext, nick: string, reason: string, origin: string): void {
  const local = ctx.hub.clients.get(fold(nick));
  if (local) local.close(reason);
  else ctx.publish({ t: "kill", to: fold(nick), reason, origin });
}

/** A notification from another worker. */
export function receiveNotify(ctx: ChatContext, e: NotifyEvent): void {
  const hub = ctx.hub;
  switch (e.t) {
    case "notify": {
      const out = new Outgoing(e.line, e.meta);
      for (const c of hub.audience(e.channels)) if (wants(c, e)) c.deliver(out);
      return;
    }
    case "tell": {
      const c = hub.clients.get(e.to);
      if (c && (e.cap === "" || c.caps.has(e.cap))) c.deliver(new Outgoing(e.line, e.meta));
      return;
    }
    case "online":
      return hub.presence.online(e.source);
    case "kill":
      return hub.clients.get(e.to)?.close(e.reason);
  }
}

/** A notice to `s` from one of the services (`NickServ`, `ChanServ`), as its response. */
export function serviceNotice(s: IrcSession, service: string, text: string): void {
  s.conn.send(
    formatMessage(`${service}!${service}@${s.ctx.cfg.serverName}`, "NOTICE", [s.nick, text], {
      trailing: true,
    }),
  );
}
