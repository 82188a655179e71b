/**
 * A worker's local delivery: which of its connections are in which channel,
 * and each channel's events handed to them in the channel's order.
 *
 * Every channel event carries the number the store gave it (1, 2, 3 …).
 * Events reach a worker from its own clients at once and from other workers
 * over the bus, so they can arrive out of order; the hub delivers a
 * channel's events strictly by number. An event that arrives early waits for
 * the ones before it for {@link GAP_WAIT_MS}; if they have not come by then
 * (lost in transit), they are read from the store, which has every event
 * that any worker has published (it stores before it publishes). So each
 * member gets each event once, in the channel's order, whichever worker
 * holds the members.
 * @module
 */
import { logger } from "../log.ts";
import { fold, formatMessage } from "./irc_message.ts";
import type { ChannelEvent, ChatStore, Departed } from "./chat_store.ts";
import { eventOutgoing, Outgoing, type TagMeta } from "./tags.ts";

/** How long an early event waits for the ones before it before they are read from the store. */
export const GAP_WAIT_MS = 100;

/** A local connection as the hub sees it. */
export interface LocalClient {
  /** The connection's origin key (`owner/n`): events it caused are not echoed back where that is the rule. */
  readonly id: string;
  readonly nick: string;
  /** Channels joined (folded) → number of the JOIN event: earlier events are not shown. */
  readonly joined: Map<string, number>;
  /** Capabilities the client enabled (IRCv3). */
  readonly caps: ReadonlySet<string>;
  /** It gets its own messages back (echo-message). */
  readonly echo: boolean;
  /** Queues a message with the tags the client asked for; `own`: caused by this client. */
  deliver(out: Outgoing, own?: boolean): void;
  /** Ends the session (the others see `reason`). */
  close(reason: string): void;
}

/** Who watches users come and go (MONITOR): told of every change the hub delivers. */
export interface PresenceListener {
  online(source: string): void;
  offline(nick: string): void;
}

/**
 * What a watcher of a channel is told (the HTTP API's event streams): each
 * numbered event in order, and the unnumbered departures and renames of its
 * members.
 */
export type Watched =
  | { readonly t: "event"; readonly ev: ChannelEvent }
  | { readonly t: "quit"; readonly source: string; readonly reason: string; readonly at: number }
  | { readonly t: "nick"; readonly source: string; readonly nick: string; readonly at: number };

interface Track {
  readonly members: Set<LocalClient>;
  /** Watchers: told every event without being members (nothing is echoed to them, nothing hidden). */
  readonly watchers: Set<(w: Watched) => void>;
  /** Number of the last event delivered. */
  last: number;
  /** Early events, by number, with the connection that caused them. */
  readonly pending: Map<number, { ev: ChannelEvent; origin: string }>;
  timer?: ReturnType<typeof setTimeout>;
  filling: boolean;
}

/** Messages are echoed to their sender only when it asked (echo-message); everything else always is. */
const NOT_ECHOED = new Set(["PRIVMSG", "NOTICE"]);

/** The worker's local clients and the channels they are in. */
export class ChatHub {
  readonly #store: ChatStore;
  readonly #byNick = new Map<string, LocalClient>();
  readonly #tracks = new Map<string, Track>();
  /** Told of users coming online, leaving and changing nickname. */
  presence: PresenceListener = { online: () => {}, offline: () => {} };
  /** Told of every channel event delivered here, in the channel's order (`moderation.ts` reads the MODEs). */
  observe: (ev: ChannelEvent) => void = () => {};

  constructor(store: ChatStore) {
    this.#store = store;
  }

  /** Local clients, by folded nickname. */
  get clients(): ReadonlyMap<string, LocalClient> {
    return this.#byNick;
  }

  /** A client registered (or renamed: pass its old nickname). */
  register(c: LocalClient, oldNick?: string): void {
    if (oldNick !== undefined) this.#byNick.delete(fold(oldNick));
    this.#byNick.set(fold(c.nick), c);
  }

  /** A client left: it is no longer in any channel here. */
  unregister(c: LocalClient): void {
    if (this.#byNick.get(fold(c.nick)) === c) this.#byNick.delete(fold(c.nick));
    for (const ch of [...c.joined.keys()]) this.#leave(c, ch);
  }

  /** `c` joined with event `ev` (its own JOIN): it gets that event and every later one. */
  joined(c: LocalClient, ev: ChannelEvent): void {
    const key = fold(ev.channel);
    let t = this.#tracks.get(key);
    if (!t) {
      t = { members: new Set(), watchers: new Set(), last: ev.seq - 1, pending: new Map(), filling: false };
      this.#tracks.set(key, t);
    }
    if (t.last < 0) t.last = ev.seq - 1;
    t.members.add(c);
    c.joined.set(key, ev.seq);
    this.channelEvent(ev, c.id);
  }

  #leave(c: LocalClient, key: string): void {
    c.joined.delete(key);
    const t = this.#tracks.get(key);
    if (!t) return;
    t.members.delete(c);
    this.#dropIfUnused(key, t);
  }

  #dropIfUnused(key: string, t: Track): void {
    if (t.members.size === 0 && t.watchers.size === 0) {
      clearTimeout(t.timer);
      this.#tracks.delete(key);
    }
  }

  /**
   * Watches `channel` from its next event on, in the channel's order, from
   * whichever worker it comes; returns the function that stops watching.
   */
  watch(channel: string, fn: (w: Watched) => void): () => void {
    const key = fold(channel);
    let t = this.#tracks.get(key);
    if (!t) {
      t = { members: new Set(), watchers: new Set(), last: -1, pending: new Map(), filling: false };
      this.#tracks.set(key, t);
    }
    t.watchers.add(fn);
    const track = t;
    return () => {
      track.watchers.delete(fn);
      if (this.#tracks.get(key) === track) this.#dropIfUnused(key, track);
    };
  }

  /** A numbered channel event, from here or from the bus. */
  channelEvent(ev: ChannelEvent, origin: string): void {
    const t = this.#tracks.get(fold(ev.channel));
    if (!t) return; // nobody here
    if (t.last < 0) t.last = ev.seq - 1; // watched from the first event that comes
    if (ev.seq <= t.last) return; // already delivered
    t.pending.set(ev.seq, { ev, origin });
    this.#drain(t);
  }

  #drain(t: Track): void {
    for (let next = t.pending.get(t.last + 1); next; next = t.pending.get(t.last + 1)) {
      t.pending.delete(next.ev.seq);
      t.last = next.ev.seq;
      this.#deliver(t, next.ev, next.origin);
    }
    clearTimeout(t.timer);
    t.timer = undefined;
    if (t.pending.size > 0 && !t.filling) t.timer = setTimeout(() => void this.#fill(t), GAP_WAIT_MS);
  }

  /** Reads the events missing before the earliest early one from the store, and delivers in order. */
  async #fill(t: Track): Promise<void> {
    t.timer = undefined;
    if (t.pending.size === 0) return;
    const first = Math.min(...t.pending.keys());
    const channel = t.pending.get(first)!.ev.channel;
    t.filling = true;
    try {
      for (const ev of await this.#store.eventsBetween(channel, t.last, first)) {
        if (ev.seq > t.last && !t.pending.has(ev.seq)) t.pending.set(ev.seq, { ev, origin: "" });
      }
    } catch (err) {
      logger().error("chat: cannot read events of {ch} to fill a gap: {err}", {
        ch: channel,
        err: String(err),
      });
    } finally {
      t.filling = false;
    }
    if (!t.pending.has(t.last + 1) && t.pending.size > 0) {
      t.last = Math.min(...t.pending.keys()) - 1; // not in the store either: never happened; move on
    }
    this.#drain(t);
  }

  #deliver(t: Track, ev: ChannelEvent, origin: string): void {
    const out = eventOutgoing(ev); // each tag variant built once, shared by every member asking for it
    const key = fold(ev.channel);
    this.observe(ev);
    for (const m of t.members) {
      if ((m.joined.get(key) ?? Infinity) > ev.seq) continue;
      const own = m.id === origin;
      if (own && !m.echo && NOT_ECHOED.has(ev.kind)) continue;
      m.deliver(out, own);
    }
    for (const w of t.watchers) w({ t: "event", ev });
    const leaving = ev.kind === "PART" ? ev.source.split("!")[0]! : ev.kind === "KICK" ? ev.params[0]! : "";
    const local = leaving ? this.#byNick.get(fold(leaving)) : undefined;
    if (local) this.#leave(local, key);
  }

  /** A message to a local user; false when no such user is here. */
  privateMessage(to: string, out: Outgoing): boolean {
    const c = this.#byNick.get(fold(to));
    c?.deliver(out);
    return c !== undefined;
  }

  /** Local clients sharing a channel with a user (each once), but not `except`. */
  audience(channels: readonly string[], except?: LocalClient): Set<LocalClient> {
    const out = new Set<LocalClient>();
    for (const ch of channels) for (const m of this.#tracks.get(fold(ch))?.members ?? []) out.add(m);
    if (except) out.delete(except);
    return out;
  }

  /** A user quit: its channels' local members are told, once each. */
  quit(d: Departed, reason: string, except?: LocalClient, meta: Partial<TagMeta> = {}): void {
    const at = Date.now();
    const out = new Outgoing(formatMessage(d.source, "QUIT", [reason], { trailing: true }), { at, ...meta });
    for (const c of this.audience(d.channels, except)) c.deliver(out);
    this.#tell(d.channels, { t: "quit", source: d.source, reason, at });
    this.presence.offline(d.nick);
  }

  /** A user changed nickname: its channels' local members are told, once each. */
  nick(source: string, nick: string, channels: readonly string[], except?: LocalClient): void {
    const at = Date.now();
    const out = new Outgoing(formatMessage(source, "NICK", [nick]), { at });
    for (const c of this.audience(channels, except)) c.deliver(out);
    this.#tell(channels, { t: "nick", source, nick, at });
    const old = source.split("!")[0]!;
    if (fold(old) === fold(nick)) return; // a change of case: the same user for MONITOR
    this.presence.offline(old);
    this.presence.online(`${nick}!${source.slice(source.indexOf("!") + 1)}`);
  }

  /** Tells the watchers of each of `channels` (each watcher of each channel once). */
  #tell(channels: readonly string[], w: Watched): void {
    for (const ch of channels) for (const fn of this.#tracks.get(fold(ch))?.watchers ?? []) fn(w);
  }

  /** Stops the gap timers. */
  close(): void {
    for (const t of this.#tracks.values()) clearTimeout(t.timer);
    this.#tracks.clear();
  }
}
