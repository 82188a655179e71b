/**
 * Queries about users, answered from the store (so they see users on every
 * worker and host): WHO (with IRCv3 WHOX: `WHO mask %fields[,token]`, 354;
 * a channel's members from the worker's replica, a slice at a time), WHOIS
 * (with the account, 330, and bots, 335), ISON, USERHOST, and STATS.
 * @module
 */
import { setImmediate } from "node:timers";
import type { ChatUser } from "./chat_store.ts";
import { prefixSigns } from "./channel_modes.ts";
import { fold, isChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { hidden, seeChannel } from "./channel_access.ts";
import { LISTING_LOW_WATER } from "./cmd_list.ts";
import { memoryLine, memoryReport } from "../sys/memory.ts";

/** Users read from the store per slice of a channel's WHO. */
const WHO_SLICE = 200;

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

function whoReply(s: IrcSession, ask: WhoAsk, channel: string, u: ChatUser, bits = 0): void {
  const flags = (u.away ? "G" : "H") + (u.modes.includes("B") ? "B" : "") +
    prefixSigns(bits, s.caps.has("multi-prefix"));
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

/**
 * WHO #channel (members, a slice at a time, written as the client reads;
 * nothing for a secret channel seen from outside), WHO mask (invisible
 * users only to those sharing a channel), or WHO nick.
 */
async function who(s: IrcSession, mask: string, options: string | undefined): Promise<void> {
  const { store, lists } = s.ctx;
  const ask = parseWho(options);
  if (isChannel(mask)) {
    const seen = await seeChannel(s, mask);
    if (seen && !hidden(seen)) {
      const members = seen.replica ? [...seen.replica.members.values()] : await store.members(mask);
      for (let i = 0; i < members.length && !s.closing; i += WHO_SLICE) {
        const slice = members.slice(i, i + WHO_SLICE);
        const users = new Map((await store.users(slice.map((m) => m.nick))).map((u) => [fold(u.nick), u]));
        for (const m of slice) {
          const u = users.get(fold(m.nick));
          if (u) whoReply(s, ask, seen.info.name, u, m.bits);
        }
        await s.conn.drained(LISTING_LOW_WATER);
        await new Promise((r) => setImmediate(r));
      }
    }
  } else if (/[*?]/.test(mask) || mask === "0" || mask === "") {
    const glob = mask === "0" || mask === "" ? "*" : mask;
    for (const u of await lists.usersMatching(glob, WHO_MAX)) {
      // Invisible users (+i) show to a mask only when they share a channel with the asker.
      if (u.modes.includes("i") && fold(u.nick) !== fold(s.nick)) {
        const theirs = await store.memberships(u.nick);
        if (!theirs.some((c) => s.joined.has(fold(c.name)))) continue;
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
  const shown = (await store.memberships(u.nick))
    .filter((c) => !c.modes.includes("s") || s.joined.has(fold(c.name))) // secret: only members see it
    .map((c) => prefixSigns(c.bits, s.caps.has("multi-prefix")) + c.name);
  if (shown.length > 0) s.replyText(N.RPL_WHOISCHANNELS, u.nick, shown.join(" "));
  s.replyText(N.RPL_WHOISSERVER, u.nick, cfg.serverName, `osps worker (${u.owner})`);
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

/**
 * STATS: `u` (this worker's uptime, RPL_STATSUPTIME), `L` (osps: this
 * worker's event-loop delays since the last `STATS L`, RPL_STATSDEBUG) and
 * `z` (this worker's memory, as ircd-hybrid's `z` answers: resident, V8
 * heap used and committed, malloc, in KiB, RPL_STATSDEBUG); any other query
 * gets only the end of the report.
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
  } else if (query === "z") {
    const t = s.ctx.trims();
    s.replyText(
      N.RPL_STATSDEBUG,
      "z",
      `memory KiB ${memoryLine(memoryReport())} trims=${t.trims} trim_ms=${t.lastMs} trimmed=${t.lastKiB} ` +
        `(${s.ctx.owner})`,
    );
  }
  s.replyText(N.RPL_ENDOFSTATS, query || "*", "End of STATS report");
}

/** Query commands, by name. */
export const QUERY_COMMANDS: Record<string, Command> = {
  STATS: { min: 0, run: (s, m) => stats(s, m.params[0] ?? "") },
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
