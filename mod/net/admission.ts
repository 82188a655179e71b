/**
 * Admission control for a server role: how many connections it holds overall
 * and per client address, how fast one address may open connections and send
 * requests (a token bucket), and how many bad tickets one address may present
 * before its bad tickets are answered 429 for a while. Each refusal is a
 * status line the role sends before closing; everyone else keeps being served.
 *
 * "One address" is {@link addrKey}: the whole loopback network 127.0.0.0/8
 * (and ::1) is one address, since every alias reaches the same host and one
 * local user could otherwise take 16 million shares; an IPv6 client is its
 * /64, the block one host gets.
 *
 * All state is in this process and bounded: per-address entries are dropped
 * as soon as they hold nothing worth remembering.
 * @module
 */
import { systemClock } from "../sys/clock.ts";
import { Status } from "./protocol.ts";

/** The limits one server process enforces (each is a flag, see `mod/cli.ts`). */
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

/** An admitted connection; call {@link Admitted.release} exactly once when it closes. */
export interface Admitted {
  release(): void;
}

interface AddrState {
  conns: number;
  tokens: number;
  refilledMs: number;
  /** Times of recent bad tickets, oldest first. */
  badTickets: number[];
}

/** Forget idle addresses once this many are tracked, so memory stays bounded. */
const SWEEP_AT = 4096;

/** The admission state of one server process. */
export class Admission {
  readonly limits: AdmissionLimits;
  readonly #now: () => number;
  readonly #addrs = new Map<string, AddrState>();
  #open = 0;

  /** `now` is injectable so tests can drive the clock. */
  constructor(limits: AdmissionLimits, now: () => number = () => systemClock.now()) {
    this.limits = limits;
    this.#now = now;
  }

  /** Connections currently admitted. */
  get open(): number {
    return this.#open;
  }

  /** Client addresses with state worth remembering (bounded: idle ones are forgotten). */
  get tracked(): number {
    return this.#addrs.size;
  }

  /**
   * Admits a new connection from `addr` (an {@link addrKey}), or says why
   * not: the server is full, this address holds too many connections, or is
   * sending too fast. All are 429.
   */
  admit(addr: string): Admitted | Refused {
    const now = this.#now();
    const s = this.#state(addr, now);
    const refused = this.#open >= this.limits.maxConns
      ? { status: Status.TOO_MANY, reason: `too many connections (${this.limits.maxConns}); retry later` }
      : s.conns >= this.limits.maxConnsPerAddr
      ? {
        status: Status.TOO_MANY,
        reason: `too many connections from ${addr} (${this.limits.maxConnsPerAddr}); retry later`,
      }
      : this.#take(s, addr, now);
    if (refused) {
      this.#forgetIfIdle(addr, s, now);
      return refused;
    }
    this.#open++;
    s.conns++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#open--;
        s.conns--;
        this.#forgetIfIdle(addr, s, this.#now());
      },
    };
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
      s = { conns: 0, tokens: this.limits.rateBurst, refilledMs: now, badTickets: [] };
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

/** Recent hosts' keys: a server sees the same few hosts again and again, and {@link addrKey} parses. */
const recentKeys = new Map<string, string>();

/** {@link addrKey} of the host of a `host:port` peer string, remembered for the last 256 hosts. */
export function peerKey(peer: string): string {
  const host = hostOf(peer);
  let key = recentKeys.get(host);
  if (key === undefined) {
    if (recentKeys.size >= 256) recentKeys.clear();
    key = addrKey(host);
    recentKeys.set(host, key);
  }
  return key;
}

/** The host part of a `host:port` peer string (IPv6 keeps its colons). */
export function hostOf(peer: string): string {
  const i = peer.lastIndexOf(":");
  return i < 0 ? peer : peer.slice(0, i);
}

/**
 * The key per-address limits count by: `loopback` for 127.0.0.0/8 and ::1
 * (one host, whatever alias it uses), the IPv4 address inside an IPv4-mapped
 * IPv6 one, the /64 of any other IPv6 address, else the address itself.
 */
export function addrKey(host: string): string {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  const v4 = mapped ? mapped[1]! : h;
  if (/^127\.\d+\.\d+\.\d+$/.test(v4) || h === "::1") return "loopback";
  if (!v4.includes(":")) return v4;
  return `${expandIpv6(v4).slice(0, 4).join(":")}::/64`;
}

function expandIpv6(a: string): string[] {
  const [head = "", tail] = a.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined
    ? h
    : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return groups.map((g) => g.replace(/^0+(?=.)/, ""));
}
