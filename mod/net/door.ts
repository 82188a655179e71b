/**
 * A role's client port, from an accepted socket to an admitted client, the
 * same for the dispatcher and the workers: who the client is (the TCP peer,
 * or the client a trusted proxy names in its PROXY protocol header), whether
 * it may come in ({@link Admission}: caps, rate, room made by closing an idle
 * connection), and its connection as protocol lines under the role's limits
 * (line length, write timeout). Every refusal is a status line and is counted;
 * everything here is that connection's problem only.
 * @module
 */
import { logger } from "../log.ts";
import { ProtocolError } from "../errors.ts";
import { addrKey, Admission, type Admitted, hostOf, type Refused } from "./admission.ts";
import { LineConn } from "./line_conn.ts";
import { formatReply, Status } from "./protocol.ts";
import { looksLikeProxyHeader, PROXY_HEADER, type ProxyTrust } from "./proxy_protocol.ts";

/** The limits and settings of a role's client port. */
export interface DoorOptions {
  readonly maxLineBytes: number;
  /** Time a trusted proxy has to send its header (a client then has it again for its first line). */
  readonly handshakeTimeoutMs: number;
  /** Time one answer may take to be taken by the client's TCP (0 = no limit). */
  readonly writeTimeoutMs: number;
  /** The proxies that must, and alone may, send a PROXY protocol header (`--proxy-from`). */
  readonly proxies: ProxyTrust;
  /** Counts a refusal by status (the role's counters in shared memory). */
  readonly onRefusal: (status: number) => void;
}

/** An admitted client. */
export interface Client {
  readonly conn: LineConn;
  /** The client's address as `host:port`: the TCP peer's, or the one its proxy named. */
  readonly peer: string;
  /** Its per-address key ({@link addrKey}). */
  readonly key: string;
  /** Its place: tell it when the first line is complete (until then it may be closed to make room). */
  readonly admitted: Admitted;
  /**
   * Ends the connection (closed unless `handedOver`: then its new owner
   * closes it), waits until its descriptor is free, gives its place back,
   * and counts an answer the client did not take in time as a 408.
   */
  finish(handedOver?: boolean): Promise<void>;
}

/** The first bytes of a peer not trusted as a proxy must not be a PROXY header. */
function refuseProxyHeader(bytes: Uint8Array): void {
  if (looksLikeProxyHeader(bytes)) {
    throw new ProtocolError(
      "PROXY protocol header refused: this address is not a trusted proxy (see --proxy-from)",
      Status.BAD_REQUEST,
    );
  }
}

/** At most one warning per this many ms about connections closed to make room. */
const EVICTION_LOG_MS = 10_000;
let evictionLoggedAt = -Infinity;
let evictedUnlogged = 0;

function logEviction(key: string): void {
  evictedUnlogged++;
  const now = performance.now();
  if (now - evictionLoggedAt < EVICTION_LOG_MS) return;
  evictionLoggedAt = now;
  logger().warn(
    "at a connection cap: closed {n} connection(s) that sent no line yet, oldest first, to make room (the last from {addr})",
    { n: evictedUnlogged, addr: key },
  );
  evictedUnlogged = 0;
}

/**
 * Takes an accepted connection to an admitted {@link Client}, or refuses it
 * with a status line (then resolves null; the connection is closed and counts
 * against nothing).
 */
export async function admitClient(
  tcp: Deno.TcpConn,
  admission: Admission,
  o: DoorOptions,
): Promise<Client | null> {
  const { hostname, port } = tcp.remoteAddr;
  const proxied = o.proxies.trusts(hostname);
  const conn = new LineConn(tcp, {
    maxLineBytes: o.maxLineBytes,
    writeTimeoutMs: o.writeTimeoutMs,
    checkFirstBytes: proxied ? undefined : refuseProxyHeader,
  });
  const refuse = async (r: Refused): Promise<null> => {
    o.onRefusal(r.status);
    await conn.refuse(formatReply(r.status, r.reason));
    await conn.settled();
    return null;
  };
  let peer = `${hostname}:${port}`;
  if (proxied) {
    try {
      const header = await conn.readHeader(PROXY_HEADER, o.handshakeTimeoutMs);
      if (header.client) peer = `${header.client.host}:${header.client.port}`;
    } catch (err) {
      if (err instanceof ProtocolError && err.status) {
        return await refuse({ status: err.status, reason: err.message });
      }
      throw err;
    }
  }
  const key = addrKey(hostOf(peer));
  const admitted = admission.admit(key, (r) => {
    logEviction(key);
    o.onRefusal(r.status);
    void conn.refuse(formatReply(r.status, r.reason));
  });
  if (Admission.refused(admitted)) return await refuse(admitted);
  return {
    conn,
    peer,
    key,
    admitted,
    finish: async (handedOver = false) => {
      if (!handedOver) conn.close();
      await conn.settled(); // the descriptor is free only then
      admitted.release();
      if (conn.writeExpired) {
        o.onRefusal(Status.TIMEOUT);
        logger().debug("closed {peer}: it did not take its answer within {ms} ms", {
          peer,
          ms: o.writeTimeoutMs,
        });
      }
    },
  };
}

/** The door settings of a role from its limit flags; `onRefusal` counts refusals (the role's stats). */
export function doorOptions(
  limits: {
    readonly maxLineBytes: number;
    readonly handshakeTimeoutMs: number;
    readonly writeTimeoutMs: number;
    readonly proxyFrom: ProxyTrust;
  },
  onRefusal: (status: number) => void,
): DoorOptions {
  return {
    maxLineBytes: limits.maxLineBytes,
    handshakeTimeoutMs: limits.handshakeTimeoutMs,
    writeTimeoutMs: limits.writeTimeoutMs,
    proxies: limits.proxyFrom,
    onRefusal,
  };
}
