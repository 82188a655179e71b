/**
 * A worker's copy of one channel: its members with their prefixes, its
 * modes and topic, as of one event number. It starts from a snapshot the
 * store reads in the transaction of the first local JOIN, then applies every
 * numbered event of the channel in order — JOIN, PART, KICK, QUIT, NICK,
 * MODE, TOPIC — with the same mode functions the store used, so it is the
 * store's state at that number. NAMES, WHO, MODE and TOPIC queries of
 * members are answered from here, in memory, whatever the channel's size.
 * @module
 */
import type { ChannelEvent, ChannelInfo, Member, Snapshot } from "./chat_store.ts";
import { fold } from "./irc_message.ts";
import {
  applyModes,
  MODE_KINDS,
  type ModeState,
  parseModes,
  prefixBit,
  prefixSigns,
} from "./channel_modes.ts";

/** Nick, user and host of a `nick!user@host` source. */
export function splitSource(source: string): { nick: string; user: string; host: string } {
  const bang = source.indexOf("!"), at = source.indexOf("@", bang + 1);
  if (bang < 0 || at < 0) return { nick: source, user: "", host: "" };
  return { nick: source.slice(0, bang), user: source.slice(bang + 1, at), host: source.slice(at + 1) };
}

/** What applying an event did to membership: who left (folded), who was renamed. */
export interface Applied {
  /** Folded nick that left the channel (PART, KICK, QUIT). */
  readonly left?: string;
  /** Folded nicks of a rename (NICK). */
  readonly renamed?: { readonly from: string; readonly to: string };
}

/** One channel's state, kept by applying its events in order. */
export class ChannelReplica {
  name: string;
  topic: string;
  topicBy: string;
  topicAt: number;
  modes: ModeState;
  readonly createdAt: number;
  registered: boolean;
  /** Members by folded nickname. */
  readonly members = new Map<string, Member>();
  /** Number of the last event applied. */
  seq: number;
  /**
   * NAMES text, by variant (prefixes shown, user@host shown, room per
   * line): kept while members only join, so that a JOIN to a channel of
   * thousands (each joiner is sent the whole list) costs a few lines, not a
   * pass over every member.
   */
  #names = new Map<string, { chunks: string[]; all: boolean; full: boolean; room: number }>();

  constructor(s: Snapshot) {
    const i = s.info;
    this.name = i.name;
    this.topic = i.topic;
    this.topicBy = i.topicBy;
    this.topicAt = i.topicAt;
    this.modes = { flags: i.modes, key: i.key, limit: i.limit };
    this.createdAt = i.createdAt;
    this.registered = i.registered;
    for (const m of s.members) this.members.set(fold(m.nick), m);
    this.seq = s.seq;
  }

  /** The channel as a {@link ChannelInfo}. */
  info(): ChannelInfo {
    return {
      name: this.name,
      topic: this.topic,
      topicBy: this.topicBy,
      topicAt: this.topicAt,
      modes: this.modes.flags,
      key: this.modes.key,
      limit: this.modes.limit,
      createdAt: this.createdAt,
      registered: this.registered,
      users: this.members.size,
    };
  }

  /** A member by nickname, if in the channel. */
  member(nick: string): Member | undefined {
    return this.members.get(fold(nick));
  }

  /** True when `nick` holds prefix `mode` (o, v) here. */
  has(nick: string, mode: string): boolean {
    return ((this.member(nick)?.bits ?? 0) & prefixBit(mode)) !== 0;
  }

  /**
   * The members as NAMES shows them, in chunks of at most `room` bytes
   * (names are ASCII: nicknames, user names and addresses are): all prefixes
   * or the highest (`multi-prefix`), `nick!user@host` or the nick
   * (`userhost-in-names`).
   */
  names(all: boolean, full: boolean, room: number): readonly string[] {
    const key = `${all ? 1 : 0}${full ? 1 : 0}${room}`;
    let v = this.#names.get(key);
    if (!v) {
      v = { chunks: [], all, full, room };
      for (const m of this.members.values()) add(v, m);
      this.#names.set(key, v);
    }
    return v.chunks;
  }

  /** Applies the next event (its number must follow {@link seq}). */
  apply(ev: ChannelEvent): Applied {
    this.seq = ev.seq;
    const who = splitSource(ev.source);
    if (ev.kind !== "JOIN" && ev.kind !== "PRIVMSG" && ev.kind !== "NOTICE" && ev.kind !== "TOPIC") {
      this.#names.clear(); // someone left, was renamed or got a prefix: the lists are made again when asked
    }
    switch (ev.kind) {
      case "JOIN": {
        const m = { ...who, bits: Number(ev.meta?.bits ?? 0) };
        this.members.set(fold(who.nick), m);
        for (const v of this.#names.values()) add(v, m);
        return {};
      }
      case "PART":
      case "QUIT": {
        const left = fold(who.nick);
        this.members.delete(left);
        return { left };
      }
      case "KICK": {
        const left = fold(ev.params[0] ?? "");
        this.members.delete(left);
        return { left };
      }
      case "NICK": {
        const from = fold(who.nick), to = fold(ev.params[0] ?? "");
        const m = this.members.get(from);
        if (m) {
          this.members.delete(from);
          this.members.set(to, { ...m, nick: ev.params[0]! });
        }
        return { renamed: { from, to } };
      }
      case "TOPIC":
        this.topic = ev.params[0] ?? "";
        this.topicBy = ev.source;
        this.topicAt = ev.at;
        return {};
      case "MODE":
        this.#mode(ev.params);
        return {};
    }
    return {};
  }

  #mode(params: readonly string[]): void {
    const { ops } = parseModes(params[0] ?? "", params.slice(1));
    this.modes = applyModes(this.modes, ops).next;
    for (const op of ops) {
      if (MODE_KINDS[op.letter] !== "prefix") continue;
      const key = fold(op.arg!), m = this.members.get(key);
      if (!m) continue;
      const bit = prefixBit(op.letter);
      this.members.set(key, { ...m, bits: op.on ? m.bits | bit : m.bits & ~bit });
    }
  }
}

/** Adds a member to a NAMES variant's chunks. */
function add(v: { chunks: string[]; all: boolean; full: boolean; room: number }, m: Member): void {
  const name = prefixSigns(m.bits, v.all) + (v.full ? `${m.nick}!${m.user}@${m.host}` : m.nick);
  const last = v.chunks.length - 1;
  if (last >= 0 && v.chunks[last]!.length + 1 + name.length <= v.room) v.chunks[last] += ` ${name}`;
  else v.chunks.push(name);
}
