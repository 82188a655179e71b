/**
 * The IRC port of a worker: a listener whose connections are
 * {@link IrcSocket}s, made one of two ways (`--irc-io`):
 *
 * - `epoll` (the default): libc sockets driven by one epoll set per worker
 *   (`epoll_listener.ts`), read and written with plain non-blocking calls —
 *   a channel message to 5,000 members of a worker is 5,000 `send(2)` calls
 *   in the flush, no runtime operation each.
 * - `deno`: `Deno.listen` and the runtime's asynchronous reads and writes
 *   (`mod/net/server.ts`), one pending read operation and one resource per
 *   connection.
 *
 * Both listen with SO_REUSEPORT, so the workers share the port either way.
 * `epoll` binds an IP address: a `--host` given as a name other than
 * `localhost` is served with `deno` (which resolves it), and the log says so.
 * @module
 */
import { CannotBootError } from "../errors.ts";
import { logger } from "../log.ts";
import { type ConnectionSet, Server } from "../net/server.ts";
import { displayHost, formatMessage } from "./irc_message.ts";
import { EpollListener, listenAddress } from "./epoll_listener.ts";
import type { IrcSocket } from "./irc_socket.ts";

/** How the IRC port's sockets are driven (`--irc-io`). */
export type IrcIo = "epoll" | "deno";

/** A listening IRC port. */
export interface IrcPort {
  /** Connections being served. */
  readonly conns: ConnectionSet;
  /** Starts accepting; each connection goes to `handler`. */
  serve(handler: (socket: IrcSocket) => Promise<void>): void;
  /** Stops accepting (idempotent). */
  close(): void;
  /** Resolves once accepting has ended (after {@link close}). */
  closed(): Promise<void>;
}

/** Listens on the IRC port with `SO_REUSEPORT`; throws {@link CannotBootError} when it cannot. */
export function listenIrcPort(host: string, port: number, io: IrcIo): IrcPort {
  if (io === "epoll" && listenAddress(host)) return EpollListener.listen(host, port);
  if (io === "epoll") {
    logger().warn("chat: --host {host} is a name: the IRC port is served with --irc-io deno", { host });
  }
  try {
    return new Server(Deno.listen({ hostname: host, port, reusePort: true }));
  } catch (err) {
    throw new CannotBootError(`chat cannot listen on ${host}:${port}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Tells a refused connection why (one ERROR line, as IRC servers do), then closes it. */
export async function refuse(socket: IrcSocket, host: string, why: string): Promise<void> {
  try {
    const line = formatMessage("", "ERROR", [`Closing Link: ${displayHost(host)} (${why})`], {
      trailing: true,
    });
    await socket.write(new TextEncoder().encode(`${line}\r\n`));
  } catch { /* gone already */ }
  try {
    socket.close();
  } catch { /* closed */ }
}
