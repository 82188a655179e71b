/**
 * Queries about users, answered from the store (so they see users on every
 * worker and host): WHO, WHOIS, ISON, USERHOST.
 * @module
 */
import { setImmediate } from "node:timers";
import type { ChatUser, Member } from "./chat_store.ts";
import { prefixSigns } from "./channel_modes.ts";
import { fold, isChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { hidden, seeChannel } from "./channel_access.ts";
import { LISTING_LOW_WATER } from "./cmd_list.ts";

/** Users read from the store per slice of a channel's WHO. */
const WHO_SLICE = 200;

function whoReply(s: IrcSession, channel: string, u: ChatUser, bits = 0): void {
  const flags = (u.away ? "G" : "H") + prefixSigns(bits, s.caps.has("multi-prefix"));
  s.replyText(
    N.RPL_WHOREPLY,
    channel,
    u.user,
    u.host,
    s.ctx.cfg.serverName,
    u.nick,
    flags,
    `0 ${u.realname}`,
  );
}

/**
 * WHO #channel (members, a slice at a time, written as the client reads;
 * nothing for a secret channel seen from outside) or WHO nick.
 */
async function who(s: IrcSession, mask: string): Promise<void> {
  const { store } = s.ctx;
  if (isChannel(mask)) {
    const seen = await seeChannel(s, mask);
    if (seen && !hidden(seen)) {
      const members: Member[] = seen.replica ? [...seen.replica.members.values()] : await store.members(mask);
      for (let i = 0; i < members.length && !s.closing; i += WHO_SLICE) {
        const slice = members.slice(i, i + WHO_SLICE);
        const users = new Map((await store.users(slice.map((m) => m.nick))).map((u) => [fold(u.nick), u]));
        for (const m of slice) {
          const u = users.get(fold(m.nick));
          if (u) whoReply(s, seen.info.name, u, m.bits);
        }
        await s.conn.drained(LISTING_LOW_WATER);
        await new Promise((r) => setImmediate(r));
      }
    }
  } else if (mask !== "" && mask !== "*" && mask !== "0") {
    const u = await store.user(mask);
    if (u) whoReply(s, "*", u);
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
  const shown = (await store.memberships(u.nick))
    .filter((c) => !c.modes.includes("s") || s.joined.has(fold(c.name))) // secret: only members see it
    .map((c) => prefixSigns(c.bits, s.caps.has("multi-prefix")) + c.name);
  if (shown.length > 0) s.replyText(N.RPL_WHOISCHANNELS, u.nick, shown.join(" "));
  s.replyText(N.RPL_WHOISSERVER, u.nick, cfg.serverName, `osps worker (${u.owner})`);
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

/**
 * STATS: `u` (this worker's uptime, RPL_STATSUPTIME) and `L` (osps: this
 * worker's event-loop delays since the last `STATS L`, RPL_STATSDEBUG);
 * any other query gets only the end of the report.
 */
function stats(s: IrcSession, query: string): void {
  if (query === "u") {
    const up = Math.floor((Date.now() - s.ctx.startedAt.getTime()) / 1000);
    const hms = [Math.floor(up / 3600) % 24, Math.floor(up / 60) % 60, up % 60].map((x) =>
      String(x).padStart(2, "0")
    );
    s.replyText(N.RPL_STATSUPTIME, `Server Up ${Math.floor(up / 86400)} days ${hms.join(":")}`);
  } else if (query === "L") {
    const l = s.ctx.lag();
    s.replyText(
      N.RPL_STATSDEBUG,
      "L",
      `event loop delay p50 ${l.p50} ms p99 ${l.p99} ms max ${l.max} ms over ${l.count} samples (${s.ctx.owner})`,
    );
  }
  s.replyText(N.RPL_ENDOFSTATS, query || "*", "End of STATS report");
}

/** Query commands, by name. */
export const QUERY_COMMANDS: Record<string, Command> = {
  STATS: { min: 0, run: (s, m) => stats(s, m.params[0] ?? "") },
  WHO: { min: 0, run: (s, m) => who(s, m.params[0] ?? "") },
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
