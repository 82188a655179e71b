/**
 * The IRC port's listening socket made with libc and accepted through epoll
 * (`epoll_loop.ts`), the counterpart of `mod/net/server.ts`'s `Server` for
 * the sockets of {@link EpollSocket}. It listens with SO_REUSEADDR and
 * SO_REUSEPORT as `Deno.listen({ reusePort: true })` does, so the workers
 * share the port (and the port's claim in `chat_boot.ts` works the same).
 *
 * Accepting follows `Server`'s rules: a connection reset before it was
 * accepted is skipped; no free descriptor (EMFILE) pauses accepting briefly;
 * only closing the listener ends it. A burst of connections is accepted
 * {@link ACCEPT_BATCH} at a time, the loop turning between batches.
 * @module
 */
import { setImmediate } from "node:timers";
import * as libc from "../sys/libc.ts";
import { CannotBootError, errnoName, SysError } from "../errors.ts";
import { logger } from "../log.ts";
import { parseIp } from "../net/ip_addr.ts";
import { type AcceptStats, ConnectionSet } from "../net/server.ts";
import { EpollLoop, type EpollOwner } from "./epoll_loop.ts";
import { EpollSocket } from "./epoll_socket.ts";

/** Connections accepted per turn of the event loop. */
const ACCEPT_BATCH = 256;
/** Connections the kernel queues before they are accepted (capped by `net.core.somaxconn`). */
const BACKLOG = 4096;
/** Pause after finding no free descriptor. */
const EMFILE_PAUSE_MS = 20;

/** The address to bind for `host`: an IP literal, or `localhost` (the loopback, as the runtime resolves it). */
export function listenAddress(host: string): Uint8Array | null {
  return host === "localhost" ? new Uint8Array([127, 0, 0, 1]) : parseIp(host);
}

/** A listening socket served until {@link EpollListener.close}, with its own epoll loop. */
export class EpollListener implements EpollOwner {
  readonly conns = new ConnectionSet();
  readonly stats: AcceptStats = { abortedBeforeAccept: 0, outOfDescriptors: 0 };
  readonly #loop: EpollLoop;
  readonly #fd: number;
  #handler: ((socket: EpollSocket) => Promise<void>) | undefined;
  #closed = false;
  #again: ReturnType<typeof setTimeout> | undefined;
  #lastEmfileLog = -Infinity;

  private constructor(fd: number) {
    this.#fd = fd;
    this.#loop = new EpollLoop();
  }

  /**
   * Listens on `host:port` (`host` an IP literal or `localhost`, see
   * {@link listenAddress}); an address in use or not available becomes
   * {@link CannotBootError}.
   */
  static listen(host: string, port: number): EpollListener {
    const ip = listenAddress(host);
    if (!ip) throw new CannotBootError(`chat cannot listen on ${host}:${port}: not an IP address`);
    try {
      return new EpollListener(libc.tcpListen(ip, port, BACKLOG, `${host}:${port}`));
    } catch (err) {
      const why = err instanceof SysError ? errnoName(err.errno) : (err as Error).message;
      throw new CannotBootError(`chat cannot listen on ${host}:${port}: ${why}`, { cause: err });
    }
  }

  /** Starts accepting; each connection goes to `handler` as a tracked connection. */
  serve(handler: (socket: EpollSocket) => Promise<void>): void {
    if (this.#handler) return;
    this.#handler = handler;
    this.#loop.add(this.#fd, this);
  }

  ready(): void {
    this.#acceptSome();
  }

  /** Accepts until the kernel has none left (EAGAIN), at most a batch per turn. */
  #acceptSome(): void {
    const handler = this.#handler;
    if (this.#closed || !handler) return;
    for (let i = 0; i < ACCEPT_BATCH; i++) {
      const got = libc.tcpAccept(this.#fd);
      if (typeof got !== "number") {
        const socket = new EpollSocket(this.#loop, got);
        this.conns.track(() => handler(socket));
        continue;
      }
      const e = -got;
      if (e === libc.E.EAGAIN) return;
      if (e === libc.E.EMFILE || e === libc.E.ENFILE || e === libc.E.ENOBUFS || e === libc.E.ENOMEM) {
        this.#outOfDescriptors(e);
        return;
      }
      if (e === libc.E.EBADF || e === libc.E.EINVAL) return; // closed under us
      if (e !== libc.E.EINTR) {
        // The peer reset or aborted before we accepted: that connection's problem, nobody else's.
        this.stats.abortedBeforeAccept++;
        logger().debug("accept: skipped a connection: {err}", { err: errnoName(e) });
      }
    }
    setImmediate(() => this.#acceptSome()); // the rest next turn (a closed listener takes none)
  }

  #outOfDescriptors(e: number): void {
    this.stats.outOfDescriptors++;
    const now = performance.now();
    if (now - this.#lastEmfileLog > 1_000) {
      this.#lastEmfileLog = now;
      logger().error("accept: no free file descriptor; pausing accepts briefly ({err})", {
        err: errnoName(e),
      });
    }
    // Edge-triggered: no new edge comes for connections already waiting, so look again after the pause.
    this.#again = setTimeout(() => this.#acceptSome(), EMFILE_PAUSE_MS);
  }

  /** Stops accepting (idempotent); connections being served go on. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#again);
    this.#loop.remove(this.#fd);
    libc.close(this.#fd);
  }

  /**
   * Resolves once accepting has ended and the epoll loop has stopped (call
   * after {@link close}, once the connections have closed or been given up on).
   */
  async closed(): Promise<void> {
    await this.#loop.close();
  }
}
