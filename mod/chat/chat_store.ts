/**
 * The chat's shared truth, as an interface: who holds which nickname (across
 * every worker and host), the channels with their topics, modes and members,
 * and every channel event in order. `sqlite_store.ts` implements it for one
 * host, `postgres_store.ts` for several. Every rule that must hold for all
 * workers at once (a nickname is unique, a channel's events are numbered
 * 1, 2, 3 … without gaps or repeats, only an operator changes modes, a
 * change applies to the state as it is, not as it was read) is a constraint
 * or a check inside the transaction that writes, never a check followed by
 * a write.
 *
 * Everything a member of a channel is shown about it is a numbered event of
 * that channel: JOIN, PART, KICK, MODE, TOPIC, messages, and also QUIT and
 * NICK (one event in each channel of the user), so a worker can keep an
 * exact copy of a channel (`channel_replica.ts`) and a lost event is found
 * by its number and read back: late, never lost.
 *
 * Channels follow RFC 2812: a channel exists while it has members and
 * vanishes with its last one (its events stay, and numbering continues if
 * it comes back), unless it is registered ({@link ChatStore.setRegistered}):
 * a registered channel keeps its topic and modes with no one in it.
 * @module
 */
import { OspsError } from "../errors.ts";
import { fold } from "./irc_message.ts";
import type { ModeOp, ModeState } from "./channel_modes.ts";

/** The store could not be opened, migrated or reached. */
export class StoreError extends OspsError {}

/** A registered client. */
export interface ChatUser {
  readonly nick: string;
  readonly user: string;
  readonly host: string;
  readonly realname: string;
  /** Away message; "" when present. */
  readonly away: string;
  /** User modes set, e.g. "i". */
  readonly modes: string;
  /** The worker process (incarnation) holding the connection. */
  readonly owner: string;
  /** The session (`owner/n`) holding the nickname: only it acts as this user. */
  readonly sid: string;
  /** Sign-on time, ms since the epoch. */
  readonly signonAt: number;
  /** Account logged in to ("" when none; see `account_store.ts`). */
  readonly account?: string;
}

/** Who asks for a change: a session and the nickname it holds. */
export interface Actor {
  readonly nick: string;
  /** The session id the user row must carry ({@link ChatUser.sid}). */
  readonly sid: string;
  /** `nick!user@host`, the source of the events it causes. */
  readonly source: string;
}

/** A service acting on a channel (ChanServ): no user row, no membership; `service` is its source. */
export interface ServiceActor {
  readonly service: string;
}

/** A channel's state. */
export interface ChannelInfo {
  readonly name: string;
  readonly topic: string;
  readonly topicBy: string;
  /** When the topic was set, ms since the epoch (0: never). */
  readonly topicAt: number;
  /** Flag modes set, sorted, e.g. "nt". */
  readonly modes: string;
  /** Channel key (+k), "" when none. */
  readonly key: string;
  /** User limit (+l), 0 when none. */
  readonly limit: number;
  readonly createdAt: number;
  /** Registered (ChanServ): kept, with its topic and modes, when empty. */
  readonly registered: boolean;
  /** Members now. */
  readonly users: number;
}

/** The mode part of a {@link ChannelInfo}. */
export function modeState(info: ChannelInfo): ModeState {
  return { flags: info.modes, key: info.key, limit: info.limit };
}

/** One member of a channel. */
export interface Member {
  readonly nick: string;
  readonly user: string;
  readonly host: string;
  /** Prefix mode bits (`channel_modes.ts` {@link prefixBit}: o = 1, v = 2). */
  readonly bits: number;
}

/** A channel as of one event number: what a worker's replica starts from. */
export interface Snapshot {
  readonly info: ChannelInfo;
  readonly members: readonly Member[];
  /** Number of the last event whose effect the snapshot holds. */
  readonly seq: number;
}

/** Kinds of channel events (the IRC command that shows them). */
export type ChannelEventKind =
  | "PRIVMSG"
  | "NOTICE"
  | "JOIN"
  | "PART"
  | "KICK"
  | "TOPIC"
  | "MODE"
  | "QUIT"
  | "NICK";

/** Facts an event carries besides what it shows (the joiner's prefix …); modules may add their own. */
export interface EventMeta {
  /** JOIN: the prefix bits the joiner got (the first member of a channel is its operator). */
  readonly bits?: number;
  readonly [more: string]: unknown;
}

/** A channel event, numbered by the channel: seq 1, 2, 3 … in the order the channel received them. */
export interface ChannelEvent {
  readonly channel: string;
  readonly seq: number;
  /** ms since the epoch; strictly increasing within a channel (so a time is a place in its history). */
  readonly at: number;
  readonly kind: ChannelEventKind;
  /** `nick!user@host` of whoever caused it. */
  readonly source: string;
  /** Parameters after the channel name (QUIT and NICK: after the command, no channel is shown). */
  readonly params: readonly string[];
  readonly meta?: EventMeta;
  /** The sender's account, when logged in (IRCv3 account-tag). */
  readonly account?: string;
  /** Client-only tags the sender attached (`+name=value;…`, escaped as on the wire; IRCv3 message-tags). */
  readonly tags?: string;
}

/** What an event says, before the store numbers it. */
export type EventFields = Pick<ChannelEvent, "kind" | "source" | "params" | "account" | "tags">;

/** One event to append with {@link ChatStore.appendMany}: its channel and what it says. */
export interface Appending {
  readonly channel: string;
  readonly event: EventFields;
}

/**
 * A batch's items by folded channel name (indexes into `items`, in order),
 * channels sorted: every writer locks channels in one order, so two
 * transactions never wait for each other in a cycle.
 */
export function byChannel(items: readonly Appending[]): Array<[string, number[]]> {
  const out = new Map<string, number[]>();
  items.forEach((it, i) => {
    const c = fold(it.channel);
    const list = out.get(c);
    if (list) list.push(i);
    else out.set(c, [i]);
  });
  return [...out].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
}

/** Why a JOIN was refused: a wrong key, the limit, or the session no longer holds its nickname. */
export type JoinRefusal = "bad-key" | "full" | "gone";

/** What {@link ChatStore.join} did. */
export interface JoinResult {
  /** The JOIN event; absent when refused or already a member. */
  readonly ev?: ChannelEvent;
  readonly refused?: JoinRefusal;
  /** The channel just before this JOIN (when asked for; also on a refusal). */
  readonly snapshot?: Snapshot;
}

/** Why a channel change was refused. */
export type ChangeRefusal =
  /** No such channel (it vanished). */
  | "no-channel"
  /** The actor is not in the channel (or no longer holds its nickname). */
  | "not-member"
  /** The change needs a channel operator. */
  | "not-op"
  /** KICK: the victim is not in the channel. */
  | "no-victim";

/** A change's outcome: its event, or why not. */
export type Changed = { readonly ev: ChannelEvent } | { readonly refused: ChangeRefusal };

/** What a MODE change did: its event (null when nothing changed), and prefix targets not in the channel. */
export type ModeChanged =
  | { readonly ev: ChannelEvent | null; readonly missing: readonly string[] }
  | { readonly refused: ChangeRefusal };

/** A user left every channel (QUIT, a vanished client, a dead worker): its QUIT event in each. */
export interface Departed {
  readonly nick: string;
  /** `nick!user@host`. */
  readonly source: string;
  /** One QUIT event per channel it was in (numbered there). */
  readonly events: readonly ChannelEvent[];
}

/** A point in a channel's history: an event number or a time. */
export type HistoryPoint = { readonly seq: number } | { readonly at: number };

/**
 * A history query (IRCv3 CHATHISTORY): PRIVMSG and NOTICE strictly after
 * `after` and strictly before `before` (either may be absent); `limit` of
 * them, the newest ones when `newest`, else the oldest ones; always returned
 * oldest first.
 */
export interface HistoryQuery {
  readonly after?: HistoryPoint;
  readonly before?: HistoryPoint;
  readonly limit: number;
  readonly newest: boolean;
}

/** One page of LIST (keyset: channels after `after`, by folded name). */
export interface ListQuery {
  /** Folded name the page starts after ("" for the first). */
  readonly after: string;
  readonly limit: number;
  /** Only channels with more than this many users (ELIST U). */
  readonly minUsers?: number;
  /** Only channels with fewer than this many users (ELIST U). */
  readonly maxUsers?: number;
}

/** A worker process's lease, as the store keeps it. */
export interface OwnerLease {
  readonly owner: string;
  readonly instance: string;
  readonly slot: number;
  /** Last renewal, by the store's clock (compared for change only, never against another clock). */
  readonly seenAt: number;
}

/** What {@link ChatStore.prune} removes: events older than `maxAgeMs`, and past `maxPerChannel` per channel. */
export interface Retention {
  /** 0: no age limit. */
  readonly maxAgeMs: number;
  /** 0: no count limit. */
  readonly maxPerChannel: number;
}

/** The chat's shared state. Every method may throw {@link StoreError} (or the driver's error) when the database fails. */
export interface ChatStore {
  /** "sqlite" or "postgres" (for logs and status). */
  readonly kind: string;

  /** A worker process starts serving: it owns the users it registers from now on. */
  addOwner(owner: string, instance: string, slot: number): Promise<void>;
  /** Renews the lease (store's clock); false when the owner is gone: it was reaped. */
  touchOwner(owner: string): Promise<boolean>;
  /** Every owner's lease. */
  owners(): Promise<OwnerLease[]>;
  /**
   * Removes up to `max` users of an owner from every channel (a QUIT event
   * in each, with `reason`), and the owner itself once it holds none. Only
   * one caller gets each user, so their QUITs are told once. Call again
   * while it returns `max` users.
   */
  reapOwner(owner: string, reason: string, max: number): Promise<Departed[]>;

  /** Registers a nickname; false when it is taken (by anyone, anywhere). */
  claimNick(u: ChatUser): Promise<boolean>;
  /**
   * Renames: its NICK event in each channel (none: in no channel); "taken"
   * when `to` is someone else's, "gone" when the session no longer holds its nickname.
   */
  renameNick(actor: Actor, to: string): Promise<ChannelEvent[] | "taken" | "gone">;
  /** The user leaves (QUIT): a QUIT event in each channel, nickname free. Null: not held by this session. */
  quit(actor: Actor, reason: string): Promise<Departed | null>;
  user(nick: string): Promise<ChatUser | null>;
  /** Users by nickname (those that exist), for WHO. */
  users(nicks: readonly string[]): Promise<ChatUser[]>;
  setAway(actor: Actor, away: string): Promise<void>;
  setUserModes(actor: Actor, modes: string): Promise<void>;

  /**
   * Joins, creating the channel (modes `createModes`) if it does not
   * exist; the first member of an empty channel becomes its operator,
   * unless the channel is registered (its access list gives operator, see
   * `services.ts`). `fields` go into the JOIN event (IRCv3 extended-join:
   * account and real name as params, and the account). With `snapshot`,
   * also returns the channel as it was just before the JOIN.
   */
  join(
    channel: string,
    actor: Actor,
    key: string,
    options: {
      readonly createModes: string;
      readonly snapshot: boolean;
      readonly fields?: Pick<EventFields, "params" | "account">;
    },
  ): Promise<JoinResult>;
  /** Leaves a channel (PART); the channel vanishes with its last member unless registered. */
  part(channel: string, actor: Actor, reason: string | undefined): Promise<Changed>;
  /** Removes `victim` (KICK); the actor must be an operator. */
  kick(channel: string, actor: Actor, victim: string, reason: string): Promise<Changed>;
  /** Sets the topic; a member may, an operator only when the channel is +t. */
  setTopic(channel: string, actor: Actor, text: string): Promise<Changed>;
  /**
   * Applies mode changes as a delta: a member's must be an operator's; a
   * service's (ChanServ) needs no membership. Prefix changes name members.
   * List changes (bans) were applied to their list already: they are only
   * shown, in their place, in the one MODE event.
   */
  changeModes(channel: string, by: Actor | ServiceActor, ops: readonly ModeOp[]): Promise<ModeChanged>;
  /**
   * Appends messages in one transaction (group commit): each is numbered in
   * its channel in the order given. Null for an event whose channel is gone.
   * All or nothing: when it throws, none of them is stored.
   */
  appendMany(items: readonly Appending[]): Promise<Array<ChannelEvent | null>>;

  channel(name: string): Promise<ChannelInfo | null>;
  /** Members of a channel (NAMES from outside; members read their worker's replica). */
  members(channel: string): Promise<Member[]>;
  /** The channel and its members as of one event number, read at once. */
  snapshot(channel: string): Promise<Snapshot | null>;
  /** Channels `nick` is in: their shown names, flag modes, and its prefix bits there. */
  memberships(nick: string): Promise<Array<{ name: string; modes: string; bits: number }>>;
  /** One page of channels, by folded name. */
  listChannels(q: ListQuery): Promise<ChannelInfo[]>;
  /** Marks a channel registered or not (ChanServ); false when there is no such channel. */
  setRegistered(channel: string, registered: boolean): Promise<boolean>;

  /** Events of `channel` with `after < seq < before`, oldest first, at most `limit` (gap fill, resync). */
  eventsBetween(channel: string, after: number, before: number, limit?: number): Promise<ChannelEvent[]>;
  /** PRIVMSG and NOTICE of `channel` (see {@link HistoryQuery}). */
  history(channel: string, q: HistoryQuery): Promise<ChannelEvent[]>;
  /**
   * For each channel that exists, the number of its last stored event (keyed
   * by the names given): what a PING waits for this worker to have handed on
   * (`cmd_connection.ts`).
   */
  lastSeqs(channels: readonly string[]): Promise<Map<string, number>>;
  /** For each channel, the time of its latest PRIVMSG/NOTICE in `from < at < to` (absent: none). */
  lastActivity(channels: readonly string[], from: number, to: number): Promise<Map<string, number>>;
  /** Removes at most `budget` events past the retention; returns how many it removed. */
  prune(r: Retention, budget: number): Promise<number>;
  close(): Promise<void>;
}
