/**
 * {@link ChatBus} over PostgreSQL LISTEN/NOTIFY, for instances on several
 * hosts sharing one database. Why this engine: the database is already the
 * one thing every host reaches, so it needs no second server (no broker to
 * deploy, secure and supervise); a notification reaches every listening
 * session, from every host, and notifications of one sender arrive in the
 * order they were sent. What it does not give — delivery to a listener that
 * was disconnected — the store does: a receiver fills any gap in a
 * channel's numbering from the events table (`chat_hub.ts`).
 *
 * A worker's own notifications come back to it; the server ignores events
 * whose origin is itself (it delivered them locally already).
 * @module
 */
import { logger } from "../log.ts";
import { bundleEvents, type BusEvent, type ChatBus, unbundleEvents } from "./chat_bus.ts";
import { connect } from "./postgres_store.ts";

/** The NOTIFY channel every osps worker listens on. */
export const NOTIFY_CHANNEL = "osps_chat";
/** A NOTIFY payload must be shorter than 8000 bytes. */
const MAX_PAYLOAD = 7_900;
const decoder = new TextDecoder();

/** {@link ChatBus} on LISTEN/NOTIFY. */
export class PostgresBus implements ChatBus {
  readonly #sql: ReturnType<typeof connect>;
  onEvent: (e: BusEvent) => void = () => {};

  private constructor(sql: ReturnType<typeof connect>) {
    this.#sql = sql;
  }

  /** Connects (a session of its own for LISTEN) and starts listening. */
  static async open(url: string): Promise<PostgresBus> {
    // One connection for NOTIFY keeps this worker's events in order (the library LISTENs on another).
    const sql = connect(url, 1);
    const bus = new PostgresBus(sql);
    await sql.listen(NOTIFY_CHANNEL, (payload) => {
      let events: BusEvent[];
      try {
        events = unbundleEvents(payload);
      } catch {
        return logger().warn("chat: dropped a malformed notification");
      }
      for (const e of events) bus.onEvent(e);
    });
    return bus;
  }

  publish(e: BusEvent): void {
    this.publishAll([e]);
  }

  publishAll(events: readonly BusEvent[]): void {
    for (const bundle of bundleEvents(events, MAX_PAYLOAD)) {
      void this.#sql.notify(NOTIFY_CHANNEL, decoder.decode(bundle)).catch((err) =>
        logger().error("chat: NOTIFY failed: {err}", { err: String(err) })
      );
    }
  }

  async close(): Promise<void> {
    await this.#sql.end({ timeout: 2 });
  }
}
