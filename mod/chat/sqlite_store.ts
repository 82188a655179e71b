/**
 * {@link ChatStore} on SQLite (`node:sqlite`), for the workers of one host:
 * one database file in the data dir, WAL mode, every write in a `BEGIN
 * IMMEDIATE` transaction (one writer at a time across processes, waiting up
 * to `busy_timeout`). Durability: a committed transaction is in the WAL file
 * before the client is answered, so it survives a kill -9 of every process;
 * with `fsync` it is also synced to the disk at each commit (survives a
 * power cut), at a cost per message.
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { fold } from "./irc_message.ts";
import {
  type Appending,
  byChannel,
  type ChannelChange,
  type ChannelEvent,
  type ChannelInfo,
  type ChatStore,
  type ChatUser,
  type Departed,
  type EventFields,
  type HistoryQuery,
  type JoinRefusal,
  type Member,
  PREFIX_BITS,
  StoreError,
} from "./chat_store.ts";
import { channelFrom, eventFrom, memberFrom, SCHEMA, userFrom } from "./store_schema.ts";

type Row = Record<string, SQLInputValue>;

/** SQLite implementation of {@link ChatStore}. */
export class SqliteStore implements ChatStore {
  readonly kind = "sqlite";
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  /** The channel and number the next event of a reservation takes (inside a transaction). */
  #next: { name: string; seq: number } | null = null;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** The connection, for the tables kept beside the chat state (`sqlite_accounts.ts`, `sqlite_lists.ts`). */
  get db(): DatabaseSync {
    return this.#db;
  }

  /** Opens (creating) `path`, switches to WAL and migrates the schema to the current version. */
  static open(path: string, options: { fsync?: boolean } = {}): SqliteStore {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec("PRAGMA busy_timeout = 5000");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${options.fsync ? "FULL" : "NORMAL"}`);
      db.exec("PRAGMA foreign_keys = ON");
    } catch (err) {
      throw new StoreError(`cannot open the chat database ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const store = new SqliteStore(db);
    store.#migrate();
    return store;
  }

  #migrate(): void {
    const db = this.#db;
    this.#tx(() => {
      const at = Number((db.prepare("PRAGMA user_version").get() as Row)["user_version"]);
      if (at > SCHEMA.length) {
        throw new StoreError(
          `the chat database has schema version ${at}, newer than this osps (${SCHEMA.length})`,
        );
      }
      for (let v = at; v < SCHEMA.length; v++) db.exec(SCHEMA[v]!.sqlite);
      db.exec(`PRAGMA user_version = ${SCHEMA.length}`);
    });
  }

  /** Runs `fn` in a write transaction (taken at once: no upgrade deadlock between processes). */
  #tx<T>(fn: () => T): T {
    this.#run("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.#run("COMMIT");
      return out;
    } catch (err) {
      this.#run("ROLLBACK");
      throw err;
    }
  }

  /** Statements are prepared once each (preparing costs more than running most of them). */
  #prepared(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) this.#statements.set(sql, st = this.#db.prepare(sql));
    return st;
  }

  #get(sql: string, ...args: SQLInputValue[]): Row | undefined {
    return this.#prepared(sql).get(...args) as Row | undefined;
  }

  #all(sql: string, ...args: SQLInputValue[]): Row[] {
    return this.#prepared(sql).all(...args) as Row[];
  }

  #run(sql: string, ...args: SQLInputValue[]): number {
    return Number(this.#prepared(sql).run(...args).changes);
  }

  addOwner(owner: string, instance: string, slot: number): Promise<void> {
    this.#run(
      "INSERT OR REPLACE INTO owners(owner, instance, slot, seen_at) VALUES (?, ?, ?, ?)",
      owner,
      instance,
      slot,
      Date.now(),
    );
    return Promise.resolve();
  }

  touchOwner(owner: string): Promise<void> {
    this.#run("UPDATE owners SET seen_at = ? WHERE owner = ?", Date.now(), owner);
    return Promise.resolve();
  }

  deadOwners(instance: string, slot: number, except: string, staleMs: number): Promise<string[]> {
    const rows = this.#all(
      "SELECT owner FROM owners WHERE owner <> ? AND ((instance = ? AND slot = ?) OR seen_at < ?)",
      except,
      instance,
      slot,
      Date.now() - staleMs,
    );
    return Promise.resolve(rows.map((r) => String(r["owner"])));
  }

  reapOwner(owner: string): Promise<Departed[]> {
    return Promise.resolve(this.#tx(() => {
      const users = this.#all("SELECT folded FROM users WHERE owner = ?", owner);
      const out = users.map((u) => this.#depart(String(u["folded"]))!).filter((d) => d !== null);
      this.#run("DELETE FROM owners WHERE owner = ?", owner);
      return out;
    }));
  }

  /** Removes a user from every channel and frees its nick (inside a transaction). */
  #depart(folded: string): Departed | null {
    const u = this.#get('SELECT nick, "user", host FROM users WHERE folded = ?', folded);
    if (!u) return null;
    const channels = this.#all(
      "SELECT c.name FROM members m JOIN channels c ON c.folded = m.channel WHERE m.nick = ? ORDER BY c.name",
      folded,
    ).map((r) => String(r["name"]));
    this.#run("DELETE FROM members WHERE nick = ?", folded);
    this.#run("DELETE FROM users WHERE folded = ?", folded);
    return { nick: String(u["nick"]), source: `${u["nick"]}!${u["user"]}@${u["host"]}`, channels };
  }

  claimNick(u: ChatUser): Promise<boolean> {
    const n = this.#run(
      'INSERT INTO users(folded, nick, "user", host, realname, away, modes, owner, signon_at, account) ' +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(folded) DO NOTHING",
      fold(u.nick),
      u.nick,
      u.user,
      u.host,
      u.realname,
      u.away,
      u.modes,
      u.owner,
      u.signonAt,
      u.account ?? "",
    );
    return Promise.resolve(n === 1);
  }

  renameNick(from: string, to: string): Promise<readonly string[] | null> {
    return Promise.resolve(this.#tx(() => {
      const [f, t] = [fold(from), fold(to)];
      if (f !== t && this.#get("SELECT 1 FROM users WHERE folded = ?", t)) return null;
      this.#run("UPDATE users SET folded = ?, nick = ? WHERE folded = ?", t, to, f);
      this.#run("UPDATE members SET nick = ? WHERE nick = ?", t, f);
      return this.#all(
        "SELECT c.name FROM members m JOIN channels c ON c.folded = m.channel WHERE m.nick = ?",
        t,
      ).map((r) => String(r["name"]));
    }));
  }

  releaseNick(nick: string): Promise<Departed | null> {
    return Promise.resolve(this.#tx(() => this.#depart(fold(nick))));
  }

  user(nick: string): Promise<ChatUser | null> {
    const r = this.#get("SELECT * FROM users WHERE folded = ?", fold(nick));
    return Promise.resolve(r ? userFrom(r) : null);
  }

  setAway(nick: string, away: string): Promise<void> {
    this.#run("UPDATE users SET away = ? WHERE folded = ?", away, fold(nick));
    return Promise.resolve();
  }

  setUserModes(nick: string, modes: string): Promise<void> {
    this.#run("UPDATE users SET modes = ? WHERE folded = ?", modes, fold(nick));
    return Promise.resolve();
  }

  join(
    channel: string,
    source: string,
    nick: string,
    key: string,
    createModes: string,
    fields: Pick<EventFields, "params" | "account"> = { params: [] },
  ): Promise<ChannelEvent | null | JoinRefusal> {
    return Promise.resolve(this.#tx(() => {
      const [c, n] = [fold(channel), fold(nick)];
      const row = this.#get("SELECT key, lim FROM channels WHERE folded = ?", c);
      if (!row) {
        this.#run(
          "INSERT INTO channels(folded, name, topic, topic_by, topic_at, modes, key, lim, created_at, last_seq) " +
            "VALUES (?, ?, '', '', 0, ?, '', 0, ?, 0)",
          c,
          channel,
          createModes,
          Date.now(),
        );
      }
      if (this.#get("SELECT 1 FROM members WHERE channel = ? AND nick = ?", c, n)) return null;
      const count = Number(this.#get("SELECT count(*) AS n FROM members WHERE channel = ?", c)!["n"]);
      if (row && row["key"] !== "" && row["key"] !== key) return "bad-key";
      if (row && Number(row["lim"]) > 0 && count >= Number(row["lim"])) return "full";
      const first = count === 0 && !this.#get("SELECT 1 FROM channel_regs WHERE channel = ?", c);
      this.#run("INSERT INTO members(channel, nick, op) VALUES (?, ?, ?)", c, n, first ? 1 : 0);
      return this.#appendIn(c, { kind: "JOIN", source, ...fields });
    }));
  }

  append(
    channel: string,
    e: EventFields,
    change: ChannelChange = {},
  ): Promise<ChannelEvent | null> {
    return Promise.resolve(this.#tx(() => {
      const c = fold(channel);
      if (change.topic) {
        this.#run(
          "UPDATE channels SET topic = ?, topic_by = ?, topic_at = ? WHERE folded = ?",
          change.topic.text,
          change.topic.by,
          Date.now(),
          c,
        );
      }
      if (change.modes) {
        const m = change.modes;
        this.#run(
          "UPDATE channels SET modes = ?, key = ?, lim = ? WHERE folded = ?",
          m.modes,
          m.key,
          m.limit,
          c,
        );
      }
      if (change.removeMember) {
        this.#run("DELETE FROM members WHERE channel = ? AND nick = ?", c, fold(change.removeMember));
      }
      for (const p of change.setPrefixes ?? []) {
        const bit = PREFIX_BITS[p.mode];
        const sql = `UPDATE members SET op = ${p.on ? "op | ?" : "op & ~?"} WHERE channel = ? AND nick = ?`;
        this.#run(sql, bit, c, fold(p.nick));
      }
      return this.#appendIn(c, e);
    }));
  }

  appendMany(items: readonly Appending[]): Promise<Array<ChannelEvent | null>> {
    return Promise.resolve(this.#tx(() => {
      const out: Array<ChannelEvent | null> = items.map(() => null);
      for (const [c, indexes] of byChannel(items)) {
        indexes.forEach((i, k, all) => out[i] = this.#appendIn(c, items[i]!.event, k === 0 ? all.length : 0));
      }
      return out;
    }));
  }

  /**
   * Numbers and stores an event (inside a transaction). `reserve` numbers
   * are taken at once (a batch's first event of a channel takes the batch's;
   * 0: the next one was taken already).
   */
  #appendIn(
    folded: string,
    e: EventFields,
    reserve = 1,
  ): ChannelEvent | null {
    if (reserve > 0) {
      const row = this.#get(
        "UPDATE channels SET last_seq = last_seq + ? WHERE folded = ? RETURNING name, last_seq",
        reserve,
        folded,
      );
      this.#next = row ? { name: String(row["name"]), seq: Number(row["last_seq"]) - reserve + 1 } : null;
    }
    if (!this.#next) return null;
    const ev: ChannelEvent = { channel: this.#next.name, seq: this.#next.seq++, at: Date.now(), ...e };
    this.#run(
      "INSERT INTO events(channel, seq, at, kind, source, params, account, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      folded,
      ev.seq,
      ev.at,
      ev.kind,
      ev.source,
      JSON.stringify(ev.params),
      ev.account ?? "",
      ev.tags ?? "",
    );
    return ev;
  }

  channel(name: string): Promise<ChannelInfo | null> {
    const r = this.#get("SELECT * FROM channels WHERE folded = ?", fold(name));
    return Promise.resolve(r ? channelFrom(r) : null);
  }

  members(channel: string): Promise<Member[]> {
    const rows = this.#all(
      'SELECT u.nick, u."user", u.host, m.op FROM members m JOIN users u ON u.folded = m.nick WHERE m.channel = ? ' +
        "ORDER BY u.nick",
      fold(channel),
    );
    return Promise.resolve(rows.map(memberFrom));
  }

  channelsOf(nick: string): Promise<string[]> {
    const rows = this.#all(
      "SELECT c.name FROM members m JOIN channels c ON c.folded = m.channel WHERE m.nick = ? ORDER BY c.name",
      fold(nick),
    );
    return Promise.resolve(rows.map((r) => String(r["name"])));
  }

  channels(): Promise<Array<{ info: ChannelInfo; users: number }>> {
    const rows = this.#all(
      "SELECT c.*, (SELECT count(*) FROM members m WHERE m.channel = c.folded) AS users FROM channels c " +
        "ORDER BY c.name",
    );
    return Promise.resolve(rows.map((r) => ({ info: channelFrom(r), users: Number(r["users"]) })));
  }

  eventsBetween(channel: string, after: number, before: number): Promise<ChannelEvent[]> {
    const rows = this.#all(
      "SELECT e.*, c.name FROM events e JOIN channels c ON c.folded = e.channel " +
        "WHERE e.channel = ? AND e.seq > ? AND e.seq < ? ORDER BY e.seq",
      fold(channel),
      after,
      before,
    );
    return Promise.resolve(rows.map((r) => eventFrom(r)));
  }

  history(channel: string, q: HistoryQuery): Promise<ChannelEvent[]> {
    const where = ["e.channel = ?", "e.kind IN ('PRIVMSG', 'NOTICE')"];
    const args: SQLInputValue[] = [fold(channel)];
    for (const [bound, op] of [[q.before, "<"], [q.after, ">"]] as const) {
      if (bound?.seq !== undefined) where.push(`e.seq ${op} ?`), args.push(bound.seq);
      if (bound?.at !== undefined) where.push(`e.at ${op} ?`), args.push(bound.at);
    }
    // Newest `limit` before a point (or latest); oldest `limit` after one.
    const newest = q.after === undefined;
    const rows = this.#all(
      `SELECT e.*, c.name FROM events e JOIN channels c ON c.folded = e.channel WHERE ${
        where.join(" AND ")
      } ` +
        `ORDER BY e.seq ${newest ? "DESC" : "ASC"} LIMIT ?`,
      ...args,
      q.limit,
    );
    const events = rows.map((r) => eventFrom(r));
    return Promise.resolve(newest ? events.reverse() : events);
  }

  close(): Promise<void> {
    try {
      this.#db.close();
    } catch { /* already closed */ }
    return Promise.resolve();
  }
}
