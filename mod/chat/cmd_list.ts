/**
 * Channel listings: NAMES (from the worker's replica for members, the store
 * for others) and LIST (ELIST `M`, `N`, `U`: masks, negated masks, user
 * counts), which walks the channels a page at a time in name order from
 * the store's index and writes as the client reads: never every channel in
 * memory at once, and never more than a page between two turns of the
 * event loop.
 * @module
 */
import type { ChannelInfo, Member } from "./chat_store.ts";
import { prefixSigns } from "./channel_modes.ts";
import { byteLength, fold, NICKLEN } from "./irc_message.ts";
import { ChannelReplica } from "./channel_replica.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { hidden, seeChannel } from "./channel_access.ts";
import { setImmediate } from "node:timers";

/** Channels per LIST page read from the store. */
const LIST_PAGE = 200;
/** Output a listing lets queue before it waits for the client to read. */
export const LISTING_LOW_WATER = 32 * 1024;

/**
 * RPL_NAMREPLY lines (as many as 512-byte lines need; "@" marks a secret
 * channel), then RPL_ENDOFNAMES. Prefixes: the highest, or all with
 * `multi-prefix`; `nick!user@host` with `userhost-in-names`. A member's list
 * comes from its replica's cached chunks; others' is made here.
 */
export function sendNames(
  s: IrcSession,
  info: ChannelInfo,
  members: Iterable<Member> | ChannelReplica,
): void {
  const symbol = info.modes.includes("s") ? "@" : "=";
  // Room for the longest nickname the line may be addressed to: chunks fit every recipient.
  const room = 510 -
    byteLength(`:${s.ctx.cfg.serverName} ${N.RPL_NAMREPLY} ${"x".repeat(NICKLEN)} = ${info.name} :`);
  const all = s.caps.has("multi-prefix"), full = s.caps.has("userhost-in-names");
  const chunks = members instanceof ChannelReplica
    ? members.names(all, full, room)
    : chunk(members, all, full, room);
  for (const line of chunks) s.replyText(N.RPL_NAMREPLY, symbol, info.name, line);
  s.replyText(N.RPL_ENDOFNAMES, info.name, "End of /NAMES list");
}

function chunk(members: Iterable<Member>, all: boolean, full: boolean, room: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const m of members) {
    const name = prefixSigns(m.bits, all) + (full ? `${m.nick}!${m.user}@${m.host}` : m.nick);
    if (line !== "" && line.length + 1 + name.length > room) out.push(line), line = "";
    line = line === "" ? name : `${line} ${name}`;
  }
  if (line !== "") out.push(line);
  return out;
}

async function names(s: IrcSession, name: string | undefined): Promise<void> {
  if (name === undefined) return s.replyText(N.RPL_ENDOFNAMES, "*", "End of /NAMES list");
  const seen = await seeChannel(s, name);
  if (!seen || hidden(seen)) return s.replyText(N.RPL_ENDOFNAMES, name, "End of /NAMES list");
  sendNames(s, seen.info, seen.replica ?? await s.ctx.store.members(name));
}

/** A glob (`*`, `?`) as a regular expression on folded names. */
function glob(mask: string): RegExp {
  const body = fold(mask).replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`);
}

/** What LIST's argument asks for (ELIST M, N, U; plain names). */
interface ListFilter {
  names: string[];
  masks: RegExp[];
  notMasks: RegExp[];
  min: number;
  max: number;
}

function listFilter(arg: string | undefined): ListFilter {
  const f: ListFilter = { names: [], masks: [], notMasks: [], min: 0, max: Number.MAX_SAFE_INTEGER };
  for (const item of (arg ?? "").split(",").filter((x) => x !== "")) {
    if (/^>\d+$/.test(item)) f.min = Number(item.slice(1));
    else if (/^<\d+$/.test(item)) f.max = Number(item.slice(1));
    else if (item.startsWith("!")) f.notMasks.push(glob(item.slice(1)));
    else if (/[*?]/.test(item)) f.masks.push(glob(item));
    else f.names.push(item);
  }
  return f;
}

async function list(s: IrcSession, arg: string | undefined): Promise<void> {
  const f = listFilter(arg);
  s.replyText(N.RPL_LISTSTART, "Channel", "Users  Name");
  const show = (info: ChannelInfo) => {
    if (info.users <= f.min || info.users >= f.max) return;
    if (info.modes.includes("s") && !s.joined.has(fold(info.name))) return; // secret: only members see it
    const folded = fold(info.name);
    if (f.masks.length > 0 && !f.masks.some((m) => m.test(folded))) return;
    if (f.notMasks.some((m) => m.test(folded))) return;
    s.replyText(N.RPL_LIST, info.name, String(info.users), info.topic);
  };
  if (f.names.length > 0) {
    for (const name of f.names) {
      const info = await s.ctx.store.channel(name);
      if (info) show(info);
    }
  } else {
    for (let after = "";;) {
      const page = await s.ctx.store.listChannels({
        after,
        limit: LIST_PAGE,
        minUsers: f.min,
        maxUsers: f.max,
      });
      for (const info of page) show(info);
      if (page.length < LIST_PAGE || s.closing) break;
      after = fold(page[page.length - 1]!.name);
      await s.conn.drained(LISTING_LOW_WATER);
      await new Promise((r) => setImmediate(r));
    }
  }
  s.replyText(N.RPL_LISTEND, "End of /LIST");
}

/** Listing commands, by name. */
export const LIST_COMMANDS: Record<string, Command> = {
  NAMES: { min: 0, run: (s, m) => names(s, m.params[0]?.split(",")[0]) },
  LIST: { min: 0, run: (s, m) => list(s, m.params[0]) },
};
