/**
 * {@link ListStore} on the chat's PostgreSQL database (the pool of
 * `PostgresStore`, tables of `account_schema.ts`).
 * @module
 */
import type postgres from "postgres";
import { fold } from "./irc_message.ts";
import type { ChatUser, Member } from "./chat_store.ts";
import { memberFrom, userFrom } from "./store_schema.ts";
import {
  type Ban,
  likePattern,
  type ListStore,
  MAX_BANS,
  WHOWAS_PER_NICK,
  type WhowasEntry,
  whowasFrom,
} from "./list_store.ts";

/** PostgreSQL implementation of {@link ListStore}. */
export class PostgresLists implements ListStore {
  readonly #sql: postgres.Sql;

  constructor(sql: postgres.Sql) {
    this.#sql = sql;
  }

  async bans(channel: string): Promise<Ban[]> {
    const rows = await this.#sql`SELECT * FROM bans WHERE channel = ${fold(channel)} ORDER BY set_at, mask`;
    return rows.map((r) => ({
      mask: String(r["mask"]),
      setBy: String(r["set_by"]),
      setAt: Number(r["set_at"]),
    }));
  }

  async addBan(channel: string, ban: Ban): Promise<boolean> {
    const c = fold(channel);
    const r = await this.#sql`INSERT INTO bans (channel, mask, set_by, set_at)
      SELECT ${c}, ${ban.mask}, ${ban.setBy}, ${ban.setAt}
      WHERE (SELECT count(*) FROM bans WHERE channel = ${c}) < ${MAX_BANS}
      ON CONFLICT (channel, mask) DO NOTHING`;
    return r.count === 1;
  }

  async removeBan(channel: string, mask: string): Promise<boolean> {
    return (await this.#sql`DELETE FROM bans WHERE channel = ${fold(channel)} AND mask = ${mask}`).count ===
      1;
  }

  async invite(channel: string, nick: string): Promise<void> {
    await this.#sql`INSERT INTO invites (channel, nick, at) VALUES (${fold(channel)}, ${
      fold(nick)
    }, ${Date.now()})
      ON CONFLICT (channel, nick) DO UPDATE SET at = EXCLUDED.at`;
  }

  async invitesOf(nick: string): Promise<string[]> {
    const rows = await this.#sql`SELECT c.name FROM invites i JOIN channels c ON c.folded = i.channel
      WHERE i.nick = ${fold(nick)} ORDER BY c.name`;
    return rows.map((r) => String(r["name"]));
  }

  async takeInvite(channel: string, nick: string, since: number): Promise<boolean> {
    const [r] = await this.#sql`DELETE FROM invites WHERE channel = ${fold(channel)} AND nick = ${fold(nick)}
      RETURNING at`;
    return r !== undefined && Number(r["at"]) >= since;
  }

  async addWhowas(e: WhowasEntry): Promise<void> {
    const f = fold(e.nick);
    await this.#sql.begin(async (tx) => {
      await tx`INSERT INTO whowas (folded, nick, "user", host, realname, account, at)
        VALUES (${f}, ${e.nick}, ${e.user}, ${e.host}, ${e.realname}, ${e.account}, ${e.at})`;
      await tx`DELETE FROM whowas WHERE folded = ${f} AND at <
        (SELECT at FROM whowas WHERE folded = ${f} ORDER BY at DESC LIMIT 1 OFFSET ${WHOWAS_PER_NICK - 1})`;
    });
  }

  async whowas(nick: string, limit: number): Promise<WhowasEntry[]> {
    const rows = await this.#sql`SELECT * FROM whowas WHERE folded = ${
      fold(nick)
    } ORDER BY at DESC LIMIT ${limit}`;
    return rows.map(whowasFrom);
  }

  async channelUsers(channel: string): Promise<Array<{ user: ChatUser; member: Member }>> {
    const rows = await this.#sql`SELECT u.*, m.op FROM members m JOIN users u ON u.folded = m.nick
      WHERE m.channel = ${fold(channel)} ORDER BY u.nick`;
    return rows.map((r) => ({ user: userFrom(r), member: memberFrom(r) }));
  }

  async usersMatching(mask: string, limit: number): Promise<ChatUser[]> {
    const rows = await this.#sql`SELECT * FROM users WHERE folded LIKE ${likePattern(fold(mask))} ESCAPE '\\'
      ORDER BY folded LIMIT ${limit}`;
    return rows.map(userFrom);
  }

  async counts(): Promise<{ users: number; invisible: number; channels: number }> {
    const [r] = await this.#sql`SELECT (SELECT count(*) FROM users)::int AS users,
      (SELECT count(*) FROM users WHERE modes LIKE '%i%')::int AS invisible,
      (SELECT count(*) FROM channels c WHERE EXISTS (SELECT 1 FROM members m WHERE m.channel = c.folded))::int
        AS channels`;
    return {
      users: Number(r!["users"]),
      invisible: Number(r!["invisible"]),
      channels: Number(r!["channels"]),
    };
  }
}
