/**
 * {@link ChatStore} on PostgreSQL (npm `postgres`), so that several osps
 * instances on different hosts serve one chat. The rules are the same as
 * SQLite's and are kept the same way: nicknames and channels are primary
 * keys on their folded names; a channel's events are numbered under the
 * channel row's lock (`UPDATE … RETURNING last_seq`), so two hosts appending
 * to one channel wait for each other instead of taking the same number; a
 * reap deletes rows with `RETURNING`, so of two hosts reaping one owner, one
 * gets its users. Durability is PostgreSQL's: a commit is in the WAL on disk.
 * @module
 */
import postgres from "postgres";
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

type Sql = postgres.Sql | postgres.TransactionSql;

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

  async addOwner(owner: string, instance: string, slot: number): Promise<void> {
    await this
      .#sql`INSERT INTO owners (owner, instance, slot, seen_at) VALUES (${owner}, ${instance}, ${slot}, ${Date.now()})
      ON CONFLICT (owner) DO UPDATE SET seen_at = EXCLUDED.seen_at`;
  }

  async touchOwner(owner: string): Promise<void> {
    await this.#sql`UPDATE owners SET seen_at = ${Date.now()} WHERE owner = ${owner}`;
  }

  async deadOwners(instance: string, slot: number, except: string, staleMs: number): Promise<string[]> {
    const rows = await this.#sql`SELECT owner FROM owners WHERE owner <> ${except}
      AND ((instance = ${instance} AND slot = ${slot}) OR seen_at < ${Date.now() - staleMs})`;
    return rows.map((r) => String(r["owner"]));
  }

  reapOwner(owner: string): Promise<Departed[]> {
    return this.#sql.begin(async (tx) => {
      const users = await tx`DELETE FROM users WHERE owner = ${owner} RETURNING folded, nick, "user", host`;
      const out: Departed[] = [];
      for (const u of users) out.push(await this.#departed(tx, u));
      await tx`DELETE FROM owners WHERE owner = ${owner}`;
      return out;
    }) as Promise<Departed[]>;
  }

  /** Removes a deleted user's memberships; says which channels it left. */
  async #departed(tx: Sql, u: postgres.Row): Promise<Departed> {
    const rows = await tx`WITH gone AS (DELETE FROM members WHERE nick = ${u["folded"]} RETURNING channel)
      SELECT c.name FROM gone JOIN channels c ON c.folded = gone.channel ORDER BY c.name`;
    return {
      nick: String(u["nick"]),
      source: `${u["nick"]}!${u["user"]}@${u["host"]}`,
      channels: rows.map((r) => String(r["name"])),
    };
  }

  async claimNick(u: ChatUser): Promise<boolean> {
    const r = await this
      .#sql`INSERT INTO users (folded, nick, "user", host, realname, away, modes, owner, signon_at, account)
      VALUES (${
      fold(u.nick)
    }, ${u.nick}, ${u.user}, ${u.host}, ${u.realname}, ${u.away}, ${u.modes}, ${u.owner},
        ${u.signonAt}, ${u.account ?? ""})
      ON CONFLICT (folded) DO NOTHING`;
    return r.count === 1;
  }

  async renameNick(from: string, to: string): Promise<readonly string[] | null> {
    const [f, t] = [fold(from), fold(to)];
    try {
      return await this.#sql.begin(async (tx) => {
        await tx`UPDATE users SET folded = ${t}, nick = ${to} WHERE folded = ${f}`;
        await tx`UPDATE members SET nick = ${t} WHERE nick = ${f}`;
        const rows =
          await tx`SELECT c.name FROM members m JOIN channels c ON c.folded = m.channel WHERE m.nick = ${t}`;
        return rows.map((r) => String(r["name"]));
      }) as string[];
    } catch (err) {
      if ((err as { code?: string }).code === "23505") return null; // unique_violation: taken
      throw err;
    }
  }

  releaseNick(nick: string): Promise<Departed | null> {
    return this.#sql.begin(async (tx) => {
      const [u] = await tx`DELETE FROM users WHERE folded = ${
        fold(nick)
      } RETURNING folded, nick, "user", host`;
      return u ? await this.#departed(tx, u) : null;
    }) as Promise<Departed | null>;
  }

  async user(nick: string): Promise<ChatUser | null> {
    const [r] = await this.#sql`SELECT * FROM users WHERE folded = ${fold(nick)}`;
    return r ? userFrom(r) : null;
  }

  async setAway(nick: string, away: string): Promise<void> {
    await this.#sql`UPDATE users SET away = ${away} WHERE folded = ${fold(nick)}`;
  }

  async setUserModes(nick: string, modes: string): Promise<void> {
    await this.#sql`UPDATE users SET modes = ${modes} WHERE folded = ${fold(nick)}`;
  }

  join(
    channel: string,
    source: string,
    nick: string,
    key: string,
    createModes: string,
    fields: Pick<EventFields, "params" | "account"> = { params: [] },
  ): Promise<ChannelEvent | null | JoinRefusal> {
    const [c, n] = [fold(channel), fold(nick)];
    return this.#sql.begin(async (tx) => {
      const created = await tx`INSERT INTO channels (folded, name, topic, topic_by, topic_at, modes, key, lim,
          created_at, last_seq)
        VALUES (${c}, ${channel}, '', '', 0, ${createModes}, '', 0, ${Date.now()}, 0) ON CONFLICT (folded) DO NOTHING`;
      const [row] = await tx`SELECT key, lim FROM channels WHERE folded = ${c} FOR UPDATE`;
      if ((await tx`SELECT 1 FROM members WHERE channel = ${c} AND nick = ${n}`).length > 0) return null;
      const [counted] = await tx`SELECT count(*)::int AS n FROM members WHERE channel = ${c}`;
      const count = Number(counted!["n"]);
      if (created.count === 0 && row!["key"] !== "" && row!["key"] !== key) return "bad-key";
      if (created.count === 0 && Number(row!["lim"]) > 0 && count >= Number(row!["lim"])) return "full";
      const registered = (await tx`SELECT 1 FROM channel_regs WHERE channel = ${c}`).length > 0;
      await tx`INSERT INTO members (channel, nick, op) VALUES (${c}, ${n}, ${
        count === 0 && !registered ? 1 : 0
      })`;
      return await this.#appendIn(tx, c, { kind: "JOIN", source, ...fields });
    }) as Promise<ChannelEvent | null | JoinRefusal>;
  }

  append(channel: string, e: EventFields, change: ChannelChange = {}): Promise<ChannelEvent | null> {
    const c = fold(channel);
    return this.#sql.begin(async (tx) => {
      if (change.topic) {
        await tx`UPDATE channels SET topic = ${change.topic.text}, topic_by = ${change.topic.by},
          topic_at = ${Date.now()} WHERE folded = ${c}`;
      }
      if (change.modes) {
        const m = change.modes;
        await tx`UPDATE channels SET modes = ${m.modes}, key = ${m.key}, lim = ${m.limit} WHERE folded = ${c}`;
      }
      if (change.removeMember) {
        await tx`DELETE FROM members WHERE channel = ${c} AND nick = ${fold(change.removeMember)}`;
      }
      for (const p of change.setPrefixes ?? []) {
        const bit = PREFIX_BITS[p.mode];
        await tx`UPDATE members SET op = ${p.on ? tx`op | ${bit}` : tx`op & ~${bit}::int`}
          WHERE channel = ${c} AND nick = ${fold(p.nick)}`;
      }
      return await this.#appendIn(tx, c, e);
    }) as Promise<ChannelEvent | null>;
  }

  appendMany(items: readonly Appending[]): Promise<Array<ChannelEvent | null>> {
    return this.#sql.begin(async (tx) => {
      const out: Array<ChannelEvent | null> = items.map(() => null);
      const rows: Array<Record<string, string | number>> = [];
      const at = Date.now();
      for (const [c, indexes] of byChannel(items)) {
        const [row] = await tx`UPDATE channels SET last_seq = last_seq + ${indexes.length} WHERE folded = ${c}
          RETURNING name, last_seq`;
        if (!row) continue;
        const first = Number(row["last_seq"]) - indexes.length + 1;
        indexes.forEach((i, k) => {
          const ev: ChannelEvent = { channel: String(row["name"]), seq: first + k, at, ...items[i]!.event };
          out[i] = ev;
          rows.push({
            channel: c,
            seq: ev.seq,
            at,
            kind: ev.kind,
            source: ev.source,
            params: JSON.stringify(ev.params),
            account: ev.account ?? "",
            tags: ev.tags ?? "",
          });
        });
      }
      if (rows.length > 0) {
        await tx`INSERT INTO events ${
          tx(rows, "channel", "seq", "at", "kind", "source", "params", "account", "tags")
        }`;
      }
      return out;
    }) as Promise<Array<ChannelEvent | null>>;
  }

  async #appendIn(tx: Sql, folded: string, e: EventFields): Promise<ChannelEvent | null> {
    const [row] = await tx`UPDATE channels SET last_seq = last_seq + 1 WHERE folded = ${folded}
      RETURNING name, last_seq`;
    if (!row) return null;
    const ev: ChannelEvent = {
      channel: String(row["name"]),
      seq: Number(row["last_seq"]),
      at: Date.now(),
      ...e,
    };
    await tx`INSERT INTO events (channel, seq, at, kind, source, params, account, tags)
      VALUES (${folded}, ${ev.seq}, ${ev.at}, ${ev.kind}, ${ev.source}, ${JSON.stringify(ev.params)},
        ${ev.account ?? ""}, ${ev.tags ?? ""})`;
    return ev;
  }

  async channel(name: string): Promise<ChannelInfo | null> {
    const [r] = await this.#sql`SELECT * FROM channels WHERE folded = ${fold(name)}`;
    return r ? channelFrom(r) : null;
  }

  async members(channel: string): Promise<Member[]> {
    const rows = await this
      .#sql`SELECT u.nick, u."user", u.host, m.op FROM members m JOIN users u ON u.folded = m.nick
      WHERE m.channel = ${fold(channel)} ORDER BY u.nick`;
    return rows.map(memberFrom);
  }

  async channelsOf(nick: string): Promise<string[]> {
    const rows = await this.#sql`SELECT c.name FROM members m JOIN channels c ON c.folded = m.channel
      WHERE m.nick = ${fold(nick)} ORDER BY c.name`;
    return rows.map((r) => String(r["name"]));
  }

  async channels(): Promise<Array<{ info: ChannelInfo; users: number }>> {
    const rows = await this
      .#sql`SELECT c.*, (SELECT count(*) FROM members m WHERE m.channel = c.folded) AS users
      FROM channels c ORDER BY c.name`;
    return rows.map((r) => ({ info: channelFrom(r), users: Number(r["users"]) }));
  }

  async eventsBetween(channel: string, after: number, before: number): Promise<ChannelEvent[]> {
    const rows = await this.#sql`SELECT e.*, c.name FROM events e JOIN channels c ON c.folded = e.channel
      WHERE e.channel = ${fold(channel)} AND e.seq > ${after} AND e.seq < ${before} ORDER BY e.seq`;
    return rows.map(eventFrom);
  }

  async history(channel: string, q: HistoryQuery): Promise<ChannelEvent[]> {
    const s = this.#sql;
    const big = Number.MAX_SAFE_INTEGER;
    const newest = q.after === undefined;
    const rows = await s`SELECT e.*, c.name FROM events e JOIN channels c ON c.folded = e.channel
      WHERE e.channel = ${fold(channel)} AND e.kind IN ('PRIVMSG', 'NOTICE')
        AND e.seq < ${q.before?.seq ?? big} AND e.at < ${q.before?.at ?? big}
        AND e.seq > ${q.after?.seq ?? 0} AND e.at > ${q.after?.at ?? -1}
      ORDER BY e.seq ${newest ? s`DESC` : s`ASC`} LIMIT ${q.limit}`;
    const events = rows.map(eventFrom);
    return newest ? events.reverse() : events;
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 2 });
  }
}
