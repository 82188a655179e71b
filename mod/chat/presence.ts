/**
 * What follows a user's arrival, renaming and departure besides the channel
 * events: MONITOR watchers told (here and on other workers), the nickname
 * guard (`nick_guard.ts`), WHOWAS entries, and the LUSERS counts shown at
 * registration.
 *
 * osps shows itself as one server, whatever its workers and hosts: LUSERS
 * counts every user of every worker as local.
 * @module
 */
import { logger } from "../log.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { SERVICE_NAMES } from "./accounts.ts";
import type { ListStore } from "./list_store.ts";
import { guardNick } from "./nick_guard.ts";
import { accessOnJoin } from "./services.ts";
import { notifyCompanions } from "./notify.ts";
import { fold, formatMessage } from "./irc_message.ts";

/** True when `nick` is one of the services' (no user may take it). */
export function isServiceName(nick: string): boolean {
  return SERVICE_NAMES.has(fold(nick));
}

/** Past this many users, counts are reused for {@link COUNTS_TTL_MS}: every registration shows them. */
const BIG_NETWORK = 1_000;
const COUNTS_TTL_MS = 1_000;
const counted = new WeakMap<object, { at: number; value: Awaited<ReturnType<ListStore["counts"]>> }>();

/**
 * The network's counts. Exact on a small network; on a big one (10,000
 * users registering at once each get LUSERS) a second old at most, so that
 * registrations do not each scan every user.
 */
async function counts(lists: ListStore): Promise<Awaited<ReturnType<ListStore["counts"]>>> {
  const now = performance.now();
  const c = counted.get(lists);
  if (c && c.value.users >= BIG_NETWORK && now - c.at < COUNTS_TTL_MS) return c.value;
  const value = await lists.counts();
  counted.set(lists, { at: now, value });
  return value;
}

/** The LUSERS replies (251, 252, 254, 255, 265, 266). */
export async function sendLusers(s: IrcSession): Promise<void> {
  const { users, invisible, channels } = await counts(s.ctx.lists);
  s.replyText(
    N.RPL_LUSERCLIENT,
    `There are ${users - invisible} users and ${invisible} invisible on 1 servers`,
  );
  s.replyText(N.RPL_LUSEROP, "0", "operator(s) online");
  s.replyText(N.RPL_LUSERCHANNELS, String(channels), "channels formed");
  s.replyText(N.RPL_LUSERME, `I have ${users} clients and 0 servers`);
  s.replyText(N.RPL_LOCALUSERS, `Current local users: ${users}`);
  s.replyText(N.RPL_GLOBALUSERS, `Current global users: ${users}`);
}

/** A user has registered: its watchers are told, and the guard looks at its nickname. */
export async function afterRegistration(s: IrcSession): Promise<void> {
  s.ctx.hub.presence.online(s.source);
  s.ctx.publish({ t: "online", source: s.source, origin: s.id });
  await guardNick(s);
}

/** `s` joined `channel`: its access gives it a mode, and away-notify members learn it is away. */
export async function afterJoin(s: IrcSession, channel: string): Promise<void> {
  await accessOnJoin(s, channel);
  if (s.away) {
    notifyCompanions(s, formatMessage(s.source, "AWAY", [s.away], { trailing: true }), {
      cap: "away-notify",
      channels: [fold(channel)],
    });
  }
}

/** A user was renamed (its watchers were told by the hub): WHOWAS keeps the old name, the guard looks. */
export async function afterNickChange(s: IrcSession, oldNick: string): Promise<void> {
  await rememberNick(s, oldNick);
  await guardNick(s);
}

/** Keeps a WHOWAS entry of `nick` as `s` used it (failures are logged, never fatal). */
export async function rememberNick(s: IrcSession, nick = s.nick): Promise<void> {
  try {
    await s.ctx.lists.addWhowas({
      nick,
      user: s.user,
      host: s.host,
      realname: s.realname,
      account: s.account,
      at: Date.now(),
    });
  } catch (err) {
    logger().warn("chat: cannot keep the WHOWAS entry of {nick}: {err}", { nick, err: String(err) });
  }
}

async function whowas(s: IrcSession, nick: string, count: number): Promise<void> {
  const entries = await s.ctx.lists.whowas(nick, count > 0 ? Math.min(count, 8) : 8);
  if (entries.length === 0) s.replyText(N.ERR_WASNOSUCHNICK, nick, "There was no such nickname");
  for (const e of entries) {
    s.replyText(N.RPL_WHOWASUSER, e.nick, e.user, e.host, "*", e.realname);
    s.replyText(N.RPL_WHOISSERVER, e.nick, s.ctx.cfg.serverName, new Date(e.at).toUTCString());
    if (e.account) s.replyText(N.RPL_WHOISACCOUNT, e.nick, e.account, "was logged in as");
  }
  s.replyText(N.RPL_ENDOFWHOWAS, nick, "End of WHOWAS");
}

async function setname(s: IrcSession, realname: string): Promise<void> {
  if (realname === "" || realname.length > 390) {
    s.conn.send(
      formatMessage(s.ctx.cfg.serverName, "FAIL", ["SETNAME", "INVALID_REALNAME", "Realname is not valid"], {
        trailing: true,
      }),
    );
    return;
  }
  s.realname = realname;
  await s.ctx.accounts.store.setRealname(s.nick, realname);
  notifyCompanions(s, formatMessage(s.source, "SETNAME", [realname], { trailing: true }), {
    cap: "setname",
    self: true,
  });
}

/** LUSERS, WHOWAS and SETNAME. */
export const PRESENCE_COMMANDS: Record<string, Command> = {
  SETNAME: { min: 1, run: (s, m) => setname(s, m.params[0]!) },
  LUSERS: { min: 0, run: (s) => sendLusers(s) },
  WHOWAS: {
    min: 0,
    run: (s, m) => {
      const nick = m.params[0]?.split(",")[0];
      if (!nick) return s.replyText(N.ERR_NONICKNAMEGIVEN, "No nickname given");
      return whowas(s, nick, Number(m.params[1] ?? 0) || 0);
    },
  },
};
