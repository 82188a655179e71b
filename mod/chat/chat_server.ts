/**
 * The IRC service of one worker. Every worker listens on the IRC port with
 * `SO_REUSEPORT`, so the kernel spreads connections across them (Deno cannot
 * pass a socket between processes, so a hand-off would relay every byte
 * through a second process). Sessions live here; state lives in the store;
 * events reach the other workers over the bus.
 *
 * Liveness of owners: each worker process is an "owner" in the store and
 * renews a lease every {@link LEASE_MS} (by the store's clock). Its users
 * are reaped (a QUIT in each of their channels, nicknames freed) by whoever
 * notices first that it is gone: the other workers when the dispatcher tells
 * them its link closed, its replacement at boot (SQLite: the store is this
 * instance's alone, so a predecessor in the slot is dead), or anyone whose
 * `LeaseWatch` saw its lease stand still for {@link LEASE_STALE_MS}. A
 * worker that finds its own lease gone (it was reaped while alive: a long
 * store outage, two hosts with one name) ends its sessions — their users are
 * no longer in the store — and starts again under a new owner id.
 *
 * Nothing here blocks the event loop for long: a reap is done a slice of
 * users at a time, delivery is sliced by the hub, and LIST/WHO stream.
 * @module
 */
import { setImmediate } from "node:timers";
import { logger } from "../log.ts";
import { addrKey, Admission } from "../net/admission.ts";
import type { DispatcherLink } from "../link/worker_link.ts";
import { type BusEvent, type ChatBus, LinkBus } from "./chat_bus.ts";
import type { ChatConfig } from "./chat_config.ts";
import { ChatHub, type Watched } from "./chat_hub.ts";
import { type Committed, GroupCommit } from "./group_commit.ts";
import type { Actor, ChannelEvent, ChatStore, EventFields, Retention } from "./chat_store.ts";
import { IrcConn } from "./irc_conn.ts";
import type { IrcSocket } from "./irc_socket.ts";
import { type IrcPort, listenIrcPort, refuse } from "./irc_port.ts";
import { EpollListener } from "./epoll_listener.ts";
import { type ChatContext, IrcSession } from "./irc_session.ts";
import { COMMANDS } from "./commands.ts";
import { openBus, openStore } from "./open_store.ts";
import { LeaseWatch } from "./lease_watch.ts";
import { LoopLag } from "./loop_lag.ts";
import { MallocTrim } from "../sys/memory.ts";
import { CannotBootError } from "../errors.ts";
import { accountPolicy, AccountService } from "./accounts.ts";
import { storesBeside } from "./open_accounts.ts";
import { Monitors } from "./monitor.ts";
import { Moderation } from "./moderation.ts";
import { receiveNotify, userOffline } from "./notify.ts";
import { privateOutgoing } from "./cmd_message.ts";
import type { AccountsApi } from "../http/auth.ts";

/** How often a worker renews its lease in the store. */
export const LEASE_MS = 2_000;
/** A lease that has not moved for this long (as a watcher saw it) is dead: its users are reaped. */
export const LEASE_STALE_MS = 10_000;
/** Users reaped per transaction (then the loop yields). */
const REAP_SLICE = 100;
/** Events the retention removes per lease period. */
const PRUNE_BUDGET = 2_000;
/** A turn of the event loop longer than this is logged (nothing here should ever take so long). */
const BLOCKED_MS = 250;
/** How often the allocator's freed memory is looked at (`MallocTrim`). */
const TRIM_MS = 2_000;
/** How often sessions' timers (registration, PING, ping timeout) are checked. */
const SWEEP_MS = 500;

/** Where a worker's chat service runs. */
export interface ChatPlace {
  readonly host: string;
  /** Names the instance among hosts sharing a PostgreSQL database. */
  readonly instanceName: string;
  readonly slot: number;
  readonly link: DispatcherLink;
}

const nextTurn = () => new Promise<void>((r) => setImmediate(r));

/** A worker's IRC service. */
export class ChatServer {
  readonly #cfg: ChatConfig;
  readonly #place: ChatPlace;
  readonly #store: ChatStore;
  readonly #hub: ChatHub;
  readonly #linkBus: LinkBus;
  readonly #bus: ChatBus;
  #owner: string;
  readonly #server: IrcPort;
  readonly #sessions = new Set<IrcSession>();
  readonly #admission: Admission;
  readonly #slotOwners = new Map<number, string>();
  readonly #watch = new LeaseWatch();
  readonly #releases: Array<{ actor: Actor; reason: string }> = [];
  readonly #ctx: ChatContext;
  #lease: ReturnType<typeof setInterval> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #lag: LoopLag | undefined;
  #trim: MallocTrim | undefined;
  #ticking = false;
  #resyncing: Promise<void> | undefined;
  #resyncAgain = false;
  #next = 0;

  private constructor(
    cfg: ChatConfig,
    place: ChatPlace,
    parts: { store: ChatStore; linkBus: LinkBus; bus: ChatBus; owner: string; listener: IrcPort },
  ) {
    this.#cfg = cfg;
    this.#place = place;
    this.#store = parts.store;
    this.#linkBus = parts.linkBus;
    this.#bus = parts.bus;
    this.#owner = parts.owner;
    this.#hub = new ChatHub(parts.store);
    this.#server = parts.listener;
    this.#admission = new Admission({
      maxConns: cfg.maxClients,
      maxConnsPerAddr: cfg.maxClientsPerAddr,
      ratePerSec: 0,
      rateBurst: 0,
      badTicketLimit: Number.MAX_SAFE_INTEGER,
      badTicketWindowMs: 1,
    });
    const owner = () => this.#owner;
    const beside = storesBeside(parts.store);
    const monitors = new Monitors();
    const moderation = new Moderation();
    this.#hub.observe = (ev) => moderation.observe(ev);
    this.#ctx = {
      cfg,
      store: parts.store,
      hub: this.#hub,
      get owner() {
        return owner();
      },
      startedAt: new Date(),
      commits: new GroupCommit(parts.store, (batch) => this.#handOn(batch)),
      commit: (events, origin) => this.#commit(events, origin),
      publish: (e) => this.#bus.publish(e),
      releaseLater: (actor, reason) => void this.#releases.push({ actor, reason }),
      lag: () => this.#lag?.take() ?? { count: 0, p50: 0, p99: 0, max: 0 },
      trims: () => this.#trim?.stats ?? { trims: 0, lastMs: 0, lastKiB: 0 },
      accounts: new AccountService(beside.accounts, accountPolicy(cfg)),
      lists: beside.lists,
      monitors,
      moderation,
    };
  }

  /** Committed channel messages: delivered here, then published to the other workers, in order. */
  #handOn(batch: readonly Committed[]): void {
    for (const { ev, origin } of batch) this.#hub.channelEvent(ev, origin);
    this.#bus.publishAll(batch.map(({ ev, origin }) => ({ t: "ch", ev, origin })));
  }

  #commit(events: readonly ChannelEvent[], origin: string): void {
    if (events.length === 0) return;
    for (const ev of events) this.#hub.channelEvent(ev, origin);
    this.#bus.publishAll(events.map((ev) => ({ t: "ch", ev, origin })));
  }

  /** Opens the store, listens on the IRC port, reaps what dead predecessors left, and starts serving. */
  static async start(cfg: ChatConfig, place: ChatPlace): Promise<ChatServer> {
    const listener = listenIrcPort(place.host, cfg.ircPort, cfg.ircIo);
    let store: ChatStore | undefined;
    try {
      store = await openStore(cfg);
      const owner = newOwner(place.slot);
      await store.addOwner(owner, place.instanceName, place.slot);
      const linkBus = new LinkBus(place.link, owner);
      const bus = await openBus(cfg, linkBus, owner);
      const chat = new ChatServer(cfg, place, { store, linkBus, bus, owner, listener });
      await chat.#boot();
      return chat;
    } catch (err) {
      listener.close();
      await listener.closed();
      await store?.close();
      throw new CannotBootError(`chat cannot start: ${(err as Error).message}`, { cause: err });
    }
  }

  async #boot(): Promise<void> {
    const onEvent = (e: BusEvent) =>
      void this.#onEvent(e).catch((err) => {
        logger().error("chat: event {t} failed: {err}", { t: e.t, err: String(err) });
      });
    const onGap = () => this.#resync();
    this.#linkBus.onEvent = onEvent;
    this.#linkBus.onGap = onGap;
    if (this.#bus !== this.#linkBus) {
      this.#bus.onEvent = onEvent;
      this.#bus.onGap = onGap;
    }
    if (this.#store.kind === "sqlite") {
      // The SQLite chat is this instance's alone (the watchdog holds its lock): an earlier owner of this
      // slot is a dead predecessor. Across hosts (PostgreSQL) that is judged by watching its lease.
      const { instanceName, slot } = this.#place;
      for (const l of await this.#store.owners()) {
        if (l.owner !== this.#owner && l.instance === instanceName && l.slot === slot) {
          await this.#reap(l.owner, "Connection lost (its worker stopped)");
        }
      }
    }
    this.#linkBus.publish({ t: "hello", slot: this.#place.slot, origin: this.#owner });
    this.#lease = setInterval(() => void this.#tick(), LEASE_MS);
    this.#trim = new MallocTrim(TRIM_MS);
    this.#lag = new LoopLag(
      BLOCKED_MS,
      (ms) => logger().warn("chat: the event loop was blocked for {ms} ms", { ms: Math.round(ms) }),
    );
    const cfg = this.#cfg;
    const sweepMs = Math.max(
      50,
      Math.min(SWEEP_MS, cfg.registerTimeoutMs / 4, cfg.pingMs / 4, cfg.pingTimeoutMs / 4),
    );
    this.#sweepTimer = setInterval(() => {
      const now = performance.now();
      for (const s of this.#sessions) s.sweep(now);
    }, sweepMs);
    this.#server.serve((tcp) => this.#accept(tcp));
    logger().info("chat: IRC on {host}:{port} ({io} sockets, {store} store, owner {owner})", {
      host: this.#place.host,
      port: this.#cfg.ircPort,
      io: this.#server instanceof EpollListener ? "epoll" : "deno",
      store: this.#store.kind,
      owner: this.#owner,
    });
  }

  /** One lease period: renew, notice being reaped, reap the dead, retry releases, heartbeat, retention. */
  async #tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      let renewed: boolean;
      try {
        renewed = await this.#store.touchOwner(this.#owner);
      } catch (err) {
        this.#watch.renewalFailed();
        logger().error("chat: lease renewal failed: {err}", { err: String(err) });
        return;
      }
      if (!renewed) await this.#reaped();
      const { instanceName, slot } = this.#place;
      const dead = this.#watch.dead(
        await this.#store.owners(),
        this.#owner,
        { staleMs: LEASE_STALE_MS, quickMs: LEASE_MS * 2 },
        (l) => l.instance === instanceName && l.slot === slot, // our slot's: a predecessor
      );
      for (const owner of dead) await this.#reap(owner, "Connection lost (its worker stopped)");
      await this.#retryReleases();
      this.#bus.beat();
      if (this.#bus !== this.#linkBus) this.#linkBus.beat();
      await this.#prune();
    } catch (err) {
      logger().error("chat: lease period failed: {err}", { err: String(err) });
    } finally {
      this.#ticking = false;
    }
  }

  /** Our lease is gone: our users were reaped while we lived. End their sessions; start again as a new owner. */
  async #reaped(): Promise<void> {
    const old = this.#owner;
    this.#owner = newOwner(this.#place.slot);
    await this.#store.addOwner(this.#owner, this.#place.instanceName, this.#place.slot);
    this.#bus.rename(this.#owner);
    if (this.#bus !== this.#linkBus) this.#linkBus.rename(this.#owner);
    this.#linkBus.publish({ t: "hello", slot: this.#place.slot, origin: this.#owner });
    let n = 0;
    for (const s of this.#sessions) {
      if (s.registered && s.id.startsWith(`${old}/`)) {
        s.drop("Connection lost (this server was cut off from the chat store)");
        n++;
      }
    }
    logger().error(
      "chat: this worker's lease {old} was reaped while it ran; ended {n} sessions, now {owner}",
      {
        old,
        n,
        owner: this.#owner,
      },
    );
  }

  /** Reaps an owner's users a slice at a time (the loop turns between slices); their QUITs go out. */
  async #reap(owner: string, reason: string): Promise<void> {
    let total = 0;
    for (;;) {
      const departed = await this.#store.reapOwner(owner, reason, REAP_SLICE);
      total += departed.length;
      this.#commit(departed.flatMap((d) => d.events), owner);
      for (const d of departed) userOffline(this.#ctx, d.nick, owner);
      if (departed.length < REAP_SLICE) break;
      await nextTurn();
    }
    this.#linkBus.order.forget(owner);
    if (total > 0) {
      logger().info("chat: reaped {n} users of dead worker process {owner}", { n: total, owner });
    }
  }

  async #retryReleases(): Promise<void> {
    while (this.#releases.length > 0) {
      const r = this.#releases[0]!;
      const d = await this.#store.quit(r.actor, r.reason); // throws while the store is still away
      this.#releases.shift();
      if (d) {
        this.#commit(d.events, r.actor.sid);
        userOffline(this.#ctx, d.nick, r.actor.sid);
      }
    }
  }

  async #prune(): Promise<void> {
    const r: Retention = {
      maxAgeMs: this.#cfg.historyMaxAgeMs,
      maxPerChannel: this.#cfg.historyMaxPerChannel,
    };
    if (r.maxAgeMs > 0 || r.maxPerChannel > 0) await this.#store.prune(r, PRUNE_BUDGET);
  }

  /** Something on the bus was lost: read what every local channel missed (one resync at a time). */
  #resync(): void {
    if (this.#resyncing) {
      this.#resyncAgain = true;
      return;
    }
    this.#resyncing = (async () => {
      do {
        this.#resyncAgain = false;
        try {
          await this.#hub.resync();
        } catch (err) {
          logger().error("chat: resync failed: {err}", { err: String(err) });
        }
      } while (this.#resyncAgain);
      this.#resyncing = undefined;
    })();
  }

  async #onEvent(e: BusEvent): Promise<void> {
    if (e.origin === this.#owner || e.origin.startsWith(`${this.#owner}/`)) return; // ours, already delivered
    const hub = this.#hub;
    switch (e.t) {
      case "ch":
        return hub.channelEvent(e.ev, e.origin);
      case "priv": {
        const to = hub.clients.get(e.to);
        if (to) hub.privateMessage(e.to, privateOutgoing(e.source, e.cmd, to.nick, e.text, e.meta));
        return;
      }
      case "hello":
        this.#slotOwners.set(e.slot, e.origin);
        return;
      case "link-closed": {
        const owner = this.#slotOwners.get(e.slot);
        this.#slotOwners.delete(e.slot);
        if (owner) await this.#reap(owner, `Connection lost (worker ${e.slot} stopped)`);
        return;
      }
      default:
        return receiveNotify(this.#ctx, e);
    }
  }

  /**
   * A connection to the IRC port: admitted under the per-address and
   * overall caps (at a cap, the oldest connection that has not registered
   * yet, of that address or any, is closed to make room: idle sockets never
   * lock out a client that speaks), then served.
   */
  async #accept(tcp: IrcSocket): Promise<void> {
    const host = (tcp.remoteAddr as Deno.NetAddr).hostname;
    let session: IrcSession | undefined;
    const admitted = this.#admission.admit(addrKey(host), (why) => {
      if (session) session.close(`Closed to make room: ${why.reason}`);
      else tcp.close();
    });
    if (Admission.refused(admitted)) return await refuse(tcp, host, admitted.reason);
    try {
      await this.serve(tcp, undefined, [], (s) => {
        session = s;
        s.admitted = admitted;
      });
    } finally {
      admitted.release();
    }
  }

  /**
   * Serves one IRC connection until it ends. `initial` and `preset` come
   * with a hand-over (`osps chat`); a connection handed over (or a
   * WebSocket) was admitted by the door it came through.
   */
  async serve(
    tcp: IrcSocket,
    initial?: Uint8Array,
    preset: readonly string[] = [],
    made: (s: IrcSession) => void = () => {},
  ): Promise<void> {
    const conn = new IrcConn(tcp, {
      maxLineBytes: this.#cfg.maxLineBytes,
      sendqBytes: this.#cfg.sendqBytes,
      initial,
    });
    const session = new IrcSession(this.#ctx, conn, `${this.#owner}/${++this.#next}`, COMMANDS);
    this.#sessions.add(session);
    made(session);
    try {
      await session.run(preset);
    } finally {
      this.#sessions.delete(session);
    }
  }

  /** The link to the dispatcher carried a message. */
  fromLink(bytes: Uint8Array): void {
    this.#linkBus.receive(bytes);
  }

  /** The dispatcher (re)connected: flush what waited, and say who serves this slot. */
  linkConnected(): void {
    this.#linkBus.connected();
    this.#linkBus.publish({ t: "hello", slot: this.#place.slot, origin: this.#owner });
  }

  /**
   * The account service (`mod/chat/accounts.ts`): the HTTP API's Basic and
   * bearer auth use it as SASL and NickServ do.
   */
  get accounts(): AccountsApi {
    return this.#ctx.accounts;
  }

  /** The store (the HTTP API reads channels and history from it). */
  get store(): ChatStore {
    return this.#store;
  }

  /** Watches a channel's events on this worker (the HTTP API's event streams); returns the stop function. */
  watch(channel: string, fn: (w: Watched) => void): () => void {
    return this.#hub.watch(channel, fn);
  }

  /**
   * Stores a channel message from outside IRC (the HTTP API), numbered with
   * the channel's other events (group commit), then delivered here and
   * published to the other workers, as a member's PRIVMSG is. Null when the
   * channel is gone.
   */
  say(channel: string, event: EventFields): Promise<ChannelEvent | null> {
    const origin = `${this.#owner}/http${++this.#next}`;
    return this.#ctx.commits.append({ channel, event }, { origin, live: () => true });
  }

  /** IRC sessions open. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Stops listening, ends every session with an ERROR; their users leave (QUIT told), a slice at a time. */
  async close(reason = "Server shutting down"): Promise<void> {
    clearInterval(this.#lease);
    clearInterval(this.#sweepTimer);
    this.#lag?.stop();
    this.#trim?.stop();
    this.#server.close();
    for (const s of this.#sessions) s.drop(reason);
    await this.#server.conns.idle(2_000);
    await this.#server.closed();
    try {
      await this.#reap(this.#owner, reason);
    } catch { /* the database is gone: the lease runs out */ }
    this.#hub.close();
    await this.#bus.close();
    if (this.#bus !== this.#linkBus) await this.#linkBus.close();
    await this.#store.close();
  }
}

/** A fresh owner id for slot `slot`: `<slot>.<random>`. */
function newOwner(slot: number): string {
  return `${slot}.${crypto.randomUUID().slice(0, 8)}`;
}
