/**
 * IRC clients for the chat tests: a real client library (npm
 * `irc-framework`, what bots and web clients use) behind promises, and a raw
 * socket client for what no library sends (malformed lines, floods, a
 * client that never reads).
 */
import { Client } from "irc-framework";
import { parseMessage } from "../../mod/chat/irc_message.ts";
import type { IrcMessage } from "../../mod/chat/irc_message.ts";
import { waitFor } from "../harness.ts";

/** A message as a test looks at it. */
export interface Seen {
  readonly command: string;
  readonly nick: string;
  readonly params: readonly string[];
  readonly line: string;
}

/** An irc-framework client that records every line the server sent. */
export class LibClient {
  readonly nick: string;
  readonly client: InstanceType<typeof Client>;
  readonly seen: Seen[] = [];
  #closed = Promise.withResolvers<void>();

  private constructor(nick: string) {
    this.nick = nick;
    this.client = new Client();
    this.client.on("raw", (e: { from_server: boolean; line: string }) => {
      if (!e.from_server) return;
      const m = parseMessage(e.line.replace(/\r?\n$/, ""));
      if (m) {
        this.seen.push({ command: m.command, nick: m.prefix.split("!")[0]!, params: m.params, line: e.line });
      }
    });
    this.client.on("close", () => this.#closed.resolve());
  }

  /**
   * Connects and waits for registration (or the server's refusal: then
   * `registered` is false). `account` logs in with SASL PLAIN as the
   * library does it.
   */
  static async connect(
    port: number,
    nick: string,
    options: { account?: { account: string; password: string } } = {},
  ): Promise<LibClient> {
    const c = new LibClient(nick);
    c.client.connect({
      host: "127.0.0.1",
      port,
      nick,
      username: nick,
      gecos: `test ${nick}`,
      auto_reconnect: false,
      ping_interval: 0,
      ...options,
    });
    await c.waitLine("001 or 433", (m) => m.command === "001" || m.command === "433");
    return c;
  }

  /** True when the server welcomed us. */
  get registered(): boolean {
    return this.seen.some((m) => m.command === "001");
  }

  /** Waits for a line matching `pred`; returns it. */
  waitLine(what: string, pred: (m: Seen) => boolean, timeoutMs = 10_000): Promise<Seen> {
    return waitFor(`${this.nick}: ${what}`, () => this.seen.find(pred), timeoutMs);
  }

  /** Lines seen with `command`. */
  lines(command: string): Seen[] {
    return this.seen.filter((m) => m.command === command);
  }

  /** Sends a raw line. */
  raw(line: string): void {
    this.client.raw(line);
  }

  /** Joins and waits for the server's end of NAMES. */
  async join(channel: string): Promise<void> {
    this.client.join(channel);
    await this.waitLine(`366 ${channel}`, (m) => m.command === "366" && m.params[1] === channel);
  }

  /** The worker process (owner) serving us, from our own WHOIS. */
  async owner(): Promise<string> {
    this.raw(`WHOIS ${this.nick}`);
    const m = await this.waitLine("312", (m) => m.command === "312" && m.params[1] === this.nick);
    return /\(([^)]*)\)/.exec(m.params[3]!)![1]!;
  }

  /** QUITs and waits for the connection to close. */
  async quit(message = "bye"): Promise<void> {
    this.client.quit(message);
    await Promise.race([this.#closed.promise, new Promise((r) => setTimeout(r, 3_000))]);
    this.client.connection?.end?.();
  }

  /** Resolves when the server closed our connection. */
  closed(): Promise<void> {
    return this.#closed.promise;
  }
}

/**
 * Reads a connection's lines (CR LF removed) until it ends, calling `onLine`
 * with each and the time its chunk arrived (`performance.now()`).
 */
export async function readIrcLines(
  conn: Deno.Conn,
  onLine: (line: string, at: number) => void,
): Promise<void> {
  const dec = new TextDecoder();
  const buf = new Uint8Array(256 * 1024);
  let text = "";
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch {
      n = null; // reset or closed: the end
    }
    if (n === null) return;
    const at = performance.now();
    text += dec.decode(buf.subarray(0, n), { stream: true });
    let nl;
    while ((nl = text.indexOf("\n")) >= 0) {
      const line = text.slice(0, nl).replace(/\r$/, "");
      text = text.slice(nl + 1);
      onLine(line, at);
    }
  }
}

/** A raw TCP client speaking IRC lines. */
export class RawIrc {
  readonly conn: Deno.TcpConn;
  readonly seen: IrcMessage[] = [];
  #reading: Promise<void> | undefined;
  #eof = false;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /** Connects; with `read` false, nothing is read (a client that does not read). */
  static async connect(port: number, read = true): Promise<RawIrc> {
    const c = new RawIrc(await Deno.connect({ hostname: "127.0.0.1", port }));
    if (read) c.#reading = c.#readLoop();
    return c;
  }

  async #readLoop(): Promise<void> {
    await readIrcLines(this.conn, (line) => {
      const m = parseMessage(line);
      if (m) this.seen.push(m);
    });
    this.#eof = true;
  }

  /** True once the server closed the connection. */
  get eof(): boolean {
    return this.#eof;
  }

  /** Sends lines (CR LF appended to each), or raw bytes. */
  async send(...lines: Array<string | Uint8Array>): Promise<void> {
    for (const l of lines) {
      const bytes = typeof l === "string" ? new TextEncoder().encode(l + "\r\n") : l;
      let off = 0;
      while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
    }
  }

  /** Registers as `nick` and waits for 001. */
  async register(nick: string): Promise<void> {
    await this.send(`NICK ${nick}`, `USER ${nick} 0 * :raw ${nick}`);
    await this.waitFor("001", (m) => m.command === "001");
  }

  /** Waits for a message matching `pred`. */
  waitFor(what: string, pred: (m: IrcMessage) => boolean, timeoutMs = 10_000): Promise<IrcMessage> {
    return waitFor(what, () => this.seen.find(pred), timeoutMs);
  }

  /** Closes and waits for the reader. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch { /* closed */ }
    await this.#reading;
  }
}
