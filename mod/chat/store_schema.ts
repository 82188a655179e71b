/**
 * The chat database's schema, one entry per version, for both engines, and
 * the row readers both stores share. A store at version v runs entries v+1 …
 * at start, in one transaction, and records the new version (SQLite:
 * `PRAGMA user_version`; PostgreSQL: the `osps_schema` table). A database
 * newer than the program is refused rather than guessed at.
 *
 * Names are stored twice: as shown (`name`, `nick`) and folded by the
 * rfc1459 case mapping (`folded`), which is the key, so that uniqueness is
 * the database's primary key constraint.
 *
 * Version 1 (osps 0.1): users, channels (never removed), members, events.
 * Version 2 (`account_schema.ts`): accounts, registered channels
 * (`channel_regs`, founder and access list), bans, invitations, WHOWAS; the
 * account on users and events, client-only tags on events.
 * Version 3: channels vanish with their last member unless `registered`
 * (set by ChanServ, and from `channel_regs` when migrating; the count of
 * members is kept in `users`, so neither JOIN's `+l` check nor LIST counts
 * rows); `last_at` keeps event times strictly increasing per channel; events
 * carry `meta` (JSON); users carry the session holding them (`sid`); an
 * index on `events(at)` serves the retention by age; PostgreSQL keeps `+l`
 * as a BIGINT. A database at version 1 or 2 is brought to 3 step by step.
 * @module
 */
import type {
  ChannelEvent,
  ChannelEventKind,
  ChannelInfo,
  ChatUser,
  EventMeta,
  Member,
} from "./chat_store.ts";
import { ACCOUNTS_STEP } from "./account_schema.ts";

/** One schema version. */
export interface SchemaStep {
  readonly sqlite: string;
  readonly postgres: string;
}

const V1 = `
CREATE TABLE owners (owner TEXT PRIMARY KEY, instance TEXT NOT NULL, slot INTEGER NOT NULL, seen_at BIGINT NOT NULL);
CREATE TABLE users (
  folded TEXT PRIMARY KEY, nick TEXT NOT NULL, "user" TEXT NOT NULL, host TEXT NOT NULL, realname TEXT NOT NULL,
  away TEXT NOT NULL, modes TEXT NOT NULL, owner TEXT NOT NULL, signon_at BIGINT NOT NULL);
CREATE INDEX users_owner ON users(owner);
CREATE TABLE channels (
  folded TEXT PRIMARY KEY, name TEXT NOT NULL, topic TEXT NOT NULL, topic_by TEXT NOT NULL, topic_at BIGINT NOT NULL,
  modes TEXT NOT NULL, key TEXT NOT NULL, lim INTEGER NOT NULL, created_at BIGINT NOT NULL, last_seq BIGINT NOT NULL);
CREATE TABLE members (channel TEXT NOT NULL, nick TEXT NOT NULL, op INTEGER NOT NULL, PRIMARY KEY (channel, nick));
CREATE INDEX members_nick ON members(nick);
CREATE TABLE events (
  channel TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL,
  params TEXT NOT NULL, PRIMARY KEY (channel, seq));
`;

const V3 = `
ALTER TABLE users ADD COLUMN sid TEXT NOT NULL DEFAULT '';
ALTER TABLE channels ADD COLUMN registered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN users INTEGER NOT NULL DEFAULT 0;
ALTER TABLE channels ADD COLUMN last_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN meta TEXT NOT NULL DEFAULT '';
UPDATE channels SET users = (SELECT count(*) FROM members m WHERE m.channel = channels.folded),
  last_at = COALESCE((SELECT max(e.at) FROM events e WHERE e.channel = channels.folded), 0);
UPDATE channels SET registered = 1 WHERE folded IN (SELECT channel FROM channel_regs);
DELETE FROM channels WHERE users = 0 AND registered = 0;
CREATE INDEX events_at ON events(at);
`;

/** Every version, oldest first: index 0 brings an empty database to version 1. */
export const SCHEMA: readonly SchemaStep[] = [
  { sqlite: V1, postgres: V1 },
  ACCOUNTS_STEP,
  { sqlite: V3, postgres: `${V3}ALTER TABLE channels ALTER COLUMN lim TYPE BIGINT;` },
];

type Row = Record<string, unknown>;

/** A `users` row. */
export function userFrom(r: Row): ChatUser {
  return {
    nick: String(r["nick"]),
    user: String(r["user"]),
    host: String(r["host"]),
    realname: String(r["realname"]),
    away: String(r["away"]),
    modes: String(r["modes"]),
    owner: String(r["owner"]),
    sid: String(r["sid"] ?? ""),
    signonAt: Number(r["signon_at"]),
    account: String(r["account"] ?? ""),
  };
}

/** A `channels` row. */
export function channelFrom(r: Row): ChannelInfo {
  return {
    name: String(r["name"]),
    topic: String(r["topic"]),
    topicBy: String(r["topic_by"]),
    topicAt: Number(r["topic_at"]),
    modes: String(r["modes"]),
    key: String(r["key"]),
    limit: Number(r["lim"]),
    createdAt: Number(r["created_at"]),
    registered: Number(r["registered"] ?? 0) !== 0,
    users: Number(r["users"] ?? 0),
  };
}

/** A `members` row joined with its user's `nick`, `user` and `host` (`op` holds the prefix bits). */
export function memberFrom(r: Row): Member {
  return { nick: String(r["nick"]), user: String(r["user"]), host: String(r["host"]), bits: Number(r["op"]) };
}

/** An `events` row joined with its channel's shown name (`name`; the folded one when it vanished). */
export function eventFrom(r: Row): ChannelEvent {
  const meta = String(r["meta"] ?? "");
  return {
    channel: String(r["name"] ?? r["channel"]),
    seq: Number(r["seq"]),
    at: Number(r["at"]),
    kind: String(r["kind"]) as ChannelEventKind,
    source: String(r["source"]),
    params: JSON.parse(String(r["params"])) as string[],
    ...(meta ? { meta: JSON.parse(meta) as EventMeta } : {}),
    ...(r["account"] ? { account: String(r["account"]) } : {}),
    ...(r["tags"] ? { tags: String(r["tags"]) } : {}),
  };
}

/** The `meta` column's text for an event's facts ("" for none). */
export function metaText(meta: EventMeta | undefined): string {
  return meta && Object.keys(meta).length > 0 ? JSON.stringify(meta) : "";
}
