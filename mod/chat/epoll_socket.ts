/**
 * A TCP connection of the IRC port driven through epoll (`epoll_loop.ts`)
 * with plain non-blocking calls through libc: reads go straight into the
 * connection's own buffer, writes take what the kernel takes at once
 * ({@link EpollSocket.writeNow}). A read or a write that finds nothing to do
 * (EAGAIN) waits for the socket's next edge, a promise the loop resolves: no
 * runtime operation per read or write, and no runtime resource per
 * connection.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { SysError } from "../errors.ts";
import { formatIp, unmapped } from "../net/ip_addr.ts";
import type { EpollLoop, EpollOwner } from "./epoll_loop.ts";
import type { WritesNow } from "./irc_socket.ts";

const { IN, OUT, ERR, HUP, RDHUP } = libc.EPOLL;

/**
 * An address as the runtime writes a peer's (Rust's `Display`): RFC 5952,
 * and an IPv4-mapped IPv6 address as `::ffff:a.b.c.d` (a dual-stack
 * listener's IPv4 clients). Admission keys (`addrKey`) are made from it.
 */
export function peerHost(ip: Uint8Array): string {
  const v4 = unmapped(ip);
  return ip.length === 16 && v4.length === 4 ? `::ffff:${formatIp(v4)}` : formatIp(ip);
}

/** One accepted connection, registered with the loop until closed. */
export class EpollSocket implements WritesNow, EpollOwner {
  readonly remoteAddr: Deno.NetAddr;
  readonly #fd: number;
  readonly #loop: EpollLoop;
  /** Until a read finds nothing (EAGAIN), then again at the next input edge. */
  #readable = true;
  #writable = true;
  /** The peer closed or reset (RDHUP, HUP, ERR seen): read on to the end, whatever a read returns. */
  #hungUp = false;
  #closed = false;
  #readWaiter: (() => void) | null = null;
  #writeWaiter: (() => void) | null = null;

  constructor(loop: EpollLoop, accepted: libc.AcceptedTcp) {
    this.#fd = accepted.fd;
    this.#loop = loop;
    this.remoteAddr = { transport: "tcp", hostname: peerHost(accepted.ip), port: accepted.port };
    loop.add(accepted.fd, this);
  }

  ready(events: number): void {
    if (events & (RDHUP | HUP | ERR)) this.#hungUp = true;
    if (events & (IN | RDHUP | HUP | ERR)) {
      this.#readable = true;
      this.#readWaiter?.();
      this.#readWaiter = null;
    }
    if (events & (OUT | HUP | ERR)) {
      this.#writable = true;
      this.#writeWaiter?.();
      this.#writeWaiter = null;
    }
  }

  /** Reads into `into`: the count, or null at the end of the stream, on a reset, or once closed. */
  async read(into: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#closed) return null;
      if (this.#readable) {
        const n = libc.readNow(this.#fd, into as Uint8Array<ArrayBuffer>);
        if (n > 0) {
          // Less than asked for: the kernel had no more. Bytes that arrive later make a new edge, so the
          // next read waits for it instead of asking the kernel to say EAGAIN — unless the peer's end came
          // with the edge already seen (its EOF makes no new one).
          if (n < into.length && !this.#hungUp) this.#readable = false;
          return n;
        }
        if (n === 0) return null;
        if (n === -libc.E.EINTR) continue;
        if (n !== -libc.E.EAGAIN) return null; // reset: the client is gone
        this.#readable = false;
      }
      await new Promise<void>((resolve) => (this.#readWaiter = resolve));
    }
  }

  writeNow(data: Uint8Array): number {
    if (this.#closed) throw new SysError("send", libc.E.EBADF, "(closed)");
    if (!this.#writable || data.length === 0) return 0;
    for (;;) {
      const n = libc.sendNow(this.#fd, data);
      if (n >= 0) {
        if (n < data.length) this.#writable = false; // full: the kernel signals an edge when it drains
        return n;
      }
      if (n === -libc.E.EINTR) continue;
      if (n === -libc.E.EAGAIN) {
        this.#writable = false;
        return 0;
      }
      throw new SysError("send", -n);
    }
  }

  writable(): Promise<void> {
    if (this.#writable || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => (this.#writeWaiter = resolve));
  }

  /** Writes some of `data`, waiting while the socket is full. */
  async write(data: Uint8Array): Promise<number> {
    for (;;) {
      const n = this.writeNow(data);
      if (n > 0 || data.length === 0) return n;
      await this.writable();
    }
  }

  /** Closes the descriptor (idempotent); a waiting read returns null, a waiting write finds it closed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#loop.remove(this.#fd);
    libc.close(this.#fd);
    this.ready(IN | OUT);
  }
}
