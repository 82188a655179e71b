/**
 * {@link ChatBus} over PostgreSQL LISTEN/NOTIFY, for instances on several
 * hosts sharing one database. Why this engine: the database is already the
 * one thing every host reaches, so it needs no second server (no broker to
 * deploy, secure and supervise); a notification reaches every listening
 * session, from every host, and notifications of one sender arrive in the
 * order they were sent. What it does not give — delivery to a listener
 * while its connection was down, a NOTIFY that failed — the store and the
 * bundle numbers do: a skipped number, or a LISTEN connection that came
 * back, makes the worker read what it missed (`ChatHub.resync`).
 *
 * A worker's own notifications come back to it; they are ignored.
 * @module
 */
import { logger } from "../log.ts";
import { bundleEvents, BundleOrder, type BusEvent, type ChatBus, unbundle } from "./chat_bus.ts";
import { connect } from "./postgres_store.ts";

/** The NOTIFY channel every osps worker listens on. */
export const NOTIFY_CHANNEL = "osps_chat";
/** A NOTIFY payload must be shorter than 8000 bytes. */
const MAX_PAYLOAD = 7_900;
const decoder = new TextDecoder();

/** {@link ChatBus} on LISTEN/NOTIFY. */
export class PostgresBus implements ChatBus {
  readonly #sql: ReturnType<typeof connect>;
  readonly #order: BundleOrder;
  #owner: string;
  #n = 0;
  onEvent: (e: BusEvent) => void = () => {};
  onGap: () => void = () => {};

  private constructor(sql: ReturnType<typeof connect>, owner: string) {
    this.#sql = sql;
    this.#owner = owner;
    this.#order = new BundleOrder(owner);
  }

  /** Connects (a session of its own for LISTEN) and starts listening. */
  static async open(url: string, owner: string): Promise<PostgresBus> {
    // One connection for NOTIFY keeps this worker's events in order (the library LISTENs on another).
    const sql = connect(url, 1);
    const bus = new PostgresBus(sql, owner);
    let listened = false;
    await sql.listen(NOTIFY_CHANNEL, (payload) => bus.#receive(payload), () => {
      // Called on every (re)connection of the LISTEN session: what was notified meanwhile never came.
      if (listened) {
        logger().warn("chat: LISTEN reconnected; reading what was missed from the store");
        bus.onGap();
      }
      listened = true;
    });
    return bus;
  }

  #receive(payload: string): void {
    let b;
    try {
      b = unbundle(payload);
    } catch {
      return logger().warn("chat: dropped a malformed notification");
    }
    const { deliver, gap, first } = this.#order.check(b);
    if (gap) {
      if (!first) {
        logger().warn("chat: notifications from {o} were lost; reading them from the store", { o: b.o });
      }
      this.onGap();
    }
    if (deliver) { for (const e of b.e) this.onEvent(e); }
  }

  rename(owner: string): void {
    this.#owner = owner;
    this.#order.self = owner;
    this.#n = 0;
  }

  publish(e: BusEvent): void {
    this.publishAll([e]);
  }

  publishAll(events: readonly BusEvent[]): void {
    for (const bundle of bundleEvents(this.#owner, () => ++this.#n, events, MAX_PAYLOAD)) {
      this.#notify(decoder.decode(bundle));
    }
  }

  beat(): void {
    this.#notify(`{"o":${JSON.stringify(this.#owner)},"n":${this.#n},"e":[]}`);
  }

  #notify(payload: string): void {
    void this.#sql.notify(NOTIFY_CHANNEL, payload).catch((err) =>
      logger().error("chat: NOTIFY failed (receivers find the gap): {err}", { err: String(err) })
    );
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 2 });
  }
}
