/**
 * The chat's shared truth, as an interface: who holds which nickname (across
 * every worker and host), the channels with their topics, modes and members,
 * and every channel event in order. `sqlite_store.ts` implements it for one
 * host, `postgres_store.ts` for several. Every rule that must hold for all
 * workers at once (a nickname is unique, a channel's events are numbered
 * 1, 2, 3 … without gaps or repeats) is a constraint or a transaction there,
 * never a check followed by a write.
 * @module
 */
import { OspsError } from "../errors.ts";
import { fold } from "./irc_message.ts";

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
  /** Sign-on time, ms since the epoch. */
  readonly signonAt: number;
  /** Account logged in to ("" when none; see `account_store.ts`). */
  readonly account?: string;
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
}

/** One member of a channel. */
export interface Member {
  readonly nick: string;
  /** Channel operator (+o, prefix @). */
  readonly op: boolean;
  /** Voiced (+v, prefix +). */
  readonly voice: boolean;
  /** Username and host (NAMES with IRCv3 userhost-in-names), when read with them. */
  readonly user?: string;
  readonly host?: string;
}

/** Bits of a membership's prefix modes, as stored (`members.op`). */
export const PREFIX_BITS = { o: 1, v: 2 } as const;

/** Kinds of channel events (the IRC command that shows them). */
export type ChannelEventKind = "PRIVMSG" | "NOTICE" | "JOIN" | "PART" | "KICK" | "TOPIC" | "MODE";

/** A channel event, numbered by the channel: seq 1, 2, 3 … in the order the channel received them. */
export interface ChannelEvent {
  readonly channel: string;
  readonly seq: number;
  /** ms since the epoch. */
  readonly at: number;
  readonly kind: ChannelEventKind;
  /** `nick!user@host` of whoever caused it. */
  readonly source: string;
  /** Parameters after the channel name (the text of a message, the kicked nick and reason …). */
  readonly params: readonly string[];
  /** The sender's account, when logged in (IRCv3 account-tag). */
  readonly account?: string;
  /** Client-only tags the sender attached (`+name=value;…`, escaped as on the wire; IRCv3 message-tags). */
  readonly tags?: string;
}

/** What an event changes in the channel, applied in the same transaction that numbers it. */
export interface ChannelChange {
  readonly topic?: { readonly text: string; readonly by: string };
  readonly modes?: { readonly modes: string; readonly key: string; readonly limit: number };
  /** Folded nick leaving (PART, KICK). */
  readonly removeMember?: string;
  /** Nicks given or losing a prefix mode (+o, +v). */
  readonly setPrefixes?: ReadonlyArray<
    { readonly nick: string; readonly mode: "o" | "v"; readonly on: boolean }
  >;
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
 * channels sorted: every writer reserves numbers for its channels in one
 * order, so two batches never wait for each other in a cycle.
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

/** Why a JOIN was refused. */
export type JoinRefusal = "bad-key" | "full";

/** A nickname's holder left: which channels it was in. */
export interface Departed {
  readonly nick: string;
  /** `nick!user@host`. */
  readonly source: string;
  readonly channels: readonly string[];
}

/** A history query (IRCv3 CHATHISTORY): messages strictly before or after a point, newest `limit`. */
export interface HistoryQuery {
  readonly before?: { seq?: number; at?: number };
  readonly after?: { seq?: number; at?: number };
  readonly limit: number;
}

/** The chat's shared state. Every method may throw {@link StoreError} when the database fails. */
export interface ChatStore {
  /** "sqlite" or "postgres" (for logs and status). */
  readonly kind: string;
  /** A worker process starts serving: it owns the users it registers from now on. */
  addOwner(owner: string, instance: string, slot: number): Promise<void>;
  /** The owner is alive (lease); owners not seen for a while are reaped by the others. */
  touchOwner(owner: string): Promise<void>;
  /** Owners of `instance` and `slot` other than `except`, and owners not seen for `staleMs`. */
  deadOwners(instance: string, slot: number, except: string, staleMs: number): Promise<string[]>;
  /**
   * Removes an owner and every user it held from every channel. Only one
   * caller gets the users (the others get none), so their QUITs are told once.
   */
  reapOwner(owner: string): Promise<Departed[]>;

  /** Registers a nickname; false when it is taken (by anyone, anywhere). */
  claimNick(u: ChatUser): Promise<boolean>;
  /** Renames; false when `to` is taken. Returns the channels the user is in on success. */
  renameNick(from: string, to: string): Promise<readonly string[] | null>;
  /** The user leaves (QUIT): removed from every channel, nickname free. */
  releaseNick(nick: string): Promise<Departed | null>;
  user(nick: string): Promise<ChatUser | null>;
  setAway(nick: string, away: string): Promise<void>;
  setUserModes(nick: string, modes: string): Promise<void>;

  /**
   * Joins, creating the channel (modes `createModes`) if it does not exist;
   * the first member of an empty channel becomes its operator, unless the
   * channel is registered (`channel_regs`: its access list gives operator).
   * `fields` go into the JOIN event (IRCv3 extended-join: account and real
   * name as params, and the account). Returns the JOIN event, null when
   * already a member, or why it was refused.
   */
  join(
    channel: string,
    source: string,
    nick: string,
    key: string,
    createModes: string,
    fields?: Pick<EventFields, "params" | "account">,
  ): Promise<ChannelEvent | null | JoinRefusal>;
  /** Appends an event to a channel, with its change, in one transaction. Null when the channel is gone. */
  append(
    channel: string,
    e: Pick<ChannelEvent, "kind" | "source" | "params">,
    change?: ChannelChange,
  ): Promise<ChannelEvent | null>;
  /**
   * Appends several events in one transaction (group commit): each is
   * numbered in its channel in the order given, exactly as one `append`
   * after another would number them. Null for an event whose channel is
   * gone. All or nothing: when it throws, none of them is stored.
   */
  appendMany(items: readonly Appending[]): Promise<Array<ChannelEvent | null>>;
  channel(name: string): Promise<ChannelInfo | null>;
  members(channel: string): Promise<Member[]>;
  /** Channels `nick` is in (display names). */
  channelsOf(nick: string): Promise<string[]>;
  /** Every channel with its member count. */
  channels(): Promise<Array<{ info: ChannelInfo; users: number }>>;
  /** Events of `channel` with `after < seq < before`, oldest first (a receiver filling a gap). */
  eventsBetween(channel: string, after: number, before: number): Promise<ChannelEvent[]>;
  /** PRIVMSG and NOTICE of `channel`, oldest first. */
  history(channel: string, q: HistoryQuery): Promise<ChannelEvent[]>;
  close(): Promise<void>;
}
