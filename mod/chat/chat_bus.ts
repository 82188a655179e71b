/**
 * Fan-out between workers: what one worker publishes after it has stored it,
 * every other worker receives. {@link ChatBus} is the interface; `LinkBus`
 * (here) carries events over the worker's link to the dispatcher, which
 * relays them to the other workers of the instance (the seed's "message
 * broker", without a second server to run); `postgres_bus.ts` carries them
 * between instances with PostgreSQL's LISTEN/NOTIFY.
 *
 * The bus is not the truth, the store is. Each transport message is a
 * bundle numbered by its sender (1, 2, 3 … per sender), and every sender
 * sends a heartbeat with its last number every couple of seconds; a
 * receiver that sees a number skipped (a relay dropped a message, a
 * dispatcher restarted with messages in flight, a LISTEN connection was
 * down) reports a gap, and the worker reads what it missed from the store
 * (`ChatHub.resync`). So a channel event lost in transit is late, never
 * lost; the only events not in the store are private messages and the
 * notifications of `notify.ts` (best-effort across workers, see docs/CHAT.md).
 *
 * Events travel in bundles: one transport message holds the events of a
 * group commit, in order, so a burst costs one write and one relay.
 * @module
 */
import type { DispatcherLink } from "../link/worker_link.ts";
import { decodeLinkNotice } from "../dispatch/relay.ts";
import { MAX_LINK_MESSAGE } from "../net/protocol.ts";
import { logger } from "../log.ts";
import type { ChannelEvent } from "./chat_store.ts";
import type { NotifyEvent } from "./notify.ts";
import type { TagMeta } from "./tags.ts";

/** What workers tell each other. `origin` is the sending connection (`owner/n`), or the owner alone. */
export type BusEvent =
  /** A numbered channel event, already stored. */
  | { readonly t: "ch"; readonly ev: ChannelEvent; readonly origin: string }
  /** A message to one user (by folded nick): not stored, best-effort. */
  | {
    readonly t: "priv";
    readonly to: string;
    readonly source: string;
    readonly cmd: "PRIVMSG" | "NOTICE" | "TAGMSG";
    readonly text: string;
    /** Its msgid, time, sender's account and client-only tags (IRCv3). */
    readonly meta: TagMeta;
    readonly origin: string;
  }
  /** A worker process serves slot `slot` as owner `origin` (so that its death can be mapped to its users). */
  | { readonly t: "hello"; readonly slot: number; readonly origin: string }
  /** The dispatcher saw worker `slot`'s link close (relayed, never published by workers). */
  | { readonly t: "link-closed"; readonly slot: number; readonly origin: "" }
  /** Notifications about users that are not channel events (`notify.ts`). */
  | NotifyEvent;

/** One transport message: sender `o`'s bundle number `n` (a heartbeat has no events and the last number). */
export interface Bundle {
  readonly o: string;
  readonly n: number;
  readonly e: readonly BusEvent[];
}

/** Fan-out transport between workers. */
export interface ChatBus {
  /** Sends `e` to every other worker (never back to this one); keeps it while the transport is down. */
  publish(e: BusEvent): void;
  /** Sends several events, in order, in as few transport messages as fit. */
  publishAll(events: readonly BusEvent[]): void;
  /** Tells the others the number of the last bundle sent (a lost last bundle is found by it). */
  beat(): void;
  /** This worker's owner id changed (it was reaped and starts anew): numbering starts again. */
  rename(owner: string): void;
  /** Where received events go. */
  onEvent: (e: BusEvent) => void;
  /** Something was lost in transit (or may have been): read what is missing from the store. */
  onGap: () => void;
  close(): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Encodes events as bundles of at most `maxBytes` bytes each (an event larger
 * than that alone in its own), keeping their order; `next` numbers them.
 *
 * @example
 * ```ts
 * const [bytes] = bundleEvents("1.a", () => 1, [{ t: "hello", slot: 1, origin: "1.a" }], 65536);
 * ```
 */
export function bundleEvents(
  owner: string,
  next: () => number,
  events: readonly BusEvent[],
  maxBytes: number,
): Uint8Array[] {
  const head = (n: number) => `{"o":${JSON.stringify(owner)},"n":${n},"e":[`;
  const bundles: Uint8Array[] = [];
  let parts: string[] = [];
  let size = head(0).length + 12;
  const close = () => {
    if (parts.length === 0) return;
    bundles.push(encoder.encode(`${head(next())}${parts.join(",")}]}`));
    parts = [];
    size = head(0).length + 12;
  };
  for (const e of events) {
    const text = JSON.stringify(e);
    if (parts.length > 0 && size + text.length * 3 + 1 > maxBytes) close();
    parts.push(text);
    size += text.length * 3 + 1; // UTF-8 bound: never over the transport's limit
  }
  close();
  return bundles;
}

/** Decodes a bundle; throws on malformed JSON. */
export function unbundle(text: string): Bundle {
  const b = JSON.parse(text) as Bundle;
  if (typeof b !== "object" || b === null || typeof b.o !== "string" || !Array.isArray(b.e)) {
    throw new Error("not a bundle");
  }
  return b;
}

/**
 * The receiving side's numbering check, shared by every bus: per sender, the
 * next bundle must be the one after the last; a skipped number, or a
 * heartbeat ahead of what arrived, is a gap.
 */
export class BundleOrder {
  readonly #last = new Map<string, number>();
  #self: string;

  constructor(self: string) {
    this.#self = self;
  }

  /** This worker's own id (its bundles, echoed back by some transports, are ignored). */
  set self(owner: string) {
    this.#self = owner;
  }

  /**
   * Checks bundle `b`: whether to deliver its events, and whether something
   * before it may have been lost (`first`: the sender was not heard from
   * before, so it may have sent what this worker never saw).
   */
  check(b: Bundle): { deliver: boolean; gap: boolean; first: boolean } {
    if (b.o === this.#self) return { deliver: false, gap: false, first: false };
    const last = this.#last.get(b.o);
    const first = last === undefined;
    if (b.e.length === 0) { // a heartbeat: the sender's last number
      if (first || b.n > last) this.#last.set(b.o, b.n);
      return { deliver: false, gap: first ? b.n > 0 : b.n > last, first };
    }
    if (!first && b.n <= last) return { deliver: false, gap: false, first }; // a repeat
    this.#last.set(b.o, b.n);
    return { deliver: true, gap: first ? b.n > 1 : b.n > last + 1, first };
  }

  /** A sender is gone for good (its worker died): forget it. */
  forget(owner: string): void {
    this.#last.delete(owner);
  }
}

/** Bundles kept while the dispatcher is away, oldest dropped first past this (receivers see the gap). */
const MAX_BACKLOG = 10_000;

/** {@link ChatBus} over the worker's link: the dispatcher relays to the instance's other workers. */
export class LinkBus implements ChatBus {
  readonly #link: DispatcherLink;
  readonly #backlog: Uint8Array[] = [];
  readonly order: BundleOrder;
  #owner: string;
  #n = 0;
  #retry: ReturnType<typeof setTimeout> | undefined;
  onEvent: (e: BusEvent) => void = () => {};
  onGap: () => void = () => {};

  constructor(link: DispatcherLink, owner: string) {
    this.#link = link;
    this.#owner = owner;
    this.order = new BundleOrder(owner);
  }

  rename(owner: string): void {
    this.#owner = owner;
    this.order.self = owner;
    this.#n = 0;
  }

  publish(e: BusEvent): void {
    this.publishAll([e]);
  }

  publishAll(events: readonly BusEvent[]): void {
    for (const bytes of bundleEvents(this.#owner, () => ++this.#n, events, MAX_LINK_MESSAGE)) {
      this.#send(bytes);
    }
  }

  beat(): void {
    if (this.#backlog.length > 0) return; // what waits goes first; its numbers say enough
    this.#send(encoder.encode(`{"o":${JSON.stringify(this.#owner)},"n":${this.#n},"e":[]}`));
  }

  #send(bytes: Uint8Array): void {
    if (this.#backlog.length === 0 && this.#link.send(bytes)) return;
    this.#backlog.push(bytes);
    if (this.#backlog.length > MAX_BACKLOG) this.#backlog.shift();
    this.#scheduleFlush();
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
    let b: Bundle;
    try {
      b = unbundle(decoder.decode(bytes));
    } catch (err) {
      logger().warn("chat: dropped a malformed link message: {err}", { err: String(err) });
      return;
    }
    const { deliver, gap, first } = this.order.check(b);
    if (gap) {
      if (!first) {
        logger().warn("chat: bus messages from {o} were lost in transit; reading them from the store", {
          o: b.o,
        });
      }
      this.onGap();
    }
    if (deliver) { for (const e of b.e) this.onEvent(e); }
  }

  close(): Promise<void> {
    clearTimeout(this.#retry);
    return Promise.resolve();
  }
}
