/**
 * Group commit of channel messages: the messages that arrive while a commit
 * is in progress, or within the same event-loop turn, are stored in one
 * transaction ({@link ChatStore.appendMany}), numbered in the order they
 * arrived, then handed on in that order. A transaction per message cost more
 * than the message itself (BEGIN, COMMIT and the WAL write of SQLite, a round
 * trip of PostgreSQL); a burst now pays it once.
 *
 * The promise is unchanged: nothing is handed on (delivered, published)
 * before its transaction committed, and a failed transaction fails exactly
 * the messages in it — each sender's `append` rejects with the store's error,
 * as a lone `append` would have.
 * @module
 */
import { setImmediate } from "node:timers";
import { OspsError } from "../errors.ts";
import { logger } from "../log.ts";
import type { Appending, ChannelEvent, ChatStore } from "./chat_store.ts";

/** A sender failed before its queued message was committed: the message was dropped, never stored. */
export class CommitCancelledError extends OspsError {}

/** A committed event and the connection that sent it. */
export interface Committed {
  readonly ev: ChannelEvent;
  /** The sending connection's origin key (`owner/n`). */
  readonly origin: string;
}

/** Who sends a message. */
export interface Sender {
  /** Origin key of the connection (`owner/n`). */
  readonly origin: string;
  /** False once the sender failed: its messages still queued are dropped. */
  live(): boolean;
}

interface Waiting {
  readonly item: Appending;
  readonly sender: Sender;
  resolve(ev: ChannelEvent | null): void;
  reject(err: unknown): void;
}

/** Most messages in one transaction (the rest wait for the next one). */
export const MAX_BATCH = 512;

/** Queues channel messages and commits them in groups, in order. */
export class GroupCommit {
  readonly #store: ChatStore;
  readonly #committed: (batch: readonly Committed[]) => void;
  #queue: Waiting[] = [];
  /** A commit is scheduled or in progress: new messages join the next one. */
  #busy = false;
  #transactions = 0;

  /** `committed` gets each committed batch's events, in order (it delivers and publishes them). */
  constructor(store: ChatStore, committed: (batch: readonly Committed[]) => void) {
    this.#store = store;
    this.#committed = committed;
  }

  /** Transactions committed or failed so far. */
  get transactions(): number {
    return this.#transactions;
  }

  /**
   * Queues a message; resolves with its numbered event once its batch is
   * committed and handed on (null when the channel is gone), or rejects with
   * the store's error when its batch failed.
   *
   * @example
   * ```ts
   * const ev = await commits.append({ channel: "#a", event: { kind: "PRIVMSG", source, params: ["hi"] } }, sender);
   * ```
   */
  append(item: Appending, sender: Sender): Promise<ChannelEvent | null> {
    const { promise, resolve, reject } = Promise.withResolvers<ChannelEvent | null>();
    this.#queue.push({ item, sender, resolve, reject });
    if (!this.#busy) {
      this.#busy = true;
      void this.#commit(); // idle: at once, so a lone message waits for nothing
    }
    return promise;
  }

  async #commit(): Promise<void> {
    const batch: Waiting[] = [];
    for (const w of this.#queue.splice(0, MAX_BATCH)) {
      if (w.sender.live()) batch.push(w);
      else w.reject(new CommitCancelledError("the sender failed before its message was committed"));
    }
    try {
      if (batch.length > 0) await this.#commitBatch(batch);
    } catch (err) {
      logger().error("chat: handing on committed messages failed: {err}", { err: String(err) });
    } finally {
      // What came meanwhile, or comes later in this turn (handlers run as microtasks), is the next group.
      setImmediate(() => this.#queue.length > 0 ? void this.#commit() : this.#busy = false);
    }
  }

  /** One transaction for `batch`; then its events are handed on, then the senders told. */
  async #commitBatch(batch: readonly Waiting[]): Promise<void> {
    let events: Array<ChannelEvent | null>;
    this.#transactions++;
    try {
      events = await this.#store.appendMany(batch.map((w) => w.item));
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    const committed: Committed[] = [];
    events.forEach((ev, i) => ev && committed.push({ ev, origin: batch[i]!.sender.origin }));
    try {
      this.#committed(committed);
    } finally {
      batch.forEach((w, i) => w.resolve(events[i] ?? null));
    }
  }
}
