/**
 * A Server-Sent Events stream (the WHATWG `text/event-stream` format):
 * numbered events with `id:` (a client that reconnects sends the last one as
 * `Last-Event-ID` and misses nothing), a comment every
 * {@link KEEPALIVE_MS} so idle proxies keep it and a vanished client is
 * noticed, and a bounded queue: a client that stops reading is cut off once
 * {@link MAX_QUEUED_BYTES} wait for it (it reconnects and resumes from the
 * store), so it never costs more than that.
 *
 * Live events may arrive while the stored backlog is being read: they wait,
 * and every event whose number was already sent is dropped, so the stream
 * has each event once, in order.
 * @module
 */

/** A comment line goes out this often on a quiet stream. */
export const KEEPALIVE_MS = 15_000;
/** Bytes queued for a client that does not read, past which its stream ends. */
export const MAX_QUEUED_BYTES = 256 * 1024;

const encoder = new TextEncoder();

/** One event of a backlog. */
export interface SseItem {
  readonly seq: number;
  readonly name: string;
  readonly data: unknown;
}

/** An event stream for one client. */
export class SseStream {
  readonly readable: ReadableStream<Uint8Array>;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #last = -1;
  /** Live events that came before the backlog was sent. */
  #early: Array<{ seq: number | null; name: string; data: unknown }> | null = [];
  #closed = false;
  readonly #keepalive: ReturnType<typeof setInterval>;
  readonly #closing: AbortSignal;
  readonly #onAbort = () => this.close();
  /** Called once when the stream ends (the client left, was cut off, or the server stops). */
  onClose: () => void = () => {};

  constructor(closing: AbortSignal) {
    this.#closing = closing;
    this.readable = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#controller = c;
      },
      cancel: () => this.close(),
    }, new ByteLengthQueuingStrategy({ highWaterMark: MAX_QUEUED_BYTES }));
    this.#enqueue("retry: 1000\n\n");
    this.#keepalive = setInterval(() => this.#enqueue(": keepalive\n\n"), KEEPALIVE_MS);
    closing.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Sends the stored events after the client's last one, then what came live meanwhile. */
  backlog(items: readonly SseItem[]): void {
    for (const it of items) this.#send(it.seq, it.name, it.data);
    const early = this.#early ?? [];
    this.#early = null;
    for (const e of early) this.#send(e.seq, e.name, e.data);
  }

  /** An event: numbered (`seq`) or not (null: no `id:` line, it cannot be resumed from). */
  event(seq: number | null, name: string, data: unknown): void {
    if (this.#early) this.#early.push({ seq, name, data });
    else this.#send(seq, name, data);
  }

  #send(seq: number | null, name: string, data: unknown): void {
    if (seq !== null) {
      if (seq <= this.#last) return;
      this.#last = seq;
    }
    this.#enqueue(`${seq === null ? "" : `id: ${seq}\n`}event: ${name}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  #enqueue(text: string): void {
    if (this.#closed) return;
    const c = this.#controller;
    if ((c.desiredSize ?? 0) < 0) return this.close(); // it does not read: cut off, it resumes later
    c.enqueue(encoder.encode(text));
  }

  /** Ends the stream (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#keepalive);
    this.#closing.removeEventListener("abort", this.#onAbort);
    try {
      this.#controller.close();
    } catch { /* cancelled already */ }
    this.onClose();
  }
}
