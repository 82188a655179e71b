/**
 * {@link ChatStore} on PostgreSQL (npm `postgres`), so that several osps
 * instances on different hosts serve one chat. The rules are the same as
 * SQLite's and are kept the same way: nicknames and channels are primary
 * keys on their folded names; a channel's events are numbered under the
 * channel row's lock; a reap deletes rows with `RETURNING`, so of two hosts
 * reaping one owner, one gets each user.
 *
 * Lock order: a transaction that changes channels locks their rows first,
 * in folded-name order (`SELECT … FOR UPDATE`), and only then members and
 * users, so two transactions never wait for each other in a cycle. A
 * deadlock or serialization failure the server reports anyway is retried.
 * Times (leases, events) are the database's clock, the one clock every host
 * shares. Durability is PostgreSQL's: a commit is in the WAL on disk.
 * @module
 */
import postgres from "postgres";
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
  StoreError,
} from "./chat_store.ts";
import { applyChannelOp, MAX_LIMIT, type ModeOp, prefixBit, showModes } from "./channel_modes.ts";
import { channelFrom, eventFrom, memberFrom, metaText, SCHEMA, userFrom } from "./store_schema.ts";

type Sql = postgres.Sql | postgres.TransactionSql;

/** SQLSTATEs a transaction is retried on: deadlock_detected, serialization_failure. */
const RETRIED = new Set(["40P01", "40001"]);

/**
 * Connects to `url` with a small pool; PostgreSQL's notices are not logged.
 * Every setting is passed explicitly, so that the client reads no
 * environment variable but the two of `POSTGRES_ENV` (chat_config.ts).
 */
export function connect(url: string, max = 4): postgres.Sql {
  const u = new URL(url);
  const user = decodeURIComponent(u.username) || "postgres";
  const password = decodeURIComponent(u.password);
  return postgres({
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: Number(u.port || 5432),
    user,
    database: decodeURIComponent(u.pathname.slice(1)) || user,
    pass: () => password,
    max,
    ssl: u.searchParams.get("sslmode") === "require" ? "require" : false,
    sslnegotiation: null,
    idle_timeout: 0,
    connect_timeout: 10,
    max_lifetime: 60 * (30 + Math.random() * 30), // s, as the library would pick
    max_pipeline: 100,
    backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 20), // its default
    keep_alive: 60,
    prepare: true,
    debug: false,
    fetch_types: true,
    publications: "alltables",
    target_session_attrs: undefined,
    onnotice: () => {},
  } as postgres.Options<Record<string, never>>);
}

/** PostgreSQL implementation of {@link ChatStore}. */
export class PostgresStore implements ChatStore {
  readonly kind = "postgres";
  readonly #sql: postgres.Sql;
  #pruneAfter = "";

  private constructor(sql: postgres.Sql) {
    this.#sql = sql;
  }

  /** The connection pool, for the tables kept beside the chat state (`postgres_accounts.ts`, `postgres_lists.ts`). */
  get sql(): postgres.Sql {
    return this.#sql;
  }

  /** Connects and migrates the schema (under an advisory lock: one migrator at a time across hosts). */
  static async open(url: string): Promise<PostgresStore> {
    const sql = connect(url);
    try {
      await sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(7281001)`;
        await tx`CREATE TABLE IF NOT EXISTS osps_schema (version INTEGER NOT NULL)`;
        const [row] = await tx`SELECT version FROM osps_schema`;
        const at = row ? Number(row["version"]) : 0;
        if (at > SCHEMA.length) {
          throw new StoreError(
            `the chat database has schema version ${at}, newer than this osps (${SCHEMA.length})`,
          );
        }
        for (let v = at; v < SCHEMA.length; v++) await tx.unsafe(SCHEMA[v]!.postgres);
        await tx`DELETE FROM osps_schema`;
        await tx`INSERT INTO osps_schema (version) VALUES (${SCHEMA.length})`;
      });
    } catch (err) {
      await sql.end({ timeout: 1 });
      if (err instanceof StoreError) throw err;
      throw new StoreError(`cannot open the chat database: ${(err as Error).message}`, { cause: err });
    }
    return new PostgresStore(sql);
  }

  /** A transaction, retried when the server aborted it for a deadlock or a serialization failure. */
  async #tx<T>(fn: (tx: postgres.TransactionSql) => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await this.#sql.begin(fn) as T;
      } catch (err) {
        if (attempt >= 5 || !RETRIED.has((err as { code?: string }).code ?? "")) throw err;
      }
    }
  }

  /** Now in ms by the database's clock. */
  #now(tx: Sql) {
    return tx`(extract(epoch from clock_timestamp()) * 1000)::bigint`;
  }

  // --- owners -------------------------------------------------------------------------------------------

  async addOwner(owner: string, instance: string, slot: number): Promise<void> {
    const s = this.#sql;
    await s`INSERT INTO owners (owner, instance, slot, seen_at) VALUES (${owner}, ${instance}, ${slot}, ${
      this.#now(s)
    }) ON CONFLICT (owner) DO UPDATE SET seen_at = EXCLUDED.seen_at`;
  }

  async touchOwner(owner: string): Promise<boolean> {
    const s = this.#sql;
    return (await s`UPDATE owners SET seen_at = ${this.#now(s)} WHERE owner = ${owner}`).count > 0;
  }

  async owners(): Promise<OwnerLease[]> {
    const rows = await this.#sql`SELECT * FROM owners`;
    return rows.map((r) => ({
      owner: String(r["owner"]),
      instance: String(r["instance"]),
      slot: Number(r["slot"]),
      seenAt: Number(r["seen_at"]),
    }));
  }

  reapOwner(owner: string, reason: string, max: number): Promise<Departed[]> {
    return this.#tx(async (tx) => {
      const users =
        await tx`SELECT folded, sid FROM users WHERE owner = ${owner} ORDER BY folded LIMIT ${max}`;
      const out: Departed[] = [];
      for (const u of users) {
        const d = await this.#depart(tx, String(u["folded"]), String(u["sid"]), reason);
        if (d) out.push(d);
      }
      if (users.length < max) await tx`DELETE FROM owners WHERE owner = ${owner}`;
      return out;
    });
  }

  /**
   * Removes a user held by session `sid` from every channel (a QUIT event in
   * each, channels locked in order) and frees its nickname; null when it is
   * not held by that session (someone else reaped it first).
   */
  async #depart(tx: Sql, folded: string, sid: string, reason: string): Promise<Departed | null> {
    const [u] =
      await tx`DELETE FROM users WHERE folded = ${folded} AND sid = ${sid} RETURNING nick, "user", host`;
    if (!u) return null;
    const source = `${u["nick"]}!${u["user"]}@${u["host"]}`;
    const events: ChannelEvent[] = [];
    for (const r of await tx`SELECT channel FROM members WHERE nick = ${folded} ORDER BY channel`) {
      const c = String(r["channel"]);
      if (!(await this.#lock(tx, c))) continue;
      const gone = await tx`DELETE FROM members WHERE channel = ${c} AND nick = ${folded} RETURNING 1`;
      if (gone.length === 0) continue; // kicked meanwhile
      events.push((await this.#appendIn(tx, c, { kind: "QUIT", source, params: [reason] }))!);
      await this.#left(tx, c);
    }
    return { nick: String(u["nick"]), source, events };
  }

  /** Locks channel `c`'s row (the first lock a channel change takes); its row, or undefined. */
  async #lock(tx: Sql, c: string): Promise<postgres.Row | undefined> {
    const [row] = await tx`SELECT * FROM channels WHERE folded = ${c} FOR UPDATE`;
    return row;
  }

  // --- users --------------------------------------------------------------------------------------------

  async claimNick(u: ChatUser): Promise<boolean> {
    const r = await this
      .#sql`INSERT INTO users (folded, nick, "user", host, realname, away, modes, owner, sid,
        signon_at, account)
      VALUES (${
      fold(u.nick)
    }, ${u.nick}, ${u.user}, ${u.host}, ${u.realname}, ${u.away}, ${u.modes}, ${u.owner},
        ${u.sid}, ${u.signonAt}, ${u.account ?? ""})
      ON CONFLICT (folded) DO NOTHING`;
    return r.count === 1;
  }

  async #held(tx: Sql, a: Actor): Promise<boolean> {
    return (await tx`SELECT 1 FROM users WHERE folded = ${fold(a.nick)} AND sid = ${a.sid}`).length > 0;
  }

  async renameNick(actor: Actor, to: string): Promise<ChannelEvent[] | "taken" | "gone"> {
    const [f, t] = [fold(actor.nick), fold(to)];
    try {
      return await this.#tx(async (tx) => {
        if (!(await this.#held(tx, actor))) return "gone" as const;
        const channels = (await tx`SELECT channel FROM members WHERE nick = ${f} ORDER BY channel`)
          .map((r) => String(r["channel"]));
        for (const c of channels) await this.#lock(tx, c);
        const [u] =
          await tx`UPDATE users SET folded = ${t}, nick = ${to} WHERE folded = ${f} AND sid = ${actor.sid}
          RETURNING 1`;
        if (!u) return "gone" as const;
        const moved = f === t
          ? channels
          : (await tx`UPDATE members SET nick = ${t} WHERE nick = ${f} RETURNING channel`).map((r) =>
            String(r["channel"])
          ).sort();
        const out: ChannelEvent[] = [];
        for (const c of moved) {
          const ev = await this.#appendIn(tx, c, { kind: "NICK", source: actor.source, params: [to] });
          if (ev) out.push(ev);
        }
        return out;
      });
    } catch (err) {
      if ((err as { code?: string }).code === "23505") return "taken"; // unique_violation
      throw err;
    }
  }

  quit(actor: Actor, reason: string): Promise<Departed | null> {
    return this.#tx((tx) => this.#depart(tx, fold(actor.nick), actor.sid, reason));
  }

  async user(nick: string): Promise<ChatUser | null> {
    const [r] = await this.#sql`SELECT * FROM users WHERE folded = ${fold(nick)}`;
    return r ? userFrom(r) : null;
  }

  async users(nicks: readonly string[]): Promise<ChatUser[]> {
    const out: ChatUser[] = [];
    for (let i = 0; i < nicks.length; i += 500) {
      const part = nicks.slice(i, i + 500).map(fold);
      for (const r of await this.#sql`SELECT * FROM users WHERE folded IN ${this.#sql(part)}`) {
        out.push(userFrom(r));
      }
    }
    return out;
  }

  async setAway(actor: Actor, away: string): Promise<void> {
    await this.#sql`UPDATE users SET away = ${away} WHERE folded = ${
      fold(actor.nick)
    } AND sid = ${actor.sid}`;
  }

  async setUserModes(actor: Actor, modes: string): Promise<void> {
    await this.#sql`UPDATE users SET modes = ${modes} WHERE folded = ${
      fold(actor.nick)
    } AND sid = ${actor.sid}`;
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
    const [c, n] = [fold(channel), fold(actor.nick)];
    return this.#tx(async (tx): Promise<JoinResult> => {
      if (!(await this.#held(tx, actor))) return { refused: "gone" };
      // Numbering (and time) continue after the history of an earlier channel of that name.
      await tx`INSERT INTO channels (folded, name, topic, topic_by, topic_at, modes, key, lim, created_at, last_seq,
          registered, users, last_at)
        SELECT ${c}, ${channel}, '', '', 0, ${options.createModes}, '', 0, ${this.#now(tx)},
          COALESCE(max(seq), 0), 0, 0, COALESCE(max(at), 0) FROM events WHERE channel = ${c}
        ON CONFLICT (folded) DO NOTHING`;
      const row = (await this.#lock(tx, c))!;
      const info = channelFrom(row);
      const snapshot = options.snapshot
        ? { info, members: await this.#members(tx, c), seq: Number(row["last_seq"]) }
        : undefined;
      const result = (r: Omit<JoinResult, "snapshot">): JoinResult => ({
        ...r,
        ...(snapshot ? { snapshot } : {}),
      });
      if ((await tx`SELECT 1 FROM members WHERE channel = ${c} AND nick = ${n}`).length > 0) {
        return result({});
      }
      if (info.key !== "" && info.key !== key) return result({ refused: "bad-key" });
      if (info.limit > 0 && info.users >= info.limit) return result({ refused: "full" });
      // The first member of an empty channel is its operator; a registered channel's access list decides.
      const bits = info.users === 0 && !info.registered ? prefixBit("o") : 0;
      await tx`INSERT INTO members (channel, nick, op) VALUES (${c}, ${n}, ${bits})`;
      await tx`UPDATE channels SET users = users + 1 WHERE folded = ${c}`;
      const joined = { kind: "JOIN", source: actor.source, params: [], ...options.fields } as const;
      const ev = await this.#appendIn(tx, c, joined, { bits });
      return result({ ev: ev! });
    });
  }

  /**
   * Locks the channel, then checks the actor may act (a member holding its
   * nickname; an operator if asked); a service may act in any channel.
   */
  async #check(
    tx: Sql,
    c: string,
    actor: Actor | ServiceActor,
    op: boolean,
  ): Promise<{ row: postgres.Row; bits: number } | { refused: "no-channel" | "not-member" | "not-op" }> {
    const row = await this.#lock(tx, c);
    if (!row) return { refused: "no-channel" };
    if ("service" in actor) return { row, bits: prefixBit("o") };
    if (!(await this.#held(tx, actor))) return { refused: "not-member" };
    const [m] = await tx`SELECT op FROM members WHERE channel = ${c} AND nick = ${fold(actor.nick)}`;
    if (!m) return { refused: "not-member" };
    const bits = Number(m["op"]);
    if (op && !(bits & prefixBit("o"))) return { refused: "not-op" };
    return { row, bits };
  }

  /** A member left channel `c` (locked): it vanishes with its last member unless registered. */
  async #left(tx: Sql, c: string): Promise<void> {
    const [r] =
      await tx`UPDATE channels SET users = users - 1 WHERE folded = ${c} RETURNING users, registered`;
    if (r && Number(r["users"]) <= 0 && Number(r["registered"]) === 0) {
      await tx`DELETE FROM channels WHERE folded = ${c}`;
    }
  }

  part(channel: string, actor: Actor, reason: string | undefined): Promise<Changed> {
    const c = fold(channel);
    return this.#tx(async (tx): Promise<Changed> => {
      const checked = await this.#check(tx, c, actor, false);
      if ("refused" in checked) return checked;
      const ev = await this.#appendIn(tx, c, {
        kind: "PART",
        source: actor.source,
        params: reason ? [reason] : [],
      });
      await tx`DELETE FROM members WHERE channel = ${c} AND nick = ${fold(actor.nick)}`;
      await this.#left(tx, c);
      return { ev: ev! };
    });
  }

  kick(channel: string, actor: Actor, victim: string, reason: string): Promise<Changed> {
    const c = fold(channel);
    return this.#tx(async (tx): Promise<Changed> => {
      const checked = await this.#check(tx, c, actor, true);
      if ("refused" in checked) return checked;
      const [v] = await tx`SELECT u.nick FROM members m JOIN users u ON u.folded = m.nick
        WHERE m.channel = ${c} AND m.nick = ${fold(victim)}`;
      if (!v) return { refused: "no-victim" };
      const ev = await this.#appendIn(tx, c, {
        kind: "KICK",
        source: actor.source,
        params: [String(v["nick"]), reason],
      });
      await tx`DELETE FROM members WHERE channel = ${c} AND nick = ${fold(victim)}`;
      await this.#left(tx, c);
      return { ev: ev! };
    });
  }

  setTopic(channel: string, actor: Actor, text: string): Promise<Changed> {
    const c = fold(channel);
    return this.#tx(async (tx): Promise<Changed> => {
      const checked = await this.#check(tx, c, actor, false);
      if ("refused" in checked) return checked;
      if (String(checked.row["modes"]).includes("t") && !(checked.bits & prefixBit("o"))) {
        return { refused: "not-op" };
      }
      const ev = (await this.#appendIn(tx, c, { kind: "TOPIC", source: actor.source, params: [text] }))!;
      await tx`UPDATE channels SET topic = ${text}, topic_by = ${actor.source}, topic_at = ${ev.at}
        WHERE folded = ${c}`;
      return { ev };
    });
  }

  changeModes(
    channel: string,
    by: Actor | ServiceActor,
    ops: readonly ModeOp[],
  ): Promise<ModeChanged> {
    const c = fold(channel);
    return this.#tx(async (tx): Promise<ModeChanged> => {
      const checked = await this.#check(tx, c, by, true);
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
        const [m] = await tx`SELECT u.nick, m.op FROM members m JOIN users u ON u.folded = m.nick
          WHERE m.channel = ${c} AND m.nick = ${fold(op.arg!)}`;
        if (!m) {
          missing.push(op.arg!);
          continue;
        }
        const bit = prefixBit(op.letter), before = Number(m["op"]);
        const after = op.on ? before | bit : before & ~bit;
        if (after === before) continue;
        await tx`UPDATE members SET op = ${after} WHERE channel = ${c} AND nick = ${fold(op.arg!)}`;
        applied.push({ on: op.on, letter: op.letter, arg: String(m["nick"]) });
      }
      if (applied.length === 0) return { ev: null, missing };
      await tx`UPDATE channels SET modes = ${state.flags}, key = ${state.key}, lim = ${state.limit}
        WHERE folded = ${c}`;
      const ev = await this.#appendIn(tx, c, {
        kind: "MODE",
        source: "service" in by ? by.service : by.source,
        params: showModes(applied),
      });
      return { ev, missing };
    });
  }

  appendMany(items: readonly Appending[]): Promise<Array<ChannelEvent | null>> {
    return this.#tx(async (tx) => {
      const out: Array<ChannelEvent | null> = items.map(() => null);
      const rows: Array<Record<string, string | number>> = [];
      for (const [c, indexes] of byChannel(items)) {
        const first = await this.#reserve(tx, c, indexes.length);
        if (!first) continue;
        indexes.forEach((i, k) => {
          const e = items[i]!.event;
          const ev: ChannelEvent = { channel: first.name, seq: first.seq + k, at: first.at + k, ...e };
          out[i] = ev;
          rows.push({
            channel: c,
            seq: ev.seq,
            at: ev.at,
            kind: e.kind,
            source: e.source,
            params: JSON.stringify(e.params),
            meta: "",
            account: e.account ?? "",
            tags: e.tags ?? "",
          });
        });
      }
      if (rows.length > 0) {
        await tx`INSERT INTO events ${
          tx(rows, "channel", "seq", "at", "kind", "source", "params", "meta", "account", "tags")
        }`;
      }
      return out;
    });
  }

  /** Takes `n` numbers and `n` distinct times (strictly after the channel's last, by the database's clock). */
  async #reserve(tx: Sql, c: string, n: number): Promise<{ name: string; seq: number; at: number } | null> {
    const [row] = await tx`UPDATE channels SET last_seq = last_seq + ${n},
        last_at = GREATEST(last_at + 1, ${this.#now(tx)}) + ${n} - 1
      WHERE folded = ${c} RETURNING name, last_seq, last_at`;
    if (!row) return null;
    return {
      name: String(row["name"]),
      seq: Number(row["last_seq"]) - n + 1,
      at: Number(row["last_at"]) - n + 1,
    };
  }

  async #appendIn(tx: Sql, c: string, e: EventFields, meta?: EventMeta): Promise<ChannelEvent | null> {
    const first = await this.#reserve(tx, c, 1);
    if (!first) return null;
    const text = metaText(meta);
    await tx`INSERT INTO events (channel, seq, at, kind, source, params, meta, account, tags)
      VALUES (${c}, ${first.seq}, ${first.at}, ${e.kind}, ${e.source}, ${JSON.stringify(e.params)}, ${text},
        ${e.account ?? ""}, ${e.tags ?? ""})`;
    return { channel: first.name, seq: first.seq, at: first.at, ...e, ...(text ? { meta } : {}) };
  }

  async channel(name: string): Promise<ChannelInfo | null> {
    const [r] = await this.#sql`SELECT * FROM channels WHERE folded = ${fold(name)}`;
    return r ? channelFrom(r) : null;
  }

  async #members(tx: Sql, c: string): Promise<Member[]> {
    const rows =
      await tx`SELECT u.nick, u."user", u.host, m.op FROM members m JOIN users u ON u.folded = m.nick
      WHERE m.channel = ${c}`;
    return rows.map(memberFrom);
  }

  members(channel: string): Promise<Member[]> {
    return this.#members(this.#sql, fold(channel));
  }

  snapshot(channel: string): Promise<Snapshot | null> {
    const c = fold(channel);
    return this.#sql.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => {
      const [row] = await tx`SELECT * FROM channels WHERE folded = ${c}`;
      if (!row) return null;
      return { info: channelFrom(row), members: await this.#members(tx, c), seq: Number(row["last_seq"]) };
    }) as Promise<Snapshot | null>;
  }

  async memberships(nick: string): Promise<Array<{ name: string; modes: string; bits: number }>> {
    const rows = await this
      .#sql`SELECT c.name, c.modes, m.op FROM members m JOIN channels c ON c.folded = m.channel
      WHERE m.nick = ${fold(nick)} ORDER BY c.folded`;
    return rows.map((r) => ({ name: String(r["name"]), modes: String(r["modes"]), bits: Number(r["op"]) }));
  }

  async listChannels(q: ListQuery): Promise<ChannelInfo[]> {
    const rows = await this.#sql`SELECT * FROM channels WHERE folded > ${q.after} AND users > ${
      q.minUsers ?? 0
    }
      AND users < ${Math.min(q.maxUsers ?? MAX_LIMIT, MAX_LIMIT)} ORDER BY folded LIMIT ${q.limit}`;
    return rows.map(channelFrom);
  }

  setRegistered(channel: string, registered: boolean): Promise<boolean> {
    const c = fold(channel);
    return this.#tx(async (tx) => {
      const n = (await tx`UPDATE channels SET registered = ${registered ? 1 : 0} WHERE folded = ${c}`).count;
      if (!registered) await tx`DELETE FROM channels WHERE folded = ${c} AND users <= 0`;
      return n > 0;
    });
  }

  // --- history ------------------------------------------------------------------------------------------

  async eventsBetween(
    channel: string,
    after: number,
    before: number,
    limit = 1_000,
  ): Promise<ChannelEvent[]> {
    const rows = await this.#sql`SELECT e.*, COALESCE(c.name, e.channel) AS name
      FROM events e LEFT JOIN channels c ON c.folded = e.channel
      WHERE e.channel = ${fold(channel)} AND e.seq > ${after} AND e.seq < ${
      Math.min(before, Number.MAX_SAFE_INTEGER)
    }
      ORDER BY e.seq LIMIT ${limit}`;
    return rows.map(eventFrom);
  }

  async history(channel: string, q: HistoryQuery): Promise<ChannelEvent[]> {
    const s = this.#sql;
    const big = Number.MAX_SAFE_INTEGER;
    const bound = (p: HistoryQuery["after"], dflt: number) => ({
      seq: p && "seq" in p ? p.seq : dflt,
      at: p && "at" in p ? p.at : dflt,
    });
    const [lo, hi] = [bound(q.after, -1), bound(q.before, big)];
    const rows = await s`SELECT e.*, COALESCE(c.name, e.channel) AS name
      FROM events e LEFT JOIN channels c ON c.folded = e.channel
      WHERE e.channel = ${fold(channel)} AND e.kind IN ('PRIVMSG', 'NOTICE')
        AND e.seq > ${lo.seq} AND e.at > ${lo.at} AND e.seq < ${hi.seq} AND e.at < ${hi.at}
      ORDER BY e.seq ${q.newest ? s`DESC` : s`ASC`} LIMIT ${q.limit}`;
    const events = rows.map(eventFrom);
    return q.newest ? events.reverse() : events;
  }

  async lastSeqs(channels: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const name of channels) {
      const [r] = await this.#sql`SELECT last_seq FROM channels WHERE folded = ${fold(name)}`;
      if (r) out.set(name, Number(r["last_seq"]));
    }
    return out;
  }

  async lastActivity(channels: readonly string[], from: number, to: number): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const name of channels) {
      const [r] = await this.#sql`SELECT at FROM events WHERE channel = ${fold(name)}
        AND kind IN ('PRIVMSG', 'NOTICE') AND at > ${from} AND at < ${to} ORDER BY seq DESC LIMIT 1`;
      if (r) out.set(name, Number(r["at"]));
    }
    return out;
  }

  async prune(r: Retention, budget: number): Promise<number> {
    const s = this.#sql;
    let removed = 0;
    if (r.maxAgeMs > 0) {
      removed += (await s`DELETE FROM events WHERE ctid IN (SELECT ctid FROM events
        WHERE at < ${s`(extract(epoch from clock_timestamp()) * 1000)::bigint`} - ${r.maxAgeMs} LIMIT ${budget})`)
        .count;
    }
    if (r.maxPerChannel > 0 && removed < budget) {
      const page = await s`SELECT folded, last_seq FROM channels WHERE folded > ${this.#pruneAfter}
        ORDER BY folded LIMIT 50`;
      this.#pruneAfter = page.length < 50 ? "" : String(page[page.length - 1]!["folded"]);
      for (const row of page) {
        if (removed >= budget) break;
        const keepFrom = Number(row["last_seq"]) - r.maxPerChannel;
        if (keepFrom <= 0) continue;
        removed += (await s`DELETE FROM events WHERE ctid IN (SELECT ctid FROM events
          WHERE channel = ${String(row["folded"])} AND seq <= ${keepFrom} LIMIT ${budget - removed})`).count;
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 2 });
  }
}
