/**
 * Clients of the HTTP API for tests: an event-stream reader (Server-Sent
 * Events over `fetch`, as a browser's EventSource reads them, with
 * `Last-Event-ID`), and an IRC client over WebSocket (Deno's own WebSocket,
 * one IRC line per message).
 */
import { waitFor } from "../harness.ts";

/** One event of a stream. */
export interface SseEvent {
  readonly id: string | null;
  readonly event: string;
  readonly data: Record<string, unknown>;
}

/** Reads a channel's event stream until closed. */
export class SseReader {
  readonly events: SseEvent[] = [];
  readonly response: Response;
  readonly #abort: AbortController;
  readonly done: Promise<void>;

  private constructor(res: Response, abort: AbortController) {
    this.response = res;
    this.#abort = abort;
    this.done = this.#read(res.body!);
  }

  /** Opens `url`, resuming after `lastEventId` when given. */
  static async open(url: string, lastEventId?: string): Promise<SseReader> {
    const abort = new AbortController();
    const res = await fetch(url, {
      headers: lastEventId ? { "last-event-id": lastEventId, accept: "text/event-stream" } : {},
      signal: abort.signal,
    });
    if (res.status !== 200) throw new Error(`event stream: ${res.status} ${await res.text()}`);
    return new SseReader(res, abort);
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    let text = "";
    try {
      for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        let end;
        while ((end = text.indexOf("\n\n")) >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          let id: string | null = null, event = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) this.events.push({ id, event, data: JSON.parse(data) });
        }
      }
    } catch { /* aborted */ }
  }

  /** Waits for an event matching `pred`. */
  waitEvent(what: string, pred: (e: SseEvent) => boolean, timeoutMs = 10_000): Promise<SseEvent> {
    return waitFor(`event stream: ${what}`, () => this.events.find(pred), timeoutMs);
  }

  /** The id of the last numbered event received. */
  get lastId(): string | undefined {
    return this.events.filter((e) => e.id !== null).at(-1)?.id ?? undefined;
  }

  /** Closes the stream (as a browser leaving the page). */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.done;
  }
}

/** An IRC client over the WebSocket at `/v1/irc`. */
export class WsIrc {
  readonly lines: string[] = [];
  readonly ws: WebSocket;
  readonly closed: Promise<CloseEvent>;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.onmessage = (e) => {
      const line = String(e.data);
      this.lines.push(line);
      if (line.startsWith("PING ")) ws.send(`PONG ${line.slice(5)}`);
    };
    this.closed = new Promise((r) => ws.addEventListener("close", r));
  }

  /** Connects and registers as `nick` (with `caps` requested first, if any). */
  static async connect(base: string, nick: string, caps: string[] = []): Promise<WsIrc> {
    const ws = new WebSocket(`${base.replace(/^http/, "ws")}/v1/irc`, ["text.ircv3.net"]);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const c = new WsIrc(ws);
    if (caps.length) {
      c.send("CAP LS 302");
      for (const cap of caps) c.send(`CAP REQ :${cap}`); // one by one: a cap the server lacks is refused alone
      c.send("CAP END");
    }
    c.send(`NICK ${nick}`);
    c.send(`USER ${nick} 0 * :ws ${nick}`);
    await c.waitLine("001", (l) => / 001 /.test(l));
    return c;
  }

  send(line: string): void {
    this.ws.send(line);
  }

  waitLine(what: string, pred: (line: string) => boolean, timeoutMs = 10_000): Promise<string> {
    return waitFor(`ws irc: ${what}`, () => this.lines.find(pred), timeoutMs);
  }

  /** Joins and waits for the end of NAMES. */
  async join(channel: string): Promise<void> {
    this.send(`JOIN ${channel}`);
    await this.waitLine(`366 ${channel}`, (l) => l.includes(` 366 `) && l.includes(channel));
  }

  async quit(message = "bye"): Promise<void> {
    this.send(`QUIT :${message}`);
    await Promise.race([this.closed, new Promise((r) => setTimeout(r, 3_000))]);
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
  }
}
