/**
 * {@link ListStore} on the chat's SQLite database (the connection of
 * `SqliteStore`, tables of `account_schema.ts`).
 * @module
 */
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
import type { SqliteDb } from "./sqlite_db.ts";

/** SQLite implementation of {@link ListStore}. */
export class SqliteLists implements ListStore {
  readonly #db: SqliteDb;

  constructor(db: SqliteDb) {
    this.#db = db;
  }

  bans(channel: string): Promise<Ban[]> {
    return this.#db.retry(() => {
      const rows = this.#db.all("SELECT * FROM bans WHERE channel = ? ORDER BY set_at, mask", fold(channel));
      return rows.map((r) => ({
        mask: String(r["mask"]),
        setBy: String(r["set_by"]),
        setAt: Number(r["set_at"]),
      }));
    });
  }

  addBan(channel: string, ban: Ban): Promise<boolean> {
    return this.#db.retry(() => {
      const n = this.#db.run(
        "INSERT INTO bans(channel, mask, set_by, set_at) SELECT ?, ?, ?, ? " +
          "WHERE (SELECT count(*) FROM bans WHERE channel = ?) < ? ON CONFLICT(channel, mask) DO NOTHING",
        fold(channel),
        ban.mask,
        ban.setBy,
        ban.setAt,
        fold(channel),
        MAX_BANS,
      );
      return n === 1;
    });
  }

  removeBan(channel: string, mask: string): Promise<boolean> {
    return this.#db.retry(() => {
      return this.#db.run("DELETE FROM bans WHERE channel = ? AND mask = ?", fold(channel), mask) === 1;
    });
  }

  invite(channel: string, nick: string): Promise<void> {
    return this.#db.retry(() => {
      this.#db.run(
        "INSERT INTO invites(channel, nick, at) VALUES (?, ?, ?) ON CONFLICT(channel, nick) DO UPDATE SET at = excluded.at",
        fold(channel),
        fold(nick),
        Date.now(),
      );
    });
  }

  invitesOf(nick: string): Promise<string[]> {
    return this.#db.retry(() => {
      const rows = this.#db.all(
        "SELECT c.name FROM invites i JOIN channels c ON c.folded = i.channel WHERE i.nick = ? ORDER BY c.name",
        fold(nick),
      );
      return rows.map((r) => String(r["name"]));
    });
  }

  takeInvite(channel: string, nick: string, since: number): Promise<boolean> {
    return this.#db.retry(() => {
      const r = this.#db.get(
        "DELETE FROM invites WHERE channel = ? AND nick = ? RETURNING at",
        fold(channel),
        fold(nick),
      );
      return r !== undefined && Number(r["at"]) >= since;
    });
  }

  addWhowas(e: WhowasEntry): Promise<void> {
    return this.#db.retry(() => {
      const st = this.#db;
      st.tx(() => {
        const f = fold(e.nick);
        st.run(
          'INSERT INTO whowas(folded, nick, "user", host, realname, account, at) VALUES (?, ?, ?, ?, ?, ?, ?)',
          f,
          e.nick,
          e.user,
          e.host,
          e.realname,
          e.account,
          e.at,
        );
        st.run(
          "DELETE FROM whowas WHERE folded = ? AND at < " +
            "(SELECT at FROM whowas WHERE folded = ? ORDER BY at DESC LIMIT 1 OFFSET ?)",
          f,
          f,
          WHOWAS_PER_NICK - 1,
        );
      });
    });
  }

  whowas(nick: string, limit: number): Promise<WhowasEntry[]> {
    return this.#db.retry(() => {
      const rows = this.#db.all(
        "SELECT * FROM whowas WHERE folded = ? ORDER BY at DESC LIMIT ?",
        fold(nick),
        limit,
      );
      return rows.map(whowasFrom);
    });
  }

  channelUsers(channel: string): Promise<Array<{ user: ChatUser; member: Member }>> {
    return this.#db.retry(() => {
      const rows = this.#db.all(
        "SELECT u.*, m.op FROM members m JOIN users u ON u.folded = m.nick WHERE m.channel = ? ORDER BY u.nick",
        fold(channel),
      );
      return rows.map((r) => ({ user: userFrom(r), member: memberFrom(r) }));
    });
  }

  usersMatching(mask: string, limit: number): Promise<ChatUser[]> {
    return this.#db.retry(() => {
      const rows = this.#db.all(
        "SELECT * FROM users WHERE folded LIKE ? ESCAPE '\\' ORDER BY folded LIMIT ?",
        likePattern(fold(mask)),
        limit,
      );
      return rows.map(userFrom);
    });
  }

  counts(): Promise<{ users: number; invisible: number; channels: number }> {
    return this.#db.retry(() => {
      const r = this.#db.get(
        "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM users WHERE modes LIKE '%i%') AS invisible, " +
          "(SELECT count(*) FROM channels c WHERE EXISTS (SELECT 1 FROM members m WHERE m.channel = c.folded)) AS channels",
      )!;
      return {
        users: Number(r["users"]),
        invisible: Number(r["invisible"]),
        channels: Number(r["channels"]),
      };
    });
  }
}
