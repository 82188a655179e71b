/**
 * Line framing over a TCP connection, with the protocol's limits: maximum line
 * length, strict UTF-8, and a per-read timeout (handshake/idle, slowloris).
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { Limits, Status } from "./protocol.ts";

/** Options for {@link LineConn}. */
export interface LineConnOptions {
  /** Longest accepted line in bytes, LF excluded. */
  maxLineBytes?: number;
}

const encoder = new TextEncoder();

/** A TCP connection read and written as protocol lines. */
export class LineConn {
  readonly conn: Deno.Conn;
  readonly #max: number;
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  #buf = new Uint8Array(0);
  /** Read buffer, reused: each chunk is copied into #buf before the next read. */
  readonly #chunk = new Uint8Array(16 * 1024);
  #closed = false;

  constructor(conn: Deno.Conn, options: LineConnOptions = {}) {
    this.conn = conn;
    this.#max = options.maxLineBytes ?? Limits.maxLineBytes;
  }

  /** Connects to `host:port`. */
  static async connect(host: string, port: number, options?: LineConnOptions): Promise<LineConn> {
    const conn = await Deno.connect({ hostname: host, port, transport: "tcp" });
    conn.setNoDelay(true);
    return new LineConn(conn, options);
  }

  /** Remote address as `host:port`. */
  get peer(): string {
    const a = this.conn.remoteAddr as Deno.NetAddr;
    return `${a.hostname}:${a.port}`;
  }

  /**
   * Reads one line (LF removed, a CR before it removed). Returns null at EOF.
   * Throws {@link ProtocolError} 413 for an over-long line, 400 for invalid
   * UTF-8 or a NUL byte, 408 when `timeoutMs` passes before the line is
   * complete. The timeout covers the whole line, not each read: a peer that
   * drips one byte at a time (slowloris) cannot stretch it.
   */
  async readLine(timeoutMs?: number): Promise<string | null> {
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    for (;;) {
      const nl = this.#buf.indexOf(0x0a);
      if (nl >= 0) {
        const raw = this.#buf.subarray(0, nl > 0 && this.#buf[nl - 1] === 0x0d ? nl - 1 : nl);
        this.#buf = this.#buf.slice(nl + 1);
        if (raw.length > this.#max) {
          throw new ProtocolError(`line longer than ${this.#max} bytes`, Status.TOO_LONG);
        }
        return this.#decode(raw);
      }
      if (this.#buf.length > this.#max) {
        throw new ProtocolError(`line longer than ${this.#max} bytes`, Status.TOO_LONG);
      }
      const chunk = await this.#read(deadline, timeoutMs);
      if (chunk === null) {
        if (this.#buf.length === 0) return null;
        const rest = this.#buf;
        this.#buf = new Uint8Array(0);
        return this.#decode(rest); // last line without LF
      }
      const next = new Uint8Array(this.#buf.length + chunk.length);
      next.set(this.#buf);
      next.set(chunk, this.#buf.length);
      this.#buf = next;
    }
  }

  #decode(raw: Uint8Array): string {
    if (raw.includes(0)) throw new ProtocolError("NUL byte in line", Status.BAD_REQUEST);
    try {
      return this.#decoder.decode(raw);
    } catch (err) {
      throw new ProtocolError("line is not valid UTF-8", Status.BAD_REQUEST, { cause: err });
    }
  }

  async #read(deadline: number | undefined, timeoutMs?: number): Promise<Uint8Array | null> {
    const chunk = this.#chunk;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const read = this.conn.read(chunk);
      // After a timeout the caller closes the conn and this read rejects; nobody awaits it then.
      read.catch(() => {});
      const n = deadline === undefined ? await read : await Promise.race([
        read,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new ProtocolError(`no complete line within ${timeoutMs} ms`, Status.TIMEOUT)),
            Math.max(0, deadline - Date.now()),
          );
        }),
      ]);
      return n === null ? null : chunk.subarray(0, n);
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      if (err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BadResource) return null;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes one line (LF appended). Resolves false when the peer is gone. */
  async writeLine(line: string): Promise<boolean> {
    if (this.#closed) return false;
    const data = encoder.encode(line + "\n");
    try {
      let off = 0;
      while (off < data.length) off += await this.conn.write(data.subarray(off));
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the connection (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}
