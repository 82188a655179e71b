/**
 * Fan-out between workers: what one worker publishes after it has stored it,
 * every other worker receives. {@link ChatBus} is the interface; `LinkBus`
 * (here) carries events over the worker's link to the dispatcher, which
 * relays them to the other workers of the instance (the seed's "message
 * broker", without a second server to run); `postgres_bus.ts` carries them
 * between instances with PostgreSQL's LISTEN/NOTIFY.
 *
 * The bus is not the truth, the store is: a receiver that sees a gap in a
 * channel's numbering reads the missing events from the store (see
 * `chat_hub.ts`), so an event lost in transit (a dispatcher restarting) is
 * late, never lost or duplicated.
 *
 * Events travel in bundles: one transport message holds a JSON array of
 * events, in order (a group commit's messages go out as one), so a burst
 * costs one write and one relay instead of one per event.
 * @module
 */
import type { DispatcherLink } from "../link/worker_link.ts";
import { decodeLinkNotice } from "../dispatch/relay.ts";
import { MAX_LINK_MESSAGE } from "../net/protocol.ts";
import { logger } from "../log.ts";
import type { ChannelEvent, Departed } from "./chat_store.ts";
import type { NotifyEvent } from "./notify.ts";
import type { TagMeta } from "./tags.ts";

/** What workers tell each other. `origin` is the sending connection (`owner/n`), or the owner alone. */
export type BusEvent =
  /** A numbered channel event, already stored. */
  | { readonly t: "ch"; readonly ev: ChannelEvent; readonly origin: string }
  /** A message to one user (by folded nick). */
  | {
    readonly t: "priv";
    readonly to: string;
    readonly source: string;
    readonly cmd: "PRIVMSG" | "NOTICE" | "TAGMSG";
    readonly text: string;
    readonly origin: string;
    /** Its msgid, time, sender's account and client-only tags (IRCv3). */
    readonly meta?: TagMeta;
  }
  /** A user left every channel (QUIT, a vanished client, a dead worker). */
  | { readonly t: "quit"; readonly d: Departed; readonly reason: string; readonly origin: string }
  /** A user changed nickname. */
  | {
    readonly t: "nick";
    readonly source: string;
    readonly nick: string;
    readonly channels: readonly string[];
    readonly origin: string;
  }
  /** A worker process serves slot `slot` as owner `origin` (so that its death can be mapped to its users). */
  | { readonly t: "hello"; readonly slot: number; readonly origin: string }
  /** The dispatcher saw worker `slot`'s link close (relayed, never published by workers). */
  | { readonly t: "link-closed"; readonly slot: number; readonly origin: "" }
  /** Notifications about users that are not channel events (`notify.ts`). */
  | NotifyEvent;

/** Fan-out transport between workers. */
export interface ChatBus {
  /** Sends `e` to every other worker (never back to this one); keeps it while the transport is down. */
  publish(e: BusEvent): void;
  /** Sends several events, in order, in as few transport messages as fit. */
  publishAll(events: readonly BusEvent[]): void;
  /** Where received events go. */
  onEvent: (e: BusEvent) => void;
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes events as JSON arrays of at most `maxBytes` bytes each (an event
 * larger than that alone in its own), keeping their order.
 *
 * @example
 * ```ts
 * const [bytes] = bundleEvents([{ t: "hello", slot: 1, origin: "1.a" }], 65536); // `[{"t":"hello",…}]`
 * ```
 */
export function bundleEvents(events: readonly BusEvent[], maxBytes: number): Uint8Array[] {
  const bundles: Uint8Array[] = [];
  let parts: Uint8Array[] = [];
  let size = 1; // "[", then each part with its "," or "]"
  const close = () => {
    if (parts.length === 0) return;
    const out = new Uint8Array(size);
    out[0] = 0x5b; // "["
    let off = 1;
    parts.forEach((p, i) => {
      if (i > 0) out[off++] = 0x2c; // ","
      out.set(p, off);
      off += p.length;
    });
    out[off] = 0x5d; // "]"
    bundles.push(out);
    parts = [];
    size = 1;
  };
  for (const e of events) {
    const bytes = encoder.encode(JSON.stringify(e));
    if (parts.length > 0 && size + bytes.length + 1 > maxBytes) close();
    parts.push(bytes);
    size += bytes.length + 1;
  }
  close();
  return bundles;
}

/** Decodes a bundle (a JSON array of events) or a single event; throws on malformed JSON. */
export function unbundleEvents(text: string): BusEvent[] {
  const parsed = JSON.parse(text) as BusEvent | BusEvent[];
  return Array.isArray(parsed) ? parsed : [parsed];
}

/** Bundles kept while the dispatcher is away, oldest dropped first past this (the store fills gaps). */
const MAX_BACKLOG = 10_000;

/** {@link ChatBus} over the worker's link: the dispatcher relays to the instance's other workers. */
export class LinkBus implements ChatBus {
  readonly #link: DispatcherLink;
  readonly #backlog: Uint8Array[] = [];
  #retry: ReturnType<typeof setTimeout> | undefined;
  onEvent: (e: BusEvent) => void = () => {};

  constructor(link: DispatcherLink) {
    this.#link = link;
  }

  publish(e: BusEvent): void {
    this.publishAll([e]);
  }

  publishAll(events: readonly BusEvent[]): void {
    for (const bytes of bundleEvents(events, MAX_LINK_MESSAGE)) {
      if (this.#backlog.length === 0 && this.#link.send(bytes)) continue;
      this.#backlog.push(bytes);
      if (this.#backlog.length > MAX_BACKLOG) this.#backlog.shift();
      this.#scheduleFlush();
    }
  }

  /** The dispatcher (re)connected: send what waited. */
  connected(): void {
    this.#flush();
  }

  #flush(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
    while (this.#backlog.length > 0 && this.#link.send(this.#backlog[0]!)) this.#backlog.shift();
    if (this.#backlog.length > 0) this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    this.#retry ??= setTimeout(() => this.#flush(), 100);
  }

  /** A message from the link's data channel. */
  receive(bytes: Uint8Array): void {
    const notice = decodeLinkNotice(bytes);
    if (notice) return this.onEvent({ t: "link-closed", slot: notice.worker, origin: "" });
    let events: BusEvent[];
    try {
      events = unbundleEvents(decoder.decode(bytes));
    } catch (err) {
      logger().warn("chat: dropped a malformed link message: {err}", { err: String(err) });
      return;
    }
    for (const e of events) this.onEvent(e);
  }

  close(): Promise<void> {
    clearTimeout(this.#retry);
    return Promise.resolve();
  }
}
