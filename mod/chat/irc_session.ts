/**
 * One IRC client connection in a worker: reads lines, applies flood control,
 * hands each command to its handler (`commands.ts`), and owns the
 * connection's timers (registration timeout, PING after silence, drop after
 * an unanswered PING). However it ends — QUIT, a vanished client, a send
 * queue overflow, a timeout, the worker stopping — the user leaves every
 * channel, the others get a QUIT with the reason, and the nickname is free;
 * a command still running finishes first, so nothing it does outlives the
 * session.
 * @module
 */
import { commandSlice, inSlice } from "./loop_slice.ts";
import { logger } from "../log.ts";
import { sleep } from "../deadline.ts";
import type { BusEvent } from "./chat_bus.ts";
import type { ChatConfig } from "./chat_config.ts";
import type { ChatHub, LocalClient } from "./chat_hub.ts";
import type { Actor, ChannelEvent, ChatStore } from "./chat_store.ts";
import type { GroupCommit, Sender } from "./group_commit.ts";
import { FakeLag } from "./fake_lag.ts";
import { IrcConn, TOO_LONG } from "./irc_conn.ts";
import { displayHost, formatMessage, type IrcMessage, parseMessage } from "./irc_message.ts";
import { N } from "./numerics.ts";
import type { LagStats } from "./loop_lag.ts";
import type { TrimStats } from "../sys/memory.ts";
import type { OutgoingBatch } from "./fanout.ts";
import type { Admitted } from "../net/admission.ts";
import type { AccountService } from "./accounts.ts";
import type { ListStore } from "./list_store.ts";
import type { Monitors } from "./monitor.ts";
import type { Moderation } from "./moderation.ts";
import type { SaslExchange } from "./sasl.ts";
import { labelOf, runLabeled } from "./labeled.ts";
import { rememberNick } from "./presence.ts";
import { userOffline } from "./notify.ts";
import { Outgoing, TagMask } from "./tags.ts";

/** What a session and its command handlers share with the rest of the worker. */
export interface ChatContext {
  readonly cfg: ChatConfig;
  readonly store: ChatStore;
  readonly hub: ChatHub;
  /** Channel messages are stored through this, in groups (delivered and published once committed). */
  readonly commits: GroupCommit;
  /** This worker process's owner id in the store. */
  readonly owner: string;
  readonly startedAt: Date;
  /** Stored channel events: delivered here, then published to the other workers, in order. */
  commit(events: readonly ChannelEvent[], origin: string): void;
  /** Sends a non-channel event (a private message) to the other workers. */
  publish(e: BusEvent): void;
  /** A user whose QUIT could not be stored (the store is down): retried until it is, so no ghost stays. */
  releaseLater(actor: Actor, reason: string): void;
  /** This worker's event-loop delays since the last call (`STATS L`). */
  lag(): LagStats;
  /** What this worker's allocator trimming did (`STATS z`). */
  trims(): TrimStats;
  /** Accounts: SASL, REGISTER, NickServ (`accounts.ts`). */
  readonly accounts: AccountService;
  /** Ban lists, invitations, WHOWAS, counts (`list_store.ts`). */
  readonly lists: ListStore;
  /** MONITOR lists of this worker's sessions. */
  readonly monitors: Monitors;
  /** Which channels may refuse a member's message (+m, bans). */
  readonly moderation: Moderation;
}

/** A command handler. */
export interface Command {
  /** Parameters required (else 461). */
  readonly min: number;
  /** Allowed before registration. */
  readonly early?: boolean;
  /**
   * Runs while this session's earlier channel messages are still being
   * committed (it waits with {@link IrcSession.settled} where its effects
   * must follow theirs). Every other command waits for them first.
   */
  readonly pipelined?: boolean;
  run(s: IrcSession, m: IrcMessage): void | Promise<void>;
}

/** Channel messages of one session queued and not yet committed, past which it stops reading ahead. */
export const MAX_UNCOMMITTED = 256;

/** A settled promise, shared: every session starts with nothing in flight (one object, not two per session). */
const SETTLED: Promise<void> = Promise.resolve();

/** How a session ended, for logs and the QUIT the others see. */
export type CloseReason = string;

/** One client connection. */
export class IrcSession implements LocalClient, Sender {
  readonly id: string;
  readonly ctx: ChatContext;
  readonly conn: IrcConn;
  readonly joined = new Map<string, number>();
  /** Capabilities the client enabled (`caps.ts`). */
  readonly caps = new Set<string>();
  readonly host: string;
  nick = "*";
  user = "";
  realname = "";
  away = "";
  modes = "";
  /** Registered: the nickname is held in the store. */
  registered = false;
  /** CAP LS/REQ was seen: registration waits for CAP END. */
  capHold = false;
  /** Highest `CAP LS` version the client spoke (302: values, multi-line, cap-notify). */
  capVersion = 0;
  /** Which tags this client receives (`tags.ts`), from its capabilities: clients alike share encodings. */
  tagMask = 0;
  /** Account logged in to ("" when none). */
  account = "";
  /** A SASL exchange in progress. */
  sasl: SaslExchange | null = null;
  /** Nicknames this client MONITORs: folded → as given; null until it monitors one (most never do). */
  monitoring: Map<string, string> | null = null;
  /** Renames this user when it keeps a registered nickname without identifying (`nick_guard.ts`). */
  guard: ReturnType<typeof setTimeout> | undefined;
  /** Its place under the IRC port's connection caps: it may be closed to make room until it registers. */
  admitted: Admitted | undefined;
  passOk: boolean;
  userGiven = false;
  #quitting: CloseReason | undefined;
  #closing: Promise<void> | undefined;
  #released = false;
  readonly #openedAt = performance.now();
  #lastInput = this.#openedAt;
  #pingSent = false;
  /** Settles after the last channel message queued for commit (they commit in order). */
  #lastCommit: Promise<void> = SETTLED;
  #uncommitted = 0;
  /** The command running now (the session's end waits for it). */
  #inflight: Promise<void> = SETTLED;
  /** A queued message's store failure: the session ends with it, as a failed command ends it. */
  #failure: { err: unknown } | undefined;
  readonly #lag: FakeLag;
  readonly #commands: Readonly<Record<string, Command>>;

  constructor(
    ctx: ChatContext,
    conn: IrcConn,
    id: string,
    commands: Readonly<Record<string, Command>>,
  ) {
    this.ctx = ctx;
    this.conn = conn;
    this.id = id;
    this.host = displayHost(conn.remoteHost);
    this.passOk = ctx.cfg.password === "";
    this.#commands = commands;
    this.#lag = new FakeLag(ctx.cfg.floodBurst, ctx.cfg.floodRate);
    conn.onOverflow = () => this.close(`SendQ exceeded (${ctx.cfg.sendqBytes} bytes)`);
  }

  /** The origin key of events this connection caused ({@link Sender}). */
  get origin(): string {
    return this.id;
  }

  /** Who this session is in the store: its nickname and its session id. */
  get actor(): Actor {
    return { nick: this.nick, sid: this.id, source: this.source };
  }

  /** Its own messages come back to it (IRCv3 echo-message). */
  get echoes(): boolean {
    return this.caps.has("echo-message");
  }

  /** False once a queued message of this session failed to be stored ({@link Sender}). */
  live(): boolean {
    return this.#failure === undefined;
  }

  /**
   * Tracks a channel message queued for group commit: later commands wait
   * for it ({@link settled}); its failure ends the session. Waits only when
   * {@link MAX_UNCOMMITTED} messages are already queued.
   */
  async pipeline(commit: Promise<unknown>): Promise<void> {
    this.#uncommitted++;
    this.#lastCommit = commit.then(() => {}, (err: unknown) => {
      this.#failure ??= { err };
      this.conn.close(); // stops reading: the loop ends, and the session fails as a failed command fails it
    }).finally(() => this.#uncommitted--);
    if (this.#uncommitted >= MAX_UNCOMMITTED) await this.settled();
  }

  /** Resolves once every channel message this session queued is settled (committed, handed on here); throws the first failure. */
  async settled(): Promise<void> {
    await this.#lastCommit;
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#failure) throw this.#failure.err;
  }

  /** `nick!user@host`. */
  get source(): string {
    return `${this.nick}!${this.user}@${this.host}`;
  }

  /**
   * Delivers a message with the tags this client asked for ({@link LocalClient}):
   * the bytes every recipient with the same tags shares. One of its own doing
   * (`own`; by default: caused by this connection) is its response: part of a
   * labeled command's answer.
   */
  deliver(out: Outgoing, own = out.origin === this.id): void {
    if (own) this.conn.send(out.line(this.tagMask));
    else this.conn.sendBytes(out.bytes(this.tagMask));
  }

  /** A channel's stage of events ({@link LocalClient}): one shared buffer for every member with the same tags. */
  deliverAll(batch: OutgoingBatch): void {
    if (this.conn.capture && batch.outs.some((o) => o.origin === this.id)) {
      for (const out of batch.outs) this.deliver(out); // its own events go into the labeled response
    } else this.conn.sendBytes(batch.bytes(this.tagMask));
  }

  /** Queues a line of this client's own doing (a response), with a `time` tag if it enabled server-time. */
  send(line: string, at = Date.now()): void {
    this.conn.send(this.tagMask & TagMask.time ? new Outgoing(line, { at }).line(TagMask.time) : line);
  }

  /** Sends a numeric reply to this client (`:server NNN nick params…`). */
  reply(numeric: string, ...params: string[]): void {
    this.conn.send(formatMessage(this.ctx.cfg.serverName, numeric, [this.nick, ...params]));
  }

  /** Sends a numeric reply whose last parameter is text (always with a colon). */
  replyText(numeric: string, ...params: string[]): void {
    this.conn.send(
      formatMessage(this.ctx.cfg.serverName, numeric, [this.nick, ...params], { trailing: true }),
    );
  }

  /** Serves the connection until it ends; `preset` lines are handled first (a hand-over's NICK and USER). */
  async run(preset: readonly string[] = []): Promise<void> {
    let reason: CloseReason = "Connection closed";
    try {
      for (const line of preset) await (this.#inflight = this.#handle(line));
      while (this.#quitting === undefined) {
        const line = await this.conn.readLine();
        if (line === null) break;
        this.#lastInput = performance.now();
        this.#pingSent = false;
        if (line === TOO_LONG) {
          this.replyText(N.ERR_INPUTTOOLONG, "Input line too long");
          continue;
        }
        const wait = this.#lag.take();
        if (wait > 0) await sleep(wait);
        await commandSlice(); // a long turn yields before the next command (loop_slice.ts)
        await (this.#inflight = this.#handle(line));
      }
      await this.settled();
    } catch (err) {
      reason = "Internal error";
      logger().error("chat: session {id} failed: {err}", { id: this.id, err: String(err) });
    } finally {
      // Thousands of connections can end in one wake-up (a client host or a NAT gateway gone): each leaving
      // stores its QUIT, so they take turns in the shared slice instead of all running in one turn (2,000
      // at once held the loop 291 ms).
      await inSlice(() => this.#leave(this.#quitting ?? reason));
    }
  }

  async #handle(line: string): Promise<void> {
    this.#throwIfFailed();
    if (line.includes("\0")) return;
    const m = parseMessage(line);
    if (!m || this.#quitting !== undefined) return;
    const label = labelOf(this, m);
    if (label !== undefined) return await runLabeled(this, label, () => this.#dispatch(m, true));
    await this.#dispatch(m, false);
  }

  /** True while a labeled command runs: its effects must be complete when it returns. */
  get labeling(): boolean {
    return this.conn.capture !== null;
  }

  async #dispatch(m: IrcMessage, labeled: boolean): Promise<void> {
    const cmd = Object.hasOwn(this.#commands, m.command) ? this.#commands[m.command] : undefined;
    if (!cmd) {
      if (this.registered) this.replyText(N.ERR_UNKNOWNCOMMAND, m.command, "Unknown command");
      else this.replyText(N.ERR_NOTREGISTERED, "You have not registered");
      return;
    }
    if (!this.registered && !cmd.early) return this.replyText(N.ERR_NOTREGISTERED, "You have not registered");
    if (m.params.length < cmd.min) {
      return this.replyText(N.ERR_NEEDMOREPARAMS, m.command, "Not enough parameters");
    }
    if (!cmd.pipelined || labeled) await this.settled();
    await cmd.run(this, m);
  }

  /** The nickname is now held: registration is over (and the connection is no longer closed to make room). */
  registeredNow(): void {
    this.registered = true;
    this.admitted?.spoke();
  }

  /**
   * The connection's timers, checked by the server's sweep (one timer for
   * every session, not two per session: thousands of idle connections cost
   * no timer each): registration timeout, PING after silence, drop after an
   * unanswered PING.
   */
  sweep(now: number): void {
    if (this.#quitting !== undefined) return;
    const cfg = this.ctx.cfg;
    if (!this.registered && !this.#released && now - this.#openedAt >= cfg.registerTimeoutMs) {
      return this.close(`Registration timed out (${cfg.registerTimeoutMs} ms)`);
    }
    const silent = now - this.#lastInput;
    if (this.#pingSent) {
      if (silent >= cfg.pingMs + cfg.pingTimeoutMs) {
        this.close(`Ping timeout: ${Math.round(silent / 1000)} seconds`);
      }
    } else if (silent >= cfg.pingMs) {
      this.#pingSent = true;
      this.conn.send(`PING :${cfg.serverName}`);
    }
  }

  /** Ends the session: an ERROR line to the client, then the socket closes; the others see `reason`. */
  close(reason: CloseReason, errorText = reason): void {
    if (this.#quitting !== undefined) return;
    this.#quitting = reason;
    // The nickname is free, and the QUIT told, before the client sees its link close: a client that
    // reconnects at once (irssi does) gets its nickname back instead of 433.
    this.#closing = this.#release(reason).finally(async () => {
      this.conn.send(`ERROR :Closing Link: ${this.host} (${errorText})`);
      // Give the ERROR line a moment to leave, unless the queue is what overflowed; then unblock the reader.
      await this.conn.flush(500);
      this.conn.close();
    });
  }

  /**
   * Ends the session without a QUIT: its user is already gone from the
   * store (its worker was reaped while it lived), so there is nothing to
   * release and no one to tell.
   */
  drop(text: string): void {
    this.#released = true;
    this.registered = false;
    this.close(text);
  }

  /** True once the session is ending. */
  get closing(): boolean {
    return this.#quitting !== undefined;
  }

  async #leave(reason: CloseReason): Promise<void> {
    if (this.#closing) await this.#closing;
    this.conn.close();
    this.ctx.hub.unregister(this);
    this.ctx.monitors.clear(this);
    clearTimeout(this.guard);
    await this.#release(reason);
  }

  /** Frees the nickname and tells the others (once, whoever calls first), after the command running. */
  async #release(reason: CloseReason): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#inflight.catch(() => {});
    await this.#lastCommit; // its messages reach the others before its QUIT
    this.ctx.hub.unregister(this);
    if (!this.registered) return;
    this.registered = false;
    const actor = this.actor;
    try {
      // Its turn in the slice again right before the QUIT's transaction (synchronous on SQLite): the look
      // before the awaits above let a thousand sessions through at once (loop held 200–360 ms).
      const d = await inSlice(() => this.ctx.store.quit(actor, reason));
      if (!d) return;
      this.ctx.commit(d.events, this.id);
      userOffline(this.ctx, d.nick, this.id);
      await rememberNick(this); // WHOWAS
    } catch (err) {
      logger().error("chat: cannot release {nick} (retrying): {err}", { nick: this.nick, err: String(err) });
      this.ctx.releaseLater(actor, reason);
    }
  }
}
