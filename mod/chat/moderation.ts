/**
 * Who may join and who may speak: bans (`+b nick!user@host` masks with `*`
 * and `?`), invite-only channels (`+i`, passed with an INVITE, which also
 * passes a ban, once), moderated channels (`+m`: only voiced members and
 * operators speak). Banned members may stay but not speak, unless voiced.
 *
 * Keeping the message path cheap: most channels are neither moderated nor
 * banning anyone, and a member's message to them needs no lookup. Each
 * worker remembers which channels it has seen with `+m` or a ban (from the
 * MODE events its hub delivers, in the channel's order, and from the state
 * read when a local user joins); only for those does a message pay for
 * reading the channel's modes, members and bans. A channel stays flagged
 * after `-m`: that costs a lookup, never a wrong answer.
 * @module
 */
import type { ChannelEvent, ChannelInfo, Member } from "./chat_store.ts";
import { fold } from "./irc_message.ts";
import type { IrcSession } from "./irc_session.ts";
import type { Ban } from "./list_store.ts";
import { N } from "./numerics.ts";

/** An invitation is good for this long. */
export const INVITE_TTL_MS = 3600_000;

/**
 * A ban mask in its full form: `nick` → `nick!*@*`, `user@host` → `*!user@host`,
 * `nick!user` → `nick!user@*`.
 */
export function normalizeMask(mask: string): string {
  const bang = mask.indexOf("!"), at = mask.indexOf("@");
  if (bang < 0 && at < 0) return `${mask}!*@*`;
  if (bang < 0) return `*!${mask}`;
  if (at < 0) return `${mask}@*`;
  return mask;
}

/** True when `source` (`nick!user@host`) matches the glob `mask` (rfc1459 case folding). */
export function maskMatches(mask: string, source: string): boolean {
  const re = new RegExp(
    `^${fold(mask).replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`,
    "s",
  );
  return re.test(fold(source));
}

/** The ban matching `source`, if any. */
export function banOf(bans: readonly Ban[], source: string): Ban | undefined {
  return bans.find((b) => maskMatches(b.mask, source));
}

/** Which channels this worker must check before letting a member speak. */
export class Moderation {
  readonly #flagged = new Set<string>();

  /** A delivered channel event: a MODE that sets +m or adds a ban flags its channel. */
  observe(ev: ChannelEvent): void {
    if (ev.kind !== "MODE") return;
    let adding = true;
    for (const ch of ev.params[0] ?? "") {
      if (ch === "+" || ch === "-") adding = ch === "+";
      else if (adding && (ch === "m" || ch === "b")) this.#flagged.add(fold(ev.channel));
    }
  }

  /** What a local user's JOIN read: flags the channel when it is moderated or has bans. */
  note(info: ChannelInfo, bans: number): void {
    if (info.modes.includes("m") || bans > 0) this.#flagged.add(fold(info.name));
  }

  /** True when a message to `channel` might be refused. */
  flagged(channel: string): boolean {
    return this.#flagged.has(fold(channel));
  }
}

/**
 * Why `s` may not send to `info` (null: it may). `member` is its membership,
 * null when it is not in the channel.
 */
export async function speakRefusal(
  s: IrcSession,
  info: ChannelInfo,
  member: Member | null,
): Promise<string | null> {
  if (member?.op || member?.voice) return null;
  if (!member && info.modes.includes("n")) return "Cannot send to channel (no external messages)";
  if (info.modes.includes("m")) return "Cannot send to channel (+m)";
  if (banOf(await s.ctx.lists.bans(info.name), s.source)) return "Cannot send to channel (you're banned)";
  return null;
}

/**
 * True (after replying 404) when a member may not send to a channel it is
 * in. Free for channels this worker never saw moderated or banning.
 */
export async function memberMayNotSpeak(s: IrcSession, channel: string): Promise<boolean> {
  if (!s.ctx.moderation.flagged(channel)) return false;
  const info = await s.ctx.store.channel(channel);
  if (!info) return false;
  const me = (await s.ctx.store.members(channel)).find((m) => fold(m.nick) === fold(s.nick)) ?? null;
  const why = await speakRefusal(s, info, me);
  if (why) s.replyText(N.ERR_CANNOTSENDTOCHAN, info.name, why);
  return why !== null;
}

/**
 * Checks a JOIN against `+i` and bans (the key and limit are the store's);
 * replies 473/474 and returns false when refused. An invitation passes
 * both, once. Called with the channel's state, before the store's join.
 */
export async function mayJoin(s: IrcSession, info: ChannelInfo): Promise<boolean> {
  const bans = await s.ctx.lists.bans(info.name);
  s.ctx.moderation.note(info, bans.length);
  const inviteOnly = info.modes.includes("i");
  const banned = banOf(bans, s.source) !== undefined;
  if (!inviteOnly && !banned) return true;
  if (await s.ctx.lists.takeInvite(info.name, s.nick, Date.now() - INVITE_TTL_MS)) return true;
  if (s.account && (await s.ctx.accounts.store.accessOf(info.name, s.account))) return true; // on its access list
  if (inviteOnly) s.replyText(N.ERR_INVITEONLYCHAN, info.name, "Cannot join channel (+i)");
  else s.replyText(N.ERR_BANNEDFROMCHAN, info.name, "Cannot join channel (+b)");
  return false;
}
