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
 * @module
 */
import {
  type ChannelEvent,
  type ChannelEventKind,
  type ChannelInfo,
  type ChatUser,
  type Member,
  PREFIX_BITS,
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

/** Every version, oldest first: index 0 brings an empty database to version 1. */
export const SCHEMA: readonly SchemaStep[] = [{ sqlite: V1, postgres: V1 }, ACCOUNTS_STEP];

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
  };
}

/** A `members` row joined with its user's `nick` (and `user`, `host`; `op` holds the prefix mode bits). */
export function memberFrom(r: Row): Member {
  const bits = Number(r["op"]);
  const m = {
    nick: String(r["nick"]),
    op: (bits & PREFIX_BITS.o) !== 0,
    voice: (bits & PREFIX_BITS.v) !== 0,
  };
  return r["host"] === undefined ? m : { ...m, user: String(r["user"]), host: String(r["host"]) };
}

/** An `events` row joined with its channel's `name`. */
export function eventFrom(r: Row): ChannelEvent {
  return {
    channel: String(r["name"]),
    seq: Number(r["seq"]),
    at: Number(r["at"]),
    kind: String(r["kind"]) as ChannelEventKind,
    source: String(r["source"]),
    params: JSON.parse(String(r["params"])) as string[],
    ...(r["account"] ? { account: String(r["account"]) } : {}),
    ...(r["tags"] ? { tags: String(r["tags"]) } : {}),
  };
}
