/**
 * The IRC service of one worker. Every worker listens on the IRC port with
 * `SO_REUSEPORT`, so the kernel spreads connections across them (Deno cannot
 * pass a socket between processes, so a hand-off would relay every byte
 * through a second process). Sessions live here; state lives in the store;
 * events reach the other workers over the bus.
 *
 * Liveness of owners: each worker process is an "owner" in the store and
 * renews a lease every {@link LEASE_MS}. Its users are reaped (removed from
 * their channels, QUIT told, nicknames freed) by whoever notices first that
 * it is gone: the other workers when the dispatcher tells them its link
 * closed, its replacement at boot, or anyone once its lease is stale — so a
 * nickname never stays held by a dead process, replaced or not.
 * @module
 */
import { logger } from "../log.ts";
import { Server } from "../net/server.ts";
import type { DispatcherLink } from "../link/worker_link.ts";
import { type BusEvent, type ChatBus, LinkBus } from "./chat_bus.ts";
import type { ChatConfig } from "./chat_config.ts";
import { ChatHub, type Watched } from "./chat_hub.ts";
import { type Committed, GroupCommit } from "./group_commit.ts";
import type { ChannelEvent, ChatStore } from "./chat_store.ts";
import { IrcConn } from "./irc_conn.ts";
import { type ChatContext, IrcSession } from "./irc_session.ts";
import { COMMANDS } from "./commands.ts";
import { openBus, openStore } from "./open_store.ts";
import { CannotBootError } from "../errors.ts";
import { accountPolicy, AccountService } from "./accounts.ts";
import { storesBeside } from "./open_accounts.ts";
import { Monitors } from "./monitor.ts";
import { Moderation } from "./moderation.ts";
import { receiveNotify } from "./notify.ts";
import { privateOutgoing } from "./cmd_message.ts";
import type { AccountsApi } from "../http/auth.ts";

/** How often a worker renews its lease in the store. */
export const LEASE_MS = 2_000;
/** A lease not renewed for this long is dead: its users are reaped. */
export const LEASE_STALE_MS = 10_000;

/** Where a worker's chat service runs. */
export interface ChatPlace {
  readonly host: string;
  /** The dispatcher's port: names the instance and its SQLite file. */
  readonly instancePort: number;
  /** Names the instance among hosts sharing a PostgreSQL database. */
  readonly instanceName: string;
  readonly slot: number;
  readonly link: DispatcherLink;
}

/** A worker's IRC service. */
export class ChatServer {
  readonly #cfg: ChatConfig;
  readonly #place: ChatPlace;
  readonly #store: ChatStore;
  readonly #hub: ChatHub;
  readonly #linkBus: LinkBus;
  readonly #bus: ChatBus;
  readonly #owner: string;
  readonly #server: Server;
  readonly #sessions = new Set<IrcSession>();
  readonly #slotOwners = new Map<number, string>();
  readonly #ctx: ChatContext;
  #lease: ReturnType<typeof setInterval> | undefined;
  #next = 0;

  private constructor(
    cfg: ChatConfig,
    place: ChatPlace,
    parts: { store: ChatStore; linkBus: LinkBus; bus: ChatBus; owner: string; listener: Deno.TcpListener },
  ) {
    this.#cfg = cfg;
    this.#place = place;
    this.#store = parts.store;
    this.#linkBus = parts.linkBus;
    this.#bus = parts.bus;
    this.#owner = parts.owner;
    this.#hub = new ChatHub(parts.store);
    this.#server = new Server(parts.listener);
    const beside = storesBeside(parts.store);
    const monitors = new Monitors();
    const moderation = new Moderation();
    this.#hub.presence = monitors;
    this.#hub.observe = (ev) => moderation.observe(ev);
    this.#ctx = {
      cfg,
      store: parts.store,
      hub: this.#hub,
      owner: parts.owner,
      startedAt: new Date(),
      commits: new GroupCommit(parts.store, (batch) => this.#handOn(batch)),
      handOn: (batch) => this.#handOn(batch),
      publish: (e) => this.#bus.publish(e),
      accounts: new AccountService(beside.accounts, accountPolicy(cfg)),
      lists: beside.lists,
      monitors,
      moderation,
    };
  }

  /** Committed channel events: delivered here, then published to the other workers, in order. */
  #handOn(batch: readonly Committed[]): void {
    for (const { ev, origin } of batch) this.#hub.channelEvent(ev, origin);
    this.#bus.publishAll(batch.map(({ ev, origin }) => ({ t: "ch", ev, origin })));
  }

  /** Opens the store, listens on the IRC port, reaps what dead predecessors left, and starts serving. */
  static async start(cfg: ChatConfig, place: ChatPlace): Promise<ChatServer> {
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: place.host, port: cfg.ircPort, reusePort: true });
    } catch (err) {
      throw new CannotBootError(
        `chat cannot listen on ${place.host}:${cfg.ircPort}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
    let store: ChatStore | undefined;
    try {
      store = await openStore(cfg, place.instancePort);
      const owner = `${place.slot}.${crypto.randomUUID().slice(0, 8)}`;
      await store.addOwner(owner, place.instanceName, place.slot);
      const linkBus = new LinkBus(place.link);
      const bus = await openBus(cfg, linkBus);
      const chat = new ChatServer(cfg, place, { store, linkBus, bus, owner, listener });
      await chat.#boot();
      return chat;
    } catch (err) {
      listener.close();
      await store?.close();
      throw new CannotBootError(`chat cannot start: ${(err as Error).message}`, { cause: err });
    }
  }

  async #boot(): Promise<void> {
    const onEvent = (e: BusEvent) =>
      void this.#onEvent(e).catch((err) => {
        logger().error("chat: event {t} failed: {err}", { t: e.t, err: String(err) });
      });
    this.#linkBus.onEvent = onEvent;
    if (this.#bus !== this.#linkBus) this.#bus.onEvent = onEvent;
    await this.#reapDead();
    this.#linkBus.publish({ t: "hello", slot: this.#place.slot, origin: this.#owner });
    this.#lease = setInterval(() => {
      void this.#store.touchOwner(this.#owner).then(() => this.#reapDead()).catch((err) =>
        logger().error("chat: lease renewal failed: {err}", { err: String(err) })
      );
    }, LEASE_MS);
    this.#server.serve((tcp) => this.serve(tcp));
    logger().info("chat: IRC on {host}:{port} ({store} store, owner {owner})", {
      host: this.#place.host,
      port: this.#cfg.ircPort,
      store: this.#store.kind,
      owner: this.#owner,
    });
  }

  /** Reaps owners of this slot (predecessors) and owners whose lease is stale. */
  async #reapDead(): Promise<void> {
    const { instanceName, slot } = this.#place;
    for (const dead of await this.#store.deadOwners(instanceName, slot, this.#owner, LEASE_STALE_MS)) {
      await this.#reap(dead, "Connection lost (its worker stopped)");
    }
  }

  async #reap(owner: string, reason: string): Promise<void> {
    const departed = await this.#store.reapOwner(owner);
    for (const d of departed) {
      this.#hub.quit(d, reason);
      this.#bus.publish({ t: "quit", d, reason, origin: this.#owner });
    }
    if (departed.length > 0) {
      logger().info("chat: reaped {n} users of dead worker process {owner}", { n: departed.length, owner });
    }
  }

  async #onEvent(e: BusEvent): Promise<void> {
    if (e.origin === this.#owner || e.origin.startsWith(`${this.#owner}/`)) return; // ours, already delivered
    const hub = this.#hub;
    switch (e.t) {
      case "ch":
        return hub.channelEvent(e.ev, e.origin);
      case "priv": {
        const to = hub.clients.get(e.to);
        if (to) to.deliver(privateOutgoing(e.source, e.cmd, to.nick, e.text, e.meta ?? { at: Date.now() }));
        return;
      }
      case "quit":
        return hub.quit(e.d, e.reason);
      case "nick":
        return hub.nick(e.source, e.nick, e.channels);
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

  /** Serves one IRC connection until it ends. `initial` and `preset` come with a hand-over (`osps chat`). */
  async serve(tcp: Deno.Conn, initial?: Uint8Array, preset: readonly string[] = []): Promise<void> {
    const conn = new IrcConn(tcp, {
      maxLineBytes: this.#cfg.maxLineBytes,
      sendqBytes: this.#cfg.sendqBytes,
      initial,
    });
    const session = new IrcSession(this.#ctx, conn, `${this.#owner}/${++this.#next}`, COMMANDS);
    this.#sessions.add(session);
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
   * The account service, where the chat has one (`mod/chat/accounts.ts`):
   * the HTTP API's Basic and bearer auth use it as SASL and NickServ do.
   */
  get accounts(): AccountsApi | undefined {
    return (this.#ctx as { accounts?: AccountsApi }).accounts;
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
  say(
    channel: string,
    event: Pick<ChannelEvent, "kind" | "source" | "params"> & { readonly account?: string },
  ): Promise<ChannelEvent | null> {
    const origin = `${this.#owner}/http${++this.#next}`;
    return this.#ctx.commits.append({ channel, event }, { origin, live: () => true });
  }

  /** IRC sessions open. */
  get sessions(): number {
    return this.#sessions.size;
  }

  /** Stops listening, ends every session with an ERROR (their QUITs go out), and closes the store. */
  async close(reason = "Server shutting down"): Promise<void> {
    clearInterval(this.#lease);
    this.#server.close();
    for (const s of this.#sessions) s.close(reason);
    await this.#server.conns.idle(2_000);
    await this.#server.closed();
    try {
      await this.#store.reapOwner(this.#owner);
    } catch { /* the database is gone: the lease runs out */ }
    this.#hub.close();
    await this.#bus.close();
    if (this.#bus !== this.#linkBus) await this.#linkBus.close();
    await this.#store.close();
  }
}
