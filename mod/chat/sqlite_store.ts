/**
 * {@link ChatStore} on SQLite (`node:sqlite`), for the workers of one host:
 * one database file in the data dir, WAL mode, every write in a `BEGIN
 * IMMEDIATE` transaction (one writer at a time across processes; a wait
 * for another process is spent on timers, see `sqlite_db.ts`). Durability: a committed transaction is in the WAL file
 * before the client is answered, so it survives a kill -9 of every process;
 * with `fsync` it is also synced to the disk at each commit (survives a
 * power cut), at a cost per message.
 *
 * `node:sqlite` is synchronous: every call here runs on the worker's event
 * loop. So every statement is an indexed lookup or touches one channel, one
 * user or one page, and work that grows with a channel (reaping a worker's
 * users, pruning) is done in slices by the caller.
 * @module
 */
import type { SQLInputValue } from "node:sqlite";
import { type Row, SqliteDb } from "./sqlite_db.ts";
import { fold } from "./irc_message.ts";
import {
  type Actor,
  type Appending,
  byChannel,
  type Changed,
  type ChannelEvent,
  type ChannelInfo,
  type ChatStore,
  type ChatUser,
  type Departed,
  type EventFields,
  type EventMeta,
  type HistoryQuery,
  type JoinResult,
  type ListQuery,
  type Member,
  type ModeChanged,
  type OwnerLease,
  type Retention,
  type ServiceActor,
  type Snapshot,
} from "./chat_store.ts";
import { applyChannelOp, type ModeOp, prefixBit, showModes } from "./channel_modes.ts";
import { channelFrom, eventFrom, memberFrom, metaText, userFrom } from "./store_schema.ts";

const EVENT_COLUMNS = "e.*, COALESCE(c.name, e.channel) AS name";
const EVENTS_FROM = "events e LEFT JOIN channels c ON c.folded = e.channel";

/** SQLite implementation of {@link ChatStore}. */
export class SqliteStore implements ChatStore {
  readonly kind = "sqlite";
  readonly #db: SqliteDb;
  /** Where the count retention goes on (folded name of the last channel pruned). */
  #pruneAfter = "";

  private constructor(db: SqliteDb) {
    this.#db = db;
  }

  /** The connection, for the tables kept beside the chat state (`sqlite_accounts.ts`, `sqlite_lists.ts`). */
  get db(): SqliteDb {
    return this.#db;
  }

  /** Opens (creating) `path`, switches to WAL and migrates the schema to the current version. */
  static open(path: string, options: { fsync?: boolean } = {}): SqliteStore {
    return new SqliteStore(SqliteDb.open(path, options));
  }

  #get(sql: string, ...args: SQLInputValue[]): Row | undefined {
    return this.#db.get(sql, ...args);
  }

  #all(sql: string, ...args: SQLInputValue[]): Row[] {
    return this.#db.all(sql, ...args);
  }

  #run(sql: string, ...args: SQLInputValue[]): number {
    return this.#db.run(sql, ...args);
  }

  // --- owners -------------------------------------------------------------------------------------------

  addOwner(owner: string, instance: string, slot: number): Promise<void> {
    return this.#db.retry(() => {
      this.#run(
        "INSERT OR REPLACE INTO owners(owner, instance, slot, seen_at) VALUES (?, ?, ?, ?)",
        owner,
        instance,
        slot,
        Date.now(),
      );
      return;
    });
  }

  touchOwner(owner: string): Promise<boolean> {
    return this.#db.retry(() => {
      return this.#run("UPDATE owners SET seen_at = ? WHERE owner = ?", Date.now(), owner) > 0;
    });
  }

  owners(): Promise<OwnerLease[]> {
    return this.#db.retry(() => {
      return (
        this.#all("SELECT * FROM owners").map((r) => ({
          owner: String(r["owner"]),
          instance: String(r["instance"]),
          slot: Number(r["slot"]),
          seenAt: Number(r["seen_at"]),
        }))
      );
    });
  }

  reapOwner(owner: string, reason: string, max: number): Promise<Departed[]> {
    return this.#db.write(() => {
      const users = this.#all("SELECT * FROM users WHERE owner = ? LIMIT ?", owner, max);
      const out = users.map((u) => this.#depart(userFrom(u), reason));
      if (users.length < max) this.#run("DELETE FROM owners WHERE owner = ?", owner);
      return out;
    });
  }

  /** Removes a user from every channel (a QUIT event in each) and frees its nickname (inside a transaction). */
  #depart(u: ChatUser, reason: string): Departed {
    const folded = fold(u.nick);
    const source = `${u.nick}!${u.user}@${u.host}`;
    const events: ChannelEvent[] = [];
    for (const r of this.#all("SELECT channel FROM members WHERE nick = ? ORDER BY channel", folded)) {
      const c = String(r["channel"]);
      events.push(this.#appendIn(c, { kind: "QUIT", source, params: [reason] })!);
      this.#run("DELETE FROM members WHERE channel = ? AND nick = ?", c, folded);
      this.#left(c);
    }
    this.#run("DELETE FROM users WHERE folded = ?", folded);
    return { nick: u.nick, source, events };
  }

  // --- users --------------------------------------------------------------------------------------------

  claimNick(u: ChatUser): Promise<boolean> {
    return this.#db.retry(() => {
      const n = this.#run(
        'INSERT INTO users(folded, nick, "user", host, realname, away, modes, owner, sid, signon_at, account) ' +
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(folded) DO NOTHING",
        fold(u.nick),
        u.nick,
        u.user,
        u.host,
        u.realname,
        u.away,
        u.modes,
        u.owner,
        u.sid,
        u.signonAt,
        u.account ?? "",
      );
      return n === 1;
    });
  }

  /** The actor's user row, if this session still holds the nickname. */
  #actor(a: Actor): ChatUser | null {
    const r = this.#get("SELECT * FROM users WHERE folded = ? AND sid = ?", fold(a.nick), a.sid);
    return r ? userFrom(r) : null;
  }

  renameNick(actor: Actor, to: string): Promise<ChannelEvent[] | "taken" | "gone"> {
    return this.#db.write(() => {
      const [f, t] = [fold(actor.nick), fold(to)];
      if (!this.#actor(actor)) return "gone";
      if (f !== t && this.#get("SELECT 1 FROM users WHERE folded = ?", t)) return "taken";
      this.#run("UPDATE users SET folded = ?, nick = ? WHERE folded = ?", t, to, f);
      const channels = this.#all("SELECT channel FROM members WHERE nick = ? ORDER BY channel", f);
      if (f !== t) this.#run("UPDATE members SET nick = ? WHERE nick = ?", t, f);
      return channels.map((r) =>
        this.#appendIn(String(r["channel"]), { kind: "NICK", source: actor.source, params: [to] })!
      );
    });
  }

  quit(actor: Actor, reason: string): Promise<Departed | null> {
    return this.#db.write(() => {
      const u = this.#actor(actor);
      return u ? this.#depart(u, reason) : null;
    });
  }

  user(nick: string): Promise<ChatUser | null> {
    return this.#db.retry(() => {
      const r = this.#get("SELECT * FROM users WHERE folded = ?", fold(nick));
      return r ? userFrom(r) : null;
    });
  }

  users(nicks: readonly string[]): Promise<ChatUser[]> {
    return this.#db.retry(() => {
      const out: ChatUser[] = [];
      for (let i = 0; i < nicks.length; i += 500) {
        const part = nicks.slice(i, i + 500).map(fold);
        const sql = `SELECT * FROM users WHERE folded IN (${part.map(() => "?").join(",")})`;
        for (const r of this.#all(sql, ...part)) out.push(userFrom(r));
      }
      return out;
    });
  }

  setAway(actor: Actor, away: string): Promise<void> {
    return this.#db.retry(() => {
      this.#run("UPDATE users SET away = ? WHERE folded = ? AND sid = ?", away, fold(actor.nick), actor.sid);
      return;
    });
  }

  setUserModes(actor: Actor, modes: string): Promise<void> {
    return this.#db.retry(() => {
      this.#run(
        "UPDATE users SET modes = ? WHERE folded = ? AND sid = ?",
        modes,
        fold(actor.nick),
        actor.sid,
      );
      return;
    });
  }

  // --- channels -----------------------------------------------------------------------------------------

  join(
    channel: string,
    actor: Actor,
    key: string,
    options: {
      readonly createModes: string;
      readonly snapshot: boolean;
      readonly fields?: Pick<EventFields, "params" | "account">;
    },
  ): Promise<JoinResult> {
    return this.#db.write((): JoinResult => {
      const [c, n] = [fold(channel), fold(actor.nick)];
      if (!this.#actor(actor)) return { refused: "gone" };
      let row = this.#get("SELECT * FROM channels WHERE folded = ?", c);
      if (!row) {
        // Numbering (and time) continue after the history of an earlier channel of that name.
        const last = this.#get("SELECT seq, at FROM events WHERE channel = ? ORDER BY seq DESC LIMIT 1", c);
        row = this.#get(
          "INSERT INTO channels(folded, name, topic, topic_by, topic_at, modes, key, lim, created_at, last_seq, " +
            "registered, users, last_at) VALUES (?, ?, '', '', 0, ?, '', 0, ?, ?, 0, 0, ?) RETURNING *",
          c,
          channel,
          options.createModes,
          Date.now(),
          Number(last?.["seq"] ?? 0),
          Number(last?.["at"] ?? 0),
        )!;
      }
      const info = channelFrom(row);
      const snapshot = options.snapshot ? this.#snapshotIn(c, row) : undefined;
      const result = (r: Omit<JoinResult, "snapshot">): JoinResult => ({
        ...r,
        ...(snapshot ? { snapshot } : {}),
      });
      if (this.#get("SELECT 1 FROM members WHERE channel = ? AND nick = ?", c, n)) return result({});
      if (info.key !== "" && info.key !== key) return result({ refused: "bad-key" });
      if (info.limit > 0 && info.users >= info.limit) return result({ refused: "full" });
      // The first member of an empty channel is its operator; a registered channel's access list decides.
      const bits = info.users === 0 && !info.registered ? prefixBit("o") : 0;
      this.#run("INSERT INTO members(channel, nick, op) VALUES (?, ?, ?)", c, n, bits);
      this.#run("UPDATE channels SET users = users + 1 WHERE folded = ?", c);
      const joined = { kind: "JOIN", source: actor.source, params: [], ...options.fields } as const;
      return result({ ev: this.#appendIn(c, joined, { bits })! });
    });
  }

  /** A member's prefix bits, or null when not a member. */
  #bits(c: string, nick: string): number | null {
    const r = this.#get("SELECT op FROM members WHERE channel = ? AND nick = ?", c, fold(nick));
    return r ? Number(r["op"]) : null;
  }

  /**
   * The channel row and whether the actor may act in it (a member holding
   * its nickname; an operator if asked); a service may act in any channel.
   */
  #check(
    c: string,
    actor: Actor | ServiceActor,
    op: boolean,
  ): { row: Row } | { refused: "no-channel" | "not-member" | "not-op" } {
    const row = this.#get("SELECT * FROM channels WHERE folded = ?", c);
    if (!row) return { refused: "no-channel" };
    if ("service" in actor) return { row };
    const bits = this.#actor(actor) ? this.#bits(c, actor.nick) : null;
    if (bits === null) return { refused: "not-member" };
    if (op && !(bits & prefixBit("o"))) return { refused: "not-op" };
    return { row };
  }

  part(channel: string, actor: Actor, reason: string | undefined): Promise<Changed> {
    return this.#db.write((): Changed => {
      const c = fold(channel);
      const checked = this.#check(c, actor, false);
      if ("refused" in checked) return checked;
      const ev = this.#appendIn(c, { kind: "PART", source: actor.source, params: reason ? [reason] : [] })!;
      this.#run("DELETE FROM members WHERE channel = ? AND nick = ?", c, fold(actor.nick));
      this.#left(c);
      return { ev };
    });
  }

  kick(channel: string, actor: Actor, victim: string, reason: string): Promise<Changed> {
    return this.#db.write((): Changed => {
      const c = fold(channel);
      const checked = this.#check(c, actor, true);
      if ("refused" in checked) return checked;
      const v = this.#get(
        "SELECT u.nick FROM members m JOIN users u ON u.folded = m.nick WHERE m.channel = ? AND m.nick = ?",
        c,
        fold(victim),
      );
      if (!v) return { refused: "no-victim" };
      const ev = this.#appendIn(c, {
        kind: "KICK",
        source: actor.source,
        params: [String(v["nick"]), reason],
      })!;
      this.#run("DELETE FROM members WHERE channel = ? AND nick = ?", c, fold(victim));
      this.#left(c);
      return { ev };
    });
  }

  /** A member left channel `c` (inside a transaction): it vanishes with its last member unless registered. */
  #left(c: string): void {
    const r = this.#get(
      "UPDATE channels SET users = users - 1 WHERE folded = ? RETURNING users, registered",
      c,
    );
    if (r && Number(r["users"]) <= 0 && Number(r["registered"]) === 0) {
      this.#run("DELETE FROM channels WHERE folded = ?", c);
    }
  }

  setTopic(channel: string, actor: Actor, text: string): Promise<Changed> {
    return this.#db.write((): Changed => {
      const c = fold(channel);
      const checked = this.#check(c, actor, false);
      if ("refused" in checked) return checked;
      const bits = this.#bits(c, actor.nick)!;
      if (String(checked.row["modes"]).includes("t") && !(bits & prefixBit("o"))) {
        return { refused: "not-op" };
      }
      const ev = this.#appendIn(c, { kind: "TOPIC", source: actor.source, params: [text] })!;
      this.#run(
        "UPDATE channels SET topic = ?, topic_by = ?, topic_at = ? WHERE folded = ?",
        text,
        actor.source,
        ev.at,
        c,
      );
      return { ev };
    });
  }

  changeModes(
    channel: string,
    by: Actor | ServiceActor,
    ops: readonly ModeOp[],
  ): Promise<ModeChanged> {
    return this.#db.write((): ModeChanged => {
      const c = fold(channel);
      const checked = this.#check(c, by, true);
      if ("refused" in checked) return checked;
      const info = channelFrom(checked.row);
      let state = { flags: info.modes, key: info.key, limit: info.limit };
      const applied: ModeOp[] = [], missing: string[] = [];
      for (const op of ops) {
        const next = applyChannelOp(state, op, applied);
        if (next) {
          state = next;
          continue;
        }
        const m = this.#get(
          "SELECT u.nick, m.op FROM members m JOIN users u ON u.folded = m.nick WHERE m.channel = ? AND m.nick = ?",
          c,
          fold(op.arg!),
        );
        if (!m) {
          missing.push(op.arg!);
          continue;
        }
        const bit = prefixBit(op.letter), before = Number(m["op"]);
        const after = op.on ? before | bit : before & ~bit;
        if (after === before) continue;
        this.#run("UPDATE members SET op = ? WHERE channel = ? AND nick = ?", after, c, fold(op.arg!));
        applied.push({ on: op.on, letter: op.letter, arg: String(m["nick"]) });
      }
      if (applied.length === 0) return { ev: null, missing };
      this.#run(
        "UPDATE channels SET modes = ?, key = ?, lim = ? WHERE folded = ?",
        state.flags,
        state.key,
        state.limit,
        c,
      );
      const source = "service" in by ? by.service : by.source;
      const ev = this.#appendIn(c, { kind: "MODE", source, params: showModes(applied) })!;
      return { ev, missing };
    });
  }

  appendMany(items: readonly Appending[]): Promise<Array<ChannelEvent | null>> {
    return this.#db.write(() => {
      const out: Array<ChannelEvent | null> = items.map(() => null);
      for (const [c, indexes] of byChannel(items)) {
        const first = this.#reserve(c, indexes.length);
        if (!first) continue;
        indexes.forEach((i, k) =>
          out[i] = this.#insert(c, first.name, first.seq + k, first.at + k, items[i]!.event)
        );
      }
      return out;
    });
  }

  /**
   * Takes `n` numbers (and `n` distinct times, strictly after the channel's
   * last one) for channel `c`; null when it does not exist.
   */
  #reserve(c: string, n: number): { name: string; seq: number; at: number } | null {
    const row = this.#get(
      "UPDATE channels SET last_seq = last_seq + ?, last_at = max(last_at + 1, ?) + ? - 1 WHERE folded = ? " +
        "RETURNING name, last_seq, last_at",
      n,
      Date.now(),
      n,
      c,
    );
    if (!row) return null;
    return {
      name: String(row["name"]),
      seq: Number(row["last_seq"]) - n + 1,
      at: Number(row["last_at"]) - n + 1,
    };
  }

  #insert(c: string, name: string, seq: number, at: number, e: EventFields, meta?: EventMeta): ChannelEvent {
    const text = metaText(meta);
    this.#run(
      "INSERT INTO events(channel, seq, at, kind, source, params, meta, account, tags) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      c,
      seq,
      at,
      e.kind,
      e.source,
      JSON.stringify(e.params),
      text,
      e.account ?? "",
      e.tags ?? "",
    );
    return {
      channel: name,
      seq,
      at,
      kind: e.kind,
      source: e.source,
      params: e.params,
      ...(text ? { meta } : {}),
      ...(e.account ? { account: e.account } : {}),
      ...(e.tags ? { tags: e.tags } : {}),
    };
  }

  /** Numbers and stores one event (inside a transaction); null when the channel does not exist. */
  #appendIn(c: string, e: EventFields, meta?: EventMeta): ChannelEvent | null {
    const first = this.#reserve(c, 1);
    return first && this.#insert(c, first.name, first.seq, first.at, e, meta);
  }

  channel(name: string): Promise<ChannelInfo | null> {
    return this.#db.retry(() => {
      const r = this.#get("SELECT * FROM channels WHERE folded = ?", fold(name));
      return r ? channelFrom(r) : null;
    });
  }

  #members(c: string): Member[] {
    return this.#all(
      'SELECT u.nick, u."user", u.host, m.op FROM members m JOIN users u ON u.folded = m.nick WHERE m.channel = ?',
      c,
    ).map(memberFrom);
  }

  members(channel: string): Promise<Member[]> {
    return this.#db.retry(() => {
      return this.#members(fold(channel));
    });
  }

  #snapshotIn(c: string, row: Row): Snapshot {
    return { info: channelFrom(row), members: this.#members(c), seq: Number(row["last_seq"]) };
  }

  snapshot(channel: string): Promise<Snapshot | null> {
    const c = fold(channel);
    return this.#db.retry(() =>
      this.#db.read(() => {
        const row = this.#get("SELECT * FROM channels WHERE folded = ?", c);
        return row ? this.#snapshotIn(c, row) : null;
      })
    );
  }

  memberships(nick: string): Promise<Array<{ name: string; modes: string; bits: number }>> {
    return this.#db.retry(() => {
      const rows = this.#all(
        "SELECT c.name, c.modes, m.op FROM members m JOIN channels c ON c.folded = m.channel WHERE m.nick = ? " +
          "ORDER BY c.folded",
        fold(nick),
      );
      return (
        rows.map((r) => ({ name: String(r["name"]), modes: String(r["modes"]), bits: Number(r["op"]) }))
      );
    });
  }

  listChannels(q: ListQuery): Promise<ChannelInfo[]> {
    return this.#db.retry(() => {
      const rows = this.#all(
        "SELECT * FROM channels WHERE folded > ? AND users > ? AND users < ? ORDER BY folded LIMIT ?",
        q.after,
        q.minUsers ?? 0,
        q.maxUsers ?? Number.MAX_SAFE_INTEGER,
        q.limit,
      );
      return rows.map(channelFrom);
    });
  }

  setRegistered(channel: string, registered: boolean): Promise<boolean> {
    return this.#db.write(() => {
      const c = fold(channel);
      const n = this.#run("UPDATE channels SET registered = ? WHERE folded = ?", registered ? 1 : 0, c);
      if (!registered) this.#run("DELETE FROM channels WHERE folded = ? AND users <= 0", c);
      return n > 0;
    });
  }

  // --- history ------------------------------------------------------------------------------------------

  eventsBetween(channel: string, after: number, before: number, limit = 1_000): Promise<ChannelEvent[]> {
    return this.#db.retry(() => {
      const rows = this.#all(
        `SELECT ${EVENT_COLUMNS} FROM ${EVENTS_FROM} WHERE e.channel = ? AND e.seq > ? AND e.seq < ? ` +
          "ORDER BY e.seq LIMIT ?",
        fold(channel),
        after,
        Math.min(before, Number.MAX_SAFE_INTEGER),
        limit,
      );
      return rows.map(eventFrom);
    });
  }

  history(channel: string, q: HistoryQuery): Promise<ChannelEvent[]> {
    return this.#db.retry(() => {
      const where = ["e.channel = ?", "e.kind IN ('PRIVMSG', 'NOTICE')"];
      const args: SQLInputValue[] = [fold(channel)];
      for (const [point, op] of [[q.after, ">"], [q.before, "<"]] as const) {
        if (!point) continue;
        where.push("seq" in point ? `e.seq ${op} ?` : `e.at ${op} ?`);
        args.push("seq" in point ? point.seq : point.at);
      }
      const rows = this.#all(
        `SELECT ${EVENT_COLUMNS} FROM ${EVENTS_FROM} WHERE ${where.join(" AND ")} ` +
          `ORDER BY e.seq ${q.newest ? "DESC" : "ASC"} LIMIT ?`,
        ...args,
        q.limit,
      );
      const events = rows.map(eventFrom);
      return q.newest ? events.reverse() : events;
    });
  }

  lastSeqs(channels: readonly string[]): Promise<Map<string, number>> {
    return this.#db.retry(() => {
      const out = new Map<string, number>();
      for (const name of channels) {
        const r = this.#get("SELECT last_seq FROM channels WHERE folded = ?", fold(name));
        if (r) out.set(name, Number(r["last_seq"]));
      }
      return out;
    });
  }

  lastActivity(channels: readonly string[], from: number, to: number): Promise<Map<string, number>> {
    return this.#db.retry(() => {
      const out = new Map<string, number>();
      for (const name of channels) {
        const r = this.#get(
          "SELECT at FROM events WHERE channel = ? AND kind IN ('PRIVMSG', 'NOTICE') AND at > ? AND at < ? " +
            "ORDER BY seq DESC LIMIT 1",
          fold(name),
          from,
          to,
        );
        if (r) out.set(name, Number(r["at"]));
      }
      return out;
    });
  }

  prune(r: Retention, budget: number): Promise<number> {
    return this.#db.retry(() => {
      let removed = 0;
      if (r.maxAgeMs > 0) {
        removed += this.#run(
          "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE at < ? LIMIT ?)",
          Date.now() - r.maxAgeMs,
          budget,
        );
      }
      if (r.maxPerChannel > 0 && removed < budget) {
        const page = this.#all(
          "SELECT folded, last_seq FROM channels WHERE folded > ? ORDER BY folded LIMIT 50",
          this.#pruneAfter,
        );
        this.#pruneAfter = page.length < 50 ? "" : String(page[page.length - 1]!["folded"]);
        for (const row of page) {
          if (removed >= budget) break;
          const keepFrom = Number(row["last_seq"]) - r.maxPerChannel;
          if (keepFrom <= 0) continue;
          removed += this.#run(
            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE channel = ? AND seq <= ? LIMIT ?)",
            String(row["folded"]),
            keepFrom,
            budget - removed,
          );
        }
      }
      return removed;
    });
  }

  close(): Promise<void> {
    try {
      this.#db.close();
    } catch { /* already closed */ }
    return Promise.resolve();
  }
}
