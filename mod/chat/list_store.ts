/**
 * The lists the IRC server keeps beside the chat state, as an interface:
 * channel ban lists (`+b`), pending invitations (`INVITE` to a `+i`
 * channel), the nicknames users left behind (`WHOWAS`), and the counts
 * `LUSERS` reports. Bans and invitations belong to their channel row: they go
 * when the channel goes (foreign keys, `ON DELETE CASCADE`). `sqlite_lists.ts`
 * and `postgres_lists.ts` implement it.
 * @module
 */

import type { ChatUser, Member } from "./chat_store.ts";

/** One ban. */
export interface Ban {
  readonly mask: string;
  /** `nick!user@host` of whoever set it. */
  readonly setBy: string;
  readonly setAt: number;
}

/** A nickname that was in use (WHOWAS). */
export interface WhowasEntry {
  readonly nick: string;
  readonly user: string;
  readonly host: string;
  readonly realname: string;
  readonly account: string;
  /** When the nickname was given up, ms since the epoch. */
  readonly at: number;
}

/** WHOWAS entries kept per nickname (older ones are pruned). */
export const WHOWAS_PER_NICK = 8;

/** Most bans one channel may hold (ISUPPORT MAXLIST). */
export const MAX_BANS = 100;

/** Ban lists, invitations, WHOWAS and counts. Every method may throw `StoreError`. */
export interface ListStore {
  bans(channel: string): Promise<Ban[]>;
  /** Adds a ban; false when the mask is there already or the list is full. */
  addBan(channel: string, ban: Ban): Promise<boolean>;
  /** Removes a ban; false when it was not there. */
  removeBan(channel: string, mask: string): Promise<boolean>;
  /** Records that `nick` was invited to `channel`. */
  invite(channel: string, nick: string): Promise<void>;
  /** Channels `nick` holds an invitation to (display names). */
  invitesOf(nick: string): Promise<string[]>;
  /** True when `nick` was invited to `channel` after `since` (ms); the invitation is used up. */
  takeInvite(channel: string, nick: string, since: number): Promise<boolean>;
  /** Remembers a nickname given up. */
  addWhowas(e: WhowasEntry): Promise<void>;
  /** Entries of a nickname, newest first. */
  whowas(nick: string, limit: number): Promise<WhowasEntry[]>;
  /** A channel's members with everything WHO shows of them, in one read. */
  channelUsers(channel: string): Promise<Array<{ user: ChatUser; member: Member }>>;
  /** Users whose nickname matches a glob (`*`, `?`; rfc1459 folding), at most `limit`. */
  usersMatching(mask: string, limit: number): Promise<ChatUser[]>;
  /** Users registered (of them invisible, +i) and channels with members, everywhere. */
  counts(): Promise<{ users: number; invisible: number; channels: number }>;
}

/** A `whowas` row. */
export function whowasFrom(r: Record<string, unknown>): WhowasEntry {
  return {
    nick: String(r["nick"]),
    user: String(r["user"]),
    host: String(r["host"]),
    realname: String(r["realname"]),
    account: String(r["account"]),
    at: Number(r["at"]),
  };
}

/** A glob (`*`, `?`) as a SQL LIKE pattern with `\\` as its escape, on folded names. */
export function likePattern(glob: string): string {
  return glob.replace(/[\\%_]/g, (c) => `\\${c}`).replace(/\*/g, "%").replace(/\?/g, "_");
}
