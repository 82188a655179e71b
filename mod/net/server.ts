/**
 * The TCP side every server role shares: listen (or fail to boot with a clear
 * cause), accept forever, and hand each connection to a handler whose every
 * failure stays with that connection.
 *
 * `accept(2)` can fail for reasons that belong to one connection (the peer
 * reset it before it was accepted: Deno reports ENOTCONN or ECONNABORTED) or
 * to the moment (EMFILE: no descriptor free right now). Neither is a reason
 * for a role to stop: the first is skipped, the second waits a little and
 * tries again. Only closing the listener ends the loop.
 * @module
 */
import { CannotBootError } from "../errors.ts";
import { logger } from "../log.ts";
import { sleep } from "../deadline.ts";
import { lingeringCount } from "./line_conn.ts";

/** Listens on TCP; an address in use or denied becomes {@link CannotBootError} (no restart loop). */
export function listenOrFail(host: string, port: number, what: string): Deno.TcpListener {
  try {
    return Deno.listen({ hostname: host, port, transport: "tcp" });
  } catch (err) {
    const why = err instanceof Deno.errors.AddrInUse
      ? "address already in use"
      : err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (err as Error).message;
    throw new CannotBootError(`${what} cannot listen on ${host}:${port}: ${why}`, { cause: err });
  }
}

/** Counts open connections and lets a drain wait for them to end. */
export class ConnectionSet {
  #open = 0;
  #waiters: Array<() => void> = [];
  /** Called whenever the count changes (roles publish it in their shm slot). */
  onChange: (open: number) => void = () => {};

  /** Number of connections being served. */
  get size(): number {
    return this.#open;
  }

  /**
   * Runs `serve` as one tracked connection. Whatever it throws is that
   * connection's failure: logged, never passed on.
   */
  track(serve: () => Promise<void>): void {
    this.#open++;
    this.onChange(this.#open);
    serve().catch((err) => logger().warn("connection failed: {err}", { err: String(err) })).finally(() => {
      this.#open--;
      this.onChange(this.#open);
      if (this.#open === 0) { for (const w of this.#waiters.splice(0)) w(); }
    });
  }

  /** Resolves when no connection is open, or after `timeoutMs`. */
  idle(timeoutMs: number): Promise<void> {
    if (this.#open === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.#waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

/** Counters of what the accept loop skipped (shown in logs; metrics read them later). */
export interface AcceptStats {
  /** Connections reset or aborted by their peer before they could be accepted. */
  abortedBeforeAccept: number;
  /** Times accept found no free descriptor and paused. */
  outOfDescriptors: number;
}

/** A listener served until {@link Server.close}. */
export class Server {
  readonly listener: Deno.TcpListener;
  readonly conns = new ConnectionSet();
  readonly stats: AcceptStats = { abortedBeforeAccept: 0, outOfDescriptors: 0 };
  /**
   * Connections this process may hold at once, admitted, being refused or
   * lingering: past it, accepting waits and the kernel's backlog holds the
   * rest, so the role never runs out of descriptors however many come at once.
   */
  readonly #maxInFlight: number;
  #closed = false;
  #loop: Promise<void> | undefined;

  constructor(listener: Deno.TcpListener, maxInFlight = Infinity) {
    this.listener = listener;
    this.#maxInFlight = maxInFlight;
  }

  /** Starts accepting; each connection goes to `handler` (Nagle off) as a tracked connection. */
  serve(handler: (conn: Deno.TcpConn) => Promise<void>): void {
    this.#loop ??= this.#acceptLoop(handler);
  }

  async #acceptLoop(handler: (conn: Deno.TcpConn) => Promise<void>): Promise<void> {
    const log = logger();
    let lastEmfileLog = -Infinity;
    while (!this.#closed) {
      while (this.conns.size + lingeringCount() >= this.#maxInFlight && !this.#closed) await sleep(5);
      let conn: Deno.TcpConn;
      try {
        conn = await this.listener.accept();
      } catch (err) {
        if (this.#closed) break;
        if (isOutOfDescriptors(err)) {
          this.stats.outOfDescriptors++;
          const now = performance.now();
          if (now - lastEmfileLog > 1_000) {
            lastEmfileLog = now;
            log.error("accept: no free file descriptor; pausing accepts briefly ({err})", {
              err: String(err),
            });
          }
          await sleep(20);
          continue;
        }
        if (err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted) break; // closed
        // The peer reset or aborted before we accepted: that connection's problem, nobody else's.
        this.stats.abortedBeforeAccept++;
        log.debug("accept: skipped a connection: {err}", { err: String(err) });
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch {
        conn.close(); // reset between accept and here
        this.stats.abortedBeforeAccept++;
        continue;
      }
      this.conns.track(() => handler(conn));
    }
  }

  /** Stops accepting (idempotent); connections being served go on. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.listener.close();
    } catch { /* already closed */ }
  }

  /** Resolves once the accept loop has ended (after {@link Server.close}). */
  async closed(): Promise<void> {
    await this.#loop;
  }
}

function isOutOfDescriptors(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return /os error 2[34]\b|Too many open files/i.test(msg);
}
