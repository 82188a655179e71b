/**
 * Channel ban lists (`MODE #chan +b mask`, `-b mask`, `MODE #chan b` to
 * read): kept in the store beside the channel (`list_store.ts`), so that
 * every worker and host enforces the same list (`moderation.ts`), and a
 * registered channel keeps it across restarts. Masks are stored in their
 * full form (`nick!user@host`).
 * @module
 */
import type { ChannelInfo } from "./chat_store.ts";
import type { IrcSession } from "./irc_session.ts";
import { fold } from "./irc_message.ts";
import { MAX_BANS } from "./list_store.ts";
import { normalizeMask } from "./moderation.ts";
import { N } from "./numerics.ts";

/** RPL_BANLIST for each ban, then RPL_ENDOFBANLIST. */
export async function sendBanList(s: IrcSession, info: ChannelInfo): Promise<void> {
  for (const b of await s.ctx.lists.bans(info.name)) {
    s.reply(N.RPL_BANLIST, info.name, b.mask, b.setBy, String(Math.floor(b.setAt / 1000)));
  }
  s.replyText(N.RPL_ENDOFBANLIST, info.name, "End of channel ban list");
}

/**
 * Adds or removes a ban (the caller checked operator rights). Returns the
 * mask to show in the MODE line, or null when nothing changed (it was there
 * already, was not there, or the list is full: 478).
 */
export async function banListChange(
  s: IrcSession,
  info: ChannelInfo,
  mask: string,
  adding: boolean,
): Promise<string | null> {
  const full = normalizeMask(mask);
  if (full.length > 200 || /[\s,]/.test(full)) return null;
  const { lists } = s.ctx;
  // Masks compare under the case mapping: `-b bar!*@*` lifts `+b BAR!*@*`.
  const same = (await lists.bans(info.name)).find((b) => fold(b.mask) === fold(full));
  if (!adding) return same && (await lists.removeBan(info.name, same.mask)) ? same.mask : null;
  if (same) return null;
  if (await lists.addBan(info.name, { mask: full, setBy: s.source, setAt: Date.now() })) return full;
  if ((await lists.bans(info.name)).length >= MAX_BANS) {
    s.replyText(N.ERR_BANLISTFULL, info.name, full, "Channel ban list is full");
  }
  return null;
}
