/**
 * Admission control for a server role: how many connections it holds overall
 * and per client address, how fast one address may open connections and send
 * requests (a token bucket), and how many bad tickets one address may present
 * before its bad tickets are answered 429 for a while. Each refusal is a
 * status line the role sends before closing; everyone else keeps being served.
 *
 * At a connection cap, connections that have not completed a line make room
 * rather than keep a newcomer out (as HAProxy and nginx close idle keep-alive
 * connections): the one that has waited longest is closed with a status line.
 * A newcomer whose own address is at its cap can only displace a line-less
 * connection of that address; at the overall cap, any address's. When every
 * connection within reach has completed a line, the newcomer is refused
 * (429). So idle sockets, from one address or from many, never lock out a
 * client that sends a line, and the per-address cap still bounds what one
 * address holds. (A connection that has spoken and then goes quiet is bounded
 * by the idle timeout instead.)
 *
 * "One address" is {@link addrKey}: the whole loopback network 127.0.0.0/8
 * (and ::1) is one address, since every alias reaches the same host and one
 * local user could otherwise take 16 million shares; an IPv6 client is its
 * /64, the block one host gets.
 *
 * All state is in this process and bounded: per-address entries are dropped
 * as soon as they hold nothing worth remembering. Admitting, evicting and
 * releasing cost O(1) (a sweep of idle addresses runs once 4096 are tracked).
 * @module
 */
import { systemClock } from "../sys/clock.ts";
import { Status } from "./protocol.ts";
import { formatIp, ipv6Groups, parseIp, unmapped } from "./ip_addr.ts";

/** The limits one server process enforces (each is a flag, see `mod/cli/flags.ts`). */
export interface AdmissionLimits {
  /** Connections open at once, all addresses together. */
  readonly maxConns: number;
  /** Connections open at once from one address. */
  readonly maxConnsPerAddr: number;
  /** Sustained connections + requests per second from one address (0 = unlimited). */
  readonly ratePerSec: number;
  /** Bucket size: how many may come at once before the rate applies. */
  readonly rateBurst: number;
  /** Bad tickets one address may present within {@link AdmissionLimits.badTicketWindowMs}. */
  readonly badTicketLimit: number;
  /** Window of the bad-ticket count; an address over the limit waits it out. */
  readonly badTicketWindowMs: number;
}

/** Why a connection or request was refused: the status line to send, then close. */
export interface Refused {
  readonly status: number;
  readonly reason: string;
}

/**
 * An admitted connection. Until its client completes a line it is
 * _line-less_, and may be evicted to make room for a newcomer; call
 * {@link Admitted.spoke} when the first line is complete, and
 * {@link Admitted.release} exactly once when it closes (later calls, and a
 * call after an eviction, do nothing).
 */
export interface Admitted {
  spoke(): void;
  release(): void;
}

/** How an admitted connection is closed to make room: write this status line, then close. */
export type Evict = (line: Refused) => void;

/** The status an evicted connection is told before it is closed. */
export const EVICTED: Refused = {
  status: Status.TIMEOUT,
  reason: "no complete line yet, and the server needed the room; reconnect when you have a line to send",
};

interface Entry {
  readonly addr: AddrState;
  /** Line-less and evictable: in the line-less sets. */
  lineless: boolean;
  gone: boolean;
  readonly evict: Evict | undefined;
}

interface AddrState {
  readonly key: string;
  conns: number;
  tokens: number;
  refilledMs: number;
  /** Times of recent bad tickets, oldest first. */
  badTickets: number[];
  /** This address's line-less connections, oldest first (a Set keeps insertion order). */
  readonly lineless: Set<Entry>;
}

/** Forget idle addresses once this many are tracked, so memory stays bounded. */
const SWEEP_AT = 4096;

/** The admission state of one server process. */
export class Admission {
  readonly limits: AdmissionLimits;
  readonly #now: () => number;
  readonly #addrs = new Map<string, AddrState>();
  /** Every line-less connection that may be evicted, oldest first. */
  readonly #lineless = new Set<Entry>();
  #open = 0;
  #evictions = 0;

  /** `now` is injectable so tests can drive the clock. */
  constructor(limits: AdmissionLimits, now: () => number = () => systemClock.now()) {
    this.limits = limits;
    this.#now = now;
  }

  /** Connections currently admitted. */
  get open(): number {
    return this.#open;
  }

  /** Connections closed so far to make room for newcomers. */
  get evictions(): number {
    return this.#evictions;
  }

  /** Client addresses with state worth remembering (bounded: idle ones are forgotten). */
  get tracked(): number {
    return this.#addrs.size;
  }

  /**
   * Admits a new connection from `addr` (an {@link addrKey}), or says why
   * not. At a cap, the oldest line-less connection within reach is evicted
   * instead (through its `evict`, with {@link EVICTED}): one of `addr`'s own
   * when `addr` is at its cap, else any. Refused (429) when none is within
   * reach, or when `addr` sends too fast (then nobody is evicted). Without
   * `evict` the new connection is never evicted itself.
   */
  admit(addr: string, evict?: Evict): Admitted | Refused {
    const now = this.#now();
    const s = this.#state(addr, now);
    const own = s.conns >= this.limits.maxConnsPerAddr;
    const full = this.#open >= this.limits.maxConns;
    const victim = own ? first(s.lineless) : full ? first(this.#lineless) : undefined;
    const refused = own && !victim
      ? {
        status: Status.TOO_MANY,
        reason: `too many connections from ${addr} (${this.limits.maxConnsPerAddr}); retry later`,
      }
      : full && !victim
      ? { status: Status.TOO_MANY, reason: `too many connections (${this.limits.maxConns}); retry later` }
      : this.#take(s, addr, now);
    if (refused) {
      this.#forgetIfIdle(addr, s, now);
      return refused;
    }
    this.#open++;
    s.conns++; // before the victim leaves: its address may be this one, which must not be forgotten
    if (victim) {
      this.#evictions++;
      this.#leave(victim);
      victim.evict!(EVICTED);
    }
    const e: Entry = { addr: s, lineless: evict !== undefined, gone: false, evict };
    if (e.lineless) {
      this.#lineless.add(e);
      s.lineless.add(e);
    }
    return { spoke: () => this.#spoke(e), release: () => this.#leave(e) };
  }

  /** `e` completed a line: it is never evicted from now on. */
  #spoke(e: Entry): void {
    if (!e.lineless) return;
    e.lineless = false;
    this.#lineless.delete(e);
    e.addr.lineless.delete(e);
  }

  /** Releases `e`'s place (idempotent). */
  #leave(e: Entry): void {
    if (e.gone) return;
    this.#spoke(e);
    e.gone = true;
    this.#open--;
    e.addr.conns--;
    this.#forgetIfIdle(e.addr.key, e.addr, this.#now());
  }

  /** Charges one request to `addr`'s rate; a refusal means answer 429 and close. */
  request(addr: string): Refused | null {
    const now = this.#now();
    return this.#take(this.#state(addr, now), addr, now);
  }

  /**
   * Records a bad ticket from `addr`; returns the refusal once the address is
   * over the limit. Only bad tickets are refused that way: a client of the same
   * address with a valid ticket is still served (checking a ticket is cheap,
   * and on loopback that address is every local user).
   */
  badTicket(addr: string): Refused | null {
    const now = this.#now();
    const s = this.#state(addr, now);
    if (s.badTickets.length < this.limits.badTicketLimit) s.badTickets.push(now);
    return this.#shutOut(s, now);
  }

  /** True when `x` is a refusal rather than an admitted connection. */
  static refused(x: Admitted | Refused): x is Refused {
    return "status" in x;
  }

  #state(addr: string, now: number): AddrState {
    let s = this.#addrs.get(addr);
    if (!s) {
      if (this.#addrs.size >= SWEEP_AT) this.#sweep(now);
      s = {
        key: addr,
        conns: 0,
        tokens: this.limits.rateBurst,
        refilledMs: now,
        badTickets: [],
        lineless: new Set(),
      };
      this.#addrs.set(addr, s);
    }
    return s;
  }

  #take(s: AddrState, addr: string, now: number): Refused | null {
    const { ratePerSec, rateBurst } = this.limits;
    if (ratePerSec <= 0) return null;
    s.tokens = Math.min(rateBurst, s.tokens + ((now - s.refilledMs) * ratePerSec) / 1000);
    s.refilledMs = now;
    if (s.tokens < 1) {
      return { status: Status.TOO_MANY, reason: `rate limit for ${addr} (${ratePerSec}/s); slow down` };
    }
    s.tokens -= 1;
    return null;
  }

  #shutOut(s: AddrState, now: number): Refused | null {
    const since = now - this.limits.badTicketWindowMs;
    while (s.badTickets.length > 0 && s.badTickets[0]! <= since) s.badTickets.shift();
    if (s.badTickets.length < this.limits.badTicketLimit) return null;
    const waitMs = s.badTickets[0]! + this.limits.badTicketWindowMs - now;
    return {
      status: Status.TOO_MANY,
      reason: `too many bad tickets; retry in ${Math.max(1, Math.ceil(waitMs / 1000))} s`,
    };
  }

  #forgetIfIdle(addr: string, s: AddrState, now: number): void {
    this.#shutOut(s, now); // drops expired bad-ticket times
    const full = this.limits.ratePerSec <= 0 ||
      s.tokens + ((now - s.refilledMs) * this.limits.ratePerSec) / 1000 >= this.limits.rateBurst;
    if (s.conns === 0 && s.badTickets.length === 0 && full) this.#addrs.delete(addr);
  }

  #sweep(now: number): void {
    for (const [addr, s] of this.#addrs) this.#forgetIfIdle(addr, s, now);
  }
}

function first<T>(set: Set<T>): T | undefined {
  for (const x of set) return x;
  return undefined;
}

/** The host part of a `host:port` peer string (IPv6 keeps its colons). */
export function hostOf(peer: string): string {
  const i = peer.lastIndexOf(":");
  return i < 0 ? peer : peer.slice(0, i);
}

/**
 * The key per-address limits count by: `loopback` for 127.0.0.0/8 and ::1
 * (one host, whatever alias it uses), the IPv4 address inside an IPv4-mapped
 * IPv6 one, the /64 of any other IPv6 address, `unix` for the clients a proxy
 * took on a UNIX socket (one host too), else the address itself.
 */
export function addrKey(host: string): string {
  let key = recentKeys.get(host);
  if (key === undefined) {
    key = keyOf(host);
    if (recentKeys.size >= RECENT_KEYS) recentKeys.clear();
    recentKeys.set(host, key);
  }
  return key;
}

/**
 * The keys of the hosts seen last: a client comes back, and parsing its
 * address again for each connection cost more than the rest of admission.
 * Bounded: past {@link RECENT_KEYS} hosts it starts over.
 */
const recentKeys = new Map<string, string>();
const RECENT_KEYS = 4096;

function keyOf(host: string): string {
  if (host === UNIX_CLIENT) return UNIX_CLIENT;
  const parsed = parseIp(host);
  if (!parsed) return host.toLowerCase();
  const ip = unmapped(parsed);
  if (ip.length === 4) return ip[0] === 127 ? "loopback" : formatIp(ip);
  if (ip.every((b, i) => b === (i === 15 ? 1 : 0))) return "loopback";
  return `${ipv6Groups(ip).slice(0, 4).join(":")}::/64`;
}

/** The host of a client a proxy took on a UNIX socket (PROXY protocol v2, AF_UNIX): all are one address. */
export const UNIX_CLIENT = "unix";
