/**
 * What an IRC connection (`IrcConn` in `irc_conn.ts`) needs of its
 * socket. A `Deno.Conn` is one (TCP through the runtime, and the `osps chat`
 * hand-over), so is a WebSocket seen as lines (`WsLines`, `mod/http/websocket.ts`),
 * and so is a socket of the IRC port driven through epoll (`epoll_socket.ts`),
 * which also writes synchronously ({@link WritesNow}).
 * @module
 */

/** A byte stream to and from one IRC client. */
export interface IrcSocket {
  /** The peer (its `hostname` is what admission and the session's host are made of). */
  readonly remoteAddr: Deno.Addr;
  /** Reads into `into`: the count, or null at the end of the stream. */
  read(into: Uint8Array): Promise<number | null>;
  /** Writes some of `data`: the count written. */
  write(data: Uint8Array): Promise<number>;
  /** Closes the socket; a pending read ends. */
  close(): void;
}

/**
 * A socket that also writes without a promise: what the kernel takes at once.
 * A write of 5,000 sockets for one channel message is then 5,000 plain calls,
 * not 5,000 runtime operations whose completions come back a bounded number
 * per turn of the event loop.
 */
export interface WritesNow extends IrcSocket {
  /** Writes what the socket takes now: the count (0 when it is full); throws when the peer is gone. */
  writeNow(data: Uint8Array): number;
  /** Resolves when the socket can take more (or it closed). */
  writable(): Promise<void>;
}

/** True when `socket` writes synchronously. */
export function writesNow(socket: IrcSocket): socket is WritesNow {
  return typeof (socket as Partial<WritesNow>).writeNow === "function";
}
