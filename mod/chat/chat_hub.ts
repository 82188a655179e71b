/**
 * A worker's local delivery: for each channel with members here, a replica
 * of the channel (`channel_replica.ts`) and the local members, and the
 * channel's events applied and handed to them in the channel's order.
 *
 * Every channel event carries the number the store gave it (1, 2, 3 …).
 * Events reach a worker from its own clients at once and from other workers
 * over the bus, so they can arrive out of order; the hub applies a
 * channel's events strictly by number. An event that arrives early waits for
 * the ones before it for {@link GAP_WAIT_MS}; if they have not come by then
 * (lost in transit), they are read from the store, which has every event
 * that any worker has published (it stores before it publishes). So each
 * member gets each event once, in the channel's order, whichever worker
 * holds the members; and {@link ChatHub.resync} reads whatever a lost bus
 * message held.
 *
 * Work is sliced: events are applied and delivered from one queue, at most
 * {@link SLICE_MS} per event-loop turn, so a burst (thousands of QUITs when a
 * worker dies, to thousands of members) never blocks the loop that answers
 * the watchdog and the other clients. A QUIT or NICK, numbered in each
 * channel of the user, reaches a member once: from the last channel the two
 * share (until then the member still sees the user in another channel).
 *
 * Watchers (the HTTP API's event streams) follow a channel without being
 * members: they are told each event as it is applied, in order.
 * @module
 */
import { setImmediate } from "node:timers";
import { logger } from "../log.ts";
import { fold } from "./irc_message.ts";
import type { ChannelEvent, ChatStore, Snapshot } from "./chat_store.ts";
import { ChannelReplica, splitSource } from "./channel_replica.ts";
import type { Outgoing } from "./tags.ts";
import { type Recipient, Stage } from "./fanout.ts";
import { SLICE_MS, sliceStarts } from "./loop_slice.ts";

/** How long an early event waits for the ones before it before they are read from the store. */
export const GAP_WAIT_MS = 100;

/**
 * A local connection as the hub sees it (an IRC session; any other
 * transport alike): it queues events one by one or a channel's stage at
 * once (`fanout.ts`).
 */
export interface LocalClient extends Recipient {
  /** The connection's origin key (`owner/n`): events it caused are not echoed back where that is the rule. */
  readonly id: string;
  readonly nick: string;
  /** Its own PRIVMSG and NOTICE come back to it (IRCv3 echo-message). */
  readonly echoes?: boolean;
  /** Capabilities the client enabled (IRCv3). */
  readonly caps: ReadonlySet<string>;
  /** Ends the session (the others see `reason`). */
  close(reason: string): void;
  /** True once the session is ending (its nickname's release is on its way). */
  readonly closing?: boolean;
}

/**
 * What a watcher of a channel is told (the HTTP API's event streams): each
 * numbered event in order — QUIT and NICK of its members included.
 */
export type Watched = { readonly t: "event"; readonly ev: ChannelEvent };

/** A stage is handed on early past this many events (bounded buffers, bounded writes). */
const STAGE_MAX = 512;

interface Track {
  readonly key: string;
  /** Null while the snapshot of the first local JOIN is on its way. */
  replica: ChannelReplica | null;
  /** Local members → their folded nickname in the replica (it follows their NICK events). */
  readonly locals: Map<LocalClient, string>;
  readonly byNick: Map<string, LocalClient>;
  /** Number of the last event queued for delivery. */
  last: number;
  /** The store holds events up to this number (a PING's barrier): those not here by {@link GAP_WAIT_MS} are read. */
  expected?: number;
  /** Early events, by number, with the connection that caused them. */
  readonly pending: Map<number, { ev: ChannelEvent; origin: string }>;
  timer?: ReturnType<typeof setTimeout>;
  filling: boolean;
  /** Local JOINs in flight: the track stays while they run. */
  pins: number;
  waiters: Array<{ seq: number; resolve: () => void }>;
  /** Local members who joined again before their leaving was applied here: the number of the new JOIN. */
  rejoins?: Map<LocalClient, number>;
  /** Events applied this turn, not handed on yet. */
  stage?: Stage;
  /** Number of the last event handed on to the members. */
  handedOn: number;
  /** Local members also in other channels here (see `#multiChanged`). */
  multi?: Set<LocalClient>;
  /** Watchers: told every event without being members (nothing is echoed to them, nothing hidden). */
  watchers?: Set<(w: Watched) => void>;
}

interface Ready {
  readonly t: Track;
  readonly ev: ChannelEvent;
  readonly origin: string;
}

/** Messages are not echoed to their sender unless it asked (echo-message); everything else is. */
const MESSAGES = new Set(["PRIVMSG", "NOTICE"]);

/** The worker's local clients and the channels they are in. */
export class ChatHub {
  readonly #store: ChatStore;
  readonly #byNick = new Map<string, LocalClient>();
  readonly #byId = new Map<string, LocalClient>();
  readonly #tracks = new Map<string, Track>();
  /** Tracks with a stage to hand on. */
  #staged: Track[] = [];
  #ready: Ready[] = [];
  #head = 0;
  #pumping = false;
  /** When this event-loop turn's delivery began (undefined: none yet this turn). */
  #turnStart: number | undefined;
  #closed = false;
  /** Told of every channel event applied here, in the channel's order (`moderation.ts` reads the MODEs). */
  observe: (ev: ChannelEvent) => void = () => {};

  constructor(store: ChatStore) {
    this.#store = store;
  }

  /** Local clients, by folded nickname. */
  get clients(): ReadonlyMap<string, LocalClient> {
    return this.#byNick;
  }

  /** The local client of connection `id` (`owner/n`), if it is still here. */
  client(id: string): LocalClient | undefined {
    return this.#byId.get(id);
  }

  /** A client registered (or renamed: pass its old nickname). */
  register(c: LocalClient, oldNick?: string): void {
    if (oldNick !== undefined && this.#byNick.get(fold(oldNick)) === c) this.#byNick.delete(fold(oldNick));
    this.#byNick.set(fold(c.nick), c);
    this.#byId.set(c.id, c);
  }

  /** A client left: it is no longer in any channel here and gets nothing more. */
  unregister(c: LocalClient): void {
    if (this.#byNick.get(fold(c.nick)) === c) this.#byNick.delete(fold(c.nick));
    this.#byId.delete(c.id);
    for (const key of [...c.joined.keys()]) {
      const t = this.#tracks.get(key);
      if (t) this.#leave(t, c);
      c.joined.delete(key);
    }
  }

  /** The replica of a channel with members here (loaded), else undefined. */
  replica(channel: string): ChannelReplica | undefined {
    return this.#tracks.get(fold(channel))?.replica ?? undefined;
  }

  /**
   * A local JOIN is about to run: the channel's track stays until
   * {@link unpin}. True when the JOIN must bring a snapshot (no replica here).
   */
  pin(channel: string): boolean {
    const key = fold(channel);
    let t = this.#tracks.get(key);
    const fresh = t === undefined;
    if (!t) this.#tracks.set(key, t = newTrack(key));
    t.pins++;
    return fresh;
  }

  /**
   * Watches `channel` from its next event on, in the channel's order, from
   * whichever worker it comes; returns the function that stops watching.
   */
  watch(channel: string, fn: (w: Watched) => void): () => void {
    const key = fold(channel);
    let t = this.#tracks.get(key);
    if (!t) {
      this.#tracks.set(key, t = newTrack(key));
      void this.#fetch(t); // no local member: the channel's replica comes from the store
    }
    (t.watchers ??= new Set()).add(fn);
    const track = t;
    return () => {
      track.watchers?.delete(fn);
      if (this.#tracks.get(key) === track) this.#maybeDrop(track);
    };
  }

  /** The JOIN that {@link pin} announced is over. */
  unpin(channel: string): void {
    const t = this.#tracks.get(fold(channel));
    if (!t) return;
    t.pins--;
    if (!t.replica && t.pins > 0) void this.#fetch(t); // the one that was to bring the snapshot did not
    this.#maybeDrop(t);
  }

  /** The snapshot a pinned JOIN brought: the channel's replica starts from it. */
  load(channel: string, s: Snapshot): void {
    const t = this.#tracks.get(fold(channel));
    if (!t || t.replica) return;
    t.replica = new ChannelReplica(s);
    t.last = t.handedOn = s.seq;
    for (const seq of [...t.pending.keys()]) if (seq <= s.seq) t.pending.delete(seq);
    this.#drain(t);
  }

  async #fetch(t: Track): Promise<void> {
    try {
      const s = await this.#store.snapshot(t.key);
      if (s) this.load(t.key, s);
    } catch (err) {
      logger().error("chat: cannot read channel {ch}: {err}", { ch: t.key, err: String(err) });
    }
  }

  /** `c` joined with event `ev` (its own JOIN, on a pinned channel): it gets that event and every later one. */
  joined(c: LocalClient, ev: ChannelEvent): void {
    const key = fold(ev.channel);
    const t = this.#tracks.get(key);
    if (!t) return;
    if (t.locals.has(c)) {
      // Its PART or KICK is not applied here yet: it sees everything up to it, then this JOIN.
      (t.rejoins ??= new Map()).set(c, ev.seq);
    } else {
      const nick = fold(splitSource(ev.source).nick);
      t.locals.set(c, nick);
      t.byNick.set(nick, c);
      c.joined.set(key, ev.seq);
      this.#multiChanged(c);
    }
    this.channelEvent(ev, c.id);
  }

  #leave(t: Track, c: LocalClient): void {
    const nick = t.locals.get(c);
    if (nick === undefined) return;
    t.locals.delete(c);
    t.rejoins?.delete(c);
    if (t.byNick.get(nick) === c) t.byNick.delete(nick);
    t.multi?.delete(c);
    c.joined.delete(t.key);
    this.#multiChanged(c);
    this.#maybeDrop(t);
  }

  /**
   * Keeps each track's set of local members that are in more than one
   * channel here: only they can hear a QUIT or NICK from elsewhere, so a
   * QUIT in a channel of thousands checks them, not everyone.
   */
  #multiChanged(c: LocalClient): void {
    const many = c.joined.size >= 2;
    for (const key of c.joined.keys()) {
      const t = this.#tracks.get(key);
      if (!t) continue;
      if (many) (t.multi ??= new Set()).add(c);
      else t.multi?.delete(c);
    }
  }

  #maybeDrop(t: Track): void {
    if (t.locals.size > 0 || t.pins > 0 || (t.watchers?.size ?? 0) > 0 || this.#tracks.get(t.key) !== t) {
      return;
    }
    clearTimeout(t.timer);
    this.#tracks.delete(t.key);
    if (!t.stage) { for (const w of t.waiters.splice(0)) w.resolve(); // else once its stage is handed on
     }
  }

  /**
   * Resolves once this worker applied event `seq` of `channel` and handed it
   * to the members (or has no members there). A channel whose last member here
   * just left is dropped at once, but its last stage (that member's own PART
   * or KICK) is still to be handed on: that is waited for too, so the member
   * reads it before the answer to its next command.
   */
  whenApplied(channel: string, seq: number): Promise<void> {
    const key = fold(channel);
    const t = this.#tracks.get(key) ?? this.#staged.find((s) => s.key === key);
    if (!t || t.handedOn >= seq) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    t.waiters.push({ seq, resolve });
    return promise;
  }

  /**
   * Resolves once this worker handed on event `seq` of `channel` to its
   * members (at once when it has, or has no members there). The store said
   * it holds that event: if it has not come over the bus by
   * {@link GAP_WAIT_MS}, it is read from the store, as a gap is.
   */
  caughtUp(channel: string, seq: number): Promise<void> {
    const t = this.#tracks.get(fold(channel));
    if (t && t.last < seq) {
      t.expected = Math.max(t.expected ?? 0, seq);
      if (t.timer === undefined && !t.filling) t.timer = setTimeout(() => void this.#fill(t), GAP_WAIT_MS);
    }
    return this.whenApplied(channel, seq);
  }

  /** A numbered channel event, from here or from the bus. */
  channelEvent(ev: ChannelEvent, origin: string): void {
    const t = this.#tracks.get(fold(ev.channel));
    if (!t || (t.replica && ev.seq <= t.last) || t.pending.has(ev.seq)) return; // nobody here, or a duplicate
    t.pending.set(ev.seq, { ev, origin });
    this.#drain(t);
  }

  #drain(t: Track): void {
    if (!t.replica) return; // loading: everything waits for the snapshot
    for (let next = t.pending.get(t.last + 1); next; next = t.pending.get(t.last + 1)) {
      t.pending.delete(next.ev.seq);
      t.last = next.ev.seq;
      this.#ready.push({ t, ev: next.ev, origin: next.origin });
    }
    clearTimeout(t.timer);
    t.timer = undefined;
    if (this.#missing(t) && !t.filling) t.timer = setTimeout(() => void this.#fill(t), GAP_WAIT_MS);
    this.#kick();
  }

  /** True when events are missing here: before an early one, or up to the number the store said it holds. */
  #missing(t: Track): boolean {
    return t.pending.size > 0 || (t.expected ?? 0) > t.last;
  }

  /**
   * Reads the events missing before the earliest early one (or up to the
   * expected one) from the store, and delivers in order.
   */
  async #fill(t: Track): Promise<void> {
    t.timer = undefined;
    if (!t.replica || !this.#missing(t) || this.#tracks.get(t.key) !== t) return;
    const first = t.pending.size > 0 ? Math.min(...t.pending.keys()) : t.expected! + 1;
    t.filling = true;
    try {
      for (const ev of await this.#store.eventsBetween(t.key, t.last, first)) {
        if (ev.seq > t.last && !t.pending.has(ev.seq)) t.pending.set(ev.seq, { ev, origin: "" });
      }
    } catch (err) {
      logger().error("chat: cannot read events of {ch} to fill a gap: {err}", {
        ch: t.key,
        err: String(err),
      });
    } finally {
      t.filling = false;
    }
    if (!t.pending.has(t.last + 1) && t.pending.size > 0) {
      t.last = Math.min(...t.pending.keys()) - 1; // not in the store either: never happened; move on
      if (t.replica) t.replica.seq = t.last;
    }
    if (t.pending.size === 0 && (t.expected ?? 0) > t.last) {
      // The store no longer has what it said it held (pruned, or the channel ended): nobody waits for it.
      resolveWaiters(t, t.expected!);
      t.expected = undefined;
    }
    this.#drain(t);
  }

  /**
   * Reads, for every channel with members here, the events after the last
   * one applied: what a lost bus message held (a relay dropped, a LISTEN
   * connection that reconnected). Channel by channel, a page at a time.
   */
  async resync(): Promise<void> {
    for (const t of [...this.#tracks.values()]) {
      for (;;) {
        if (this.#closed || this.#tracks.get(t.key) !== t || !t.replica) break;
        const from = t.last;
        const page = await this.#store.eventsBetween(t.key, from, Number.MAX_SAFE_INTEGER, 500);
        for (const ev of page) this.channelEvent(ev, "");
        if (page.length < 500) break;
      }
    }
  }

  /**
   * Applies what is ready, at once while this turn of the event loop has
   * used less than {@link SLICE_MS} for it; the rest in the next turns.
   * What a turn applied is handed on at the start of the next turn, so that
   * every event of the turn (each client's JOIN, each bus bundle) shares one
   * stage per channel.
   */
  #kick(): void {
    if (this.#pumping || this.#head >= this.#ready.length || this.#closed) return;
    if (this.#turnStart === undefined) {
      this.#turnStart = performance.now();
      sliceStarts(this.#turnStart);
      setImmediate(() => { // the next turn: hand on what was applied, then a fresh slice
        this.#turnStart = undefined;
        this.#handOn();
        this.#kick();
      });
    }
    this.#pumping = true;
    try {
      while (this.#head < this.#ready.length && !this.#closed) {
        if (performance.now() - this.#turnStart > SLICE_MS) return;
        const r = this.#ready[this.#head++]!;
        if (this.#tracks.get(r.t.key) === r.t) this.#apply(r.t, r.ev, r.origin);
      }
      this.#ready = [];
      this.#head = 0;
    } finally {
      this.#pumping = false;
      if (this.#head > 4096) (this.#ready = this.#ready.slice(this.#head)), (this.#head = 0);
    }
  }

  /** Hands every staged event to its members; then whoever waited for those events to be applied goes on. */
  #handOn(): void {
    const staged = this.#staged;
    this.#staged = [];
    for (const t of staged) this.#flush(t);
  }

  #flush(t: Track): void {
    const stage = t.stage;
    t.stage = undefined;
    stage?.flush(t.locals.keys(), t.key);
    t.handedOn = t.replica?.seq ?? 0;
    const seq = this.#tracks.get(t.key) === t ? t.handedOn : Infinity;
    resolveWaiters(t, seq);
  }

  /** Applies an event to the channel's replica and stages it for the members. */
  #apply(t: Track, ev: ChannelEvent, origin: string): void {
    const replica = t.replica!;
    const who = fold(splitSource(ev.source).nick);
    const applied = replica.apply(ev);
    if (!t.stage) {
      t.stage = new Stage();
      this.#staged.push(t);
    }
    const stage = t.stage;
    stage.add(ev, origin);
    this.observe(ev);
    for (const w of t.watchers ?? []) w({ t: "event", ev });
    const crossing = ev.kind === "QUIT" || ev.kind === "NICK";
    const sender = origin ? this.#byId.get(origin) : undefined;
    if (sender && t.locals.has(sender) && ((MESSAGES.has(ev.kind) && !sender.echoes) || crossing)) {
      stage.skip(sender, ev.seq);
    }
    if (crossing) {
      for (const m of t.multi ?? []) if (this.#seesElsewhere(m, t.key, who)) stage.skip(m, ev.seq);
    }
    if (applied.renamed) {
      const c = t.byNick.get(applied.renamed.from);
      if (c) {
        t.byNick.delete(applied.renamed.from);
        t.byNick.set(applied.renamed.to, c);
        t.locals.set(c, applied.renamed.to);
      }
    }
    if (applied.left !== undefined) {
      const c = t.byNick.get(applied.left);
      const again = c && t.rejoins?.get(c);
      if (c && again !== undefined && again > ev.seq) {
        stage.left(c, t.key, ev.seq);
        stage.rejoined(c, again);
        t.rejoins!.delete(c);
        c.joined.set(t.key, again); // it left, and is back from its new JOIN on
      } else if (c && (c.joined.get(t.key) ?? Infinity) < ev.seq) {
        stage.left(c, t.key, ev.seq);
        this.#leave(t, c);
      }
    }
    if (stage.size >= STAGE_MAX) {
      this.#staged.splice(this.#staged.indexOf(t), 1);
      this.#flush(t);
    }
  }

  /** True when member `m` still sees `who` in another channel here (its QUIT/NICK reaches `m` from there). */
  #seesElsewhere(m: LocalClient, key: string, who: string): boolean {
    if (m.joined.size < 2) return false;
    for (const other of m.joined.keys()) {
      if (other !== key && this.#tracks.get(other)?.replica?.members.has(who)) return true;
    }
    return false;
  }

  /** Delivers to a local user; false when no such user is here. */
  privateMessage(to: string, out: Outgoing): boolean {
    this.#handOn(); // what its channels staged first
    const c = this.#byNick.get(fold(to));
    c?.deliver(out);
    return c !== undefined;
  }

  /** Local clients sharing a channel with a user (each once), but not `except`. */
  audience(channels: readonly string[], except?: LocalClient): Set<LocalClient> {
    const out = new Set<LocalClient>();
    for (const ch of channels) for (const m of this.#tracks.get(fold(ch))?.locals.keys() ?? []) out.add(m);
    if (except) out.delete(except);
    return out;
  }

  /** Channels with members here. */
  get channels(): number {
    return this.#tracks.size;
  }

  /** Stops the timers and the queue. */
  close(): void {
    this.#closed = true;
    for (const t of this.#tracks.values()) {
      clearTimeout(t.timer);
      for (const w of t.waiters.splice(0)) w.resolve();
    }
    this.#tracks.clear();
  }
}

/** Whoever waits for an event of `t` numbered `upTo` or less goes on. */
function resolveWaiters(t: Track, upTo: number): void {
  for (let i = 0; i < t.waiters.length;) {
    if (t.waiters[i]!.seq <= upTo) t.waiters.splice(i, 1)[0]!.resolve();
    else i++;
  }
}

function newTrack(key: string): Track {
  return {
    key,
    replica: null,
    locals: new Map(),
    byNick: new Map(),
    last: 0,
    pending: new Map(),
    filling: false,
    pins: 0,
    waiters: [],
    handedOn: 0,
  };
}
