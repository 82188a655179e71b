/**
 * Queries about users, answered from the store (so they see users on every
 * worker and host): WHO (with IRCv3 WHOX: `WHO mask %fields[,token]`, 354),
 * WHOIS (with the account, 330, and bots, 335), ISON, USERHOST.
 * @module
 */
import type { ChatUser, Member } from "./chat_store.ts";
import { fold, isChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { prefixOf } from "./member_view.ts";

/** What WHO asks for: the classic 352 reply, or IRCv3 WHOX fields (`%fields[,token]`). */
interface WhoAsk {
  readonly whox: ReadonlySet<string> | null;
  readonly token: string;
}

/** WHOX fields in the order they are sent, whatever order they were asked in. */
const WHOX_ORDER = "tcuihsnfdlaor";

function parseWho(options: string | undefined): WhoAsk {
  if (!options?.startsWith("%")) return { whox: null, token: "" };
  const [fields = "", token = ""] = options.slice(1).split(",", 2);
  return { whox: new Set(fields), token: /^\d{1,3}$/.test(token) ? token : "0" };
}

function whoReply(s: IrcSession, ask: WhoAsk, channel: string, u: ChatUser, m?: Member): void {
  const flags = (u.away ? "G" : "H") + (u.modes.includes("B") ? "B" : "") +
    prefixOf(m, s.caps.has("multi-prefix"));
  const server = s.ctx.cfg.serverName;
  if (!ask.whox) {
    return s.replyText(N.RPL_WHOREPLY, channel, u.user, u.host, server, u.nick, flags, `0 ${u.realname}`);
  }
  const value: Record<string, string> = {
    t: ask.token,
    c: channel,
    u: u.user,
    i: u.host,
    h: u.host,
    s: server,
    n: u.nick,
    f: flags,
    d: "0",
    l: "0",
    a: u.account || "0",
    o: "n/a",
    r: u.realname,
  };
  const params = [...WHOX_ORDER].filter((f) => ask.whox!.has(f)).map((f) => value[f]!);
  if (ask.whox.has("r")) s.replyText(N.RPL_WHOSPCRPL, ...params);
  else s.reply(N.RPL_WHOSPCRPL, ...params);
}

/** Most users a WHO mask lists. */
const WHO_MAX = 500;

async function who(s: IrcSession, mask: string, options: string | undefined): Promise<void> {
  const { store, lists } = s.ctx;
  const ask = parseWho(options);
  if (isChannel(mask)) {
    const info = await store.channel(mask);
    // A secret channel's members are shown to its members only.
    if (info && (!info.modes.includes("s") || s.joined.has(fold(mask)))) {
      for (const { user, member } of await lists.channelUsers(mask)) {
        whoReply(s, ask, info.name, user, member);
      }
    }
  } else if (/[*?]/.test(mask) || mask === "0" || mask === "") {
    const glob = mask === "0" || mask === "" ? "*" : mask;
    for (const u of await lists.usersMatching(glob, WHO_MAX)) {
      // Invisible users (+i) show to a mask only when they share a channel with the asker.
      if (u.modes.includes("i") && fold(u.nick) !== fold(s.nick)) {
        const theirs = await store.channelsOf(u.nick);
        if (!theirs.some((c) => s.joined.has(fold(c)))) continue;
      }
      whoReply(s, ask, "*", u);
    }
  } else {
    const u = await store.user(mask);
    if (u) whoReply(s, ask, "*", u);
  }
  s.replyText(N.RPL_ENDOFWHO, mask || "*", "End of WHO list");
}

async function whois(s: IrcSession, nick: string): Promise<void> {
  const { store, cfg } = s.ctx;
  const u = await store.user(nick);
  if (!u) {
    s.replyText(N.ERR_NOSUCHNICK, nick, "No such nick/channel");
    return s.replyText(N.RPL_ENDOFWHOIS, nick, "End of /WHOIS list");
  }
  s.replyText(N.RPL_WHOISUSER, u.nick, u.user, u.host, "*", u.realname);
  const channels = await store.channelsOf(u.nick);
  const shown: string[] = [];
  for (const c of channels) {
    const info = await store.channel(c);
    if (info?.modes.includes("s") && !s.joined.has(fold(c))) continue; // secret: only members see it
    const m = (await store.members(c)).find((x) => fold(x.nick) === fold(u.nick));
    shown.push(prefixOf(m, s.caps.has("multi-prefix")) + c);
  }
  if (shown.length > 0) s.replyText(N.RPL_WHOISCHANNELS, u.nick, shown.join(" "));
  s.replyText(N.RPL_WHOISSERVER, u.nick, cfg.serverName, `osps worker (${u.owner.split("/")[0]})`);
  if (u.account) s.replyText(N.RPL_WHOISACCOUNT, u.nick, u.account, "is logged in as");
  if (u.modes.includes("B")) s.replyText(N.RPL_WHOISBOT, u.nick, `is a bot on ${cfg.network}`);
  if (u.away) s.replyText(N.RPL_AWAY, u.nick, u.away);
  s.replyText(
    N.RPL_WHOISIDLE,
    u.nick,
    "0",
    String(Math.floor(u.signonAt / 1000)),
    "seconds idle, signon time",
  );
  s.replyText(N.RPL_ENDOFWHOIS, u.nick, "End of /WHOIS list");
}

/** Query commands, by name. */
export const QUERY_COMMANDS: Record<string, Command> = {
  WHO: { min: 0, run: (s, m) => who(s, m.params[0] ?? "", m.params[1]) },
  WHOIS: {
    min: 1,
    // WHOIS [server] nick[,nick]: the last parameter names the users; one is answered (TARGMAX WHOIS:1).
    run: (s, m) => whois(s, m.params[m.params.length - 1]!.split(",")[0]!),
  },
  ISON: {
    min: 1,
    run: async (s, m) => {
      const present: string[] = [];
      for (const nick of m.params.join(" ").split(" ").filter((n) => n !== "")) {
        const u = await s.ctx.store.user(nick);
        if (u) present.push(u.nick);
      }
      s.replyText(N.RPL_ISON, present.join(" "));
    },
  },
  USERHOST: {
    min: 1,
    run: async (s, m) => {
      const out: string[] = [];
      for (const nick of m.params.slice(0, 5)) {
        const u = await s.ctx.store.user(nick);
        if (u) out.push(`${u.nick}=${u.away ? "-" : "+"}${u.user}@${u.host}`);
      }
      s.replyText(N.RPL_USERHOST, out.join(" "));
    },
  },
};
