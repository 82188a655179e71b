/**
 * {@link ListStore} on the chat's SQLite database (the connection of
 * `SqliteStore`, tables of `account_schema.ts`).
 * @module
 */
import type { DatabaseSync } from "node:sqlite";
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
import { Statements } from "./sqlite_statements.ts";

/** SQLite implementation of {@link ListStore}. */
export class SqliteLists implements ListStore {
  readonly #st: Statements;

  constructor(db: DatabaseSync) {
    this.#st = new Statements(db);
  }

  bans(channel: string): Promise<Ban[]> {
    const rows = this.#st.all("SELECT * FROM bans WHERE channel = ? ORDER BY set_at, mask", fold(channel));
    return Promise.resolve(
      rows.map((r) => ({ mask: String(r["mask"]), setBy: String(r["set_by"]), setAt: Number(r["set_at"]) })),
    );
  }

  addBan(channel: string, ban: Ban): Promise<boolean> {
    const n = this.#st.run(
      "INSERT INTO bans(channel, mask, set_by, set_at) SELECT ?, ?, ?, ? " +
        "WHERE (SELECT count(*) FROM bans WHERE channel = ?) < ? ON CONFLICT(channel, mask) DO NOTHING",
      fold(channel),
      ban.mask,
      ban.setBy,
      ban.setAt,
      fold(channel),
      MAX_BANS,
    );
    return Promise.resolve(n === 1);
  }

  removeBan(channel: string, mask: string): Promise<boolean> {
    return Promise.resolve(
      this.#st.run("DELETE FROM bans WHERE channel = ? AND mask = ?", fold(channel), mask) === 1,
    );
  }

  invite(channel: string, nick: string): Promise<void> {
    this.#st.run(
      "INSERT INTO invites(channel, nick, at) VALUES (?, ?, ?) ON CONFLICT(channel, nick) DO UPDATE SET at = excluded.at",
      fold(channel),
      fold(nick),
      Date.now(),
    );
    return Promise.resolve();
  }

  invitesOf(nick: string): Promise<string[]> {
    const rows = this.#st.all(
      "SELECT c.name FROM invites i JOIN channels c ON c.folded = i.channel WHERE i.nick = ? ORDER BY c.name",
      fold(nick),
    );
    return Promise.resolve(rows.map((r) => String(r["name"])));
  }

  takeInvite(channel: string, nick: string, since: number): Promise<boolean> {
    const r = this.#st.get(
      "DELETE FROM invites WHERE channel = ? AND nick = ? RETURNING at",
      fold(channel),
      fold(nick),
    );
    return Promise.resolve(r !== undefined && Number(r["at"]) >= since);
  }

  addWhowas(e: WhowasEntry): Promise<void> {
    const st = this.#st;
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
    return Promise.resolve();
  }

  whowas(nick: string, limit: number): Promise<WhowasEntry[]> {
    const rows = this.#st.all(
      "SELECT * FROM whowas WHERE folded = ? ORDER BY at DESC LIMIT ?",
      fold(nick),
      limit,
    );
    return Promise.resolve(rows.map(whowasFrom));
  }

  channelUsers(channel: string): Promise<Array<{ user: ChatUser; member: Member }>> {
    const rows = this.#st.all(
      "SELECT u.*, m.op FROM members m JOIN users u ON u.folded = m.nick WHERE m.channel = ? ORDER BY u.nick",
      fold(channel),
    );
    return Promise.resolve(rows.map((r) => ({ user: userFrom(r), member: memberFrom(r) })));
  }

  usersMatching(mask: string, limit: number): Promise<ChatUser[]> {
    const rows = this.#st.all(
      "SELECT * FROM users WHERE folded LIKE ? ESCAPE '\\' ORDER BY folded LIMIT ?",
      likePattern(fold(mask)),
      limit,
    );
    return Promise.resolve(rows.map(userFrom));
  }

  counts(): Promise<{ users: number; invisible: number; channels: number }> {
    const r = this.#st.get(
      "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM users WHERE modes LIKE '%i%') AS invisible, " +
        "(SELECT count(*) FROM channels c WHERE EXISTS (SELECT 1 FROM members m WHERE m.channel = c.folded)) AS channels",
    )!;
    return Promise.resolve({
      users: Number(r["users"]),
      invisible: Number(r["invisible"]),
      channels: Number(r["channels"]),
    });
  }
}
