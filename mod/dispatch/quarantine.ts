/**
 * Request types that keep killing workers are refused for a while, so one bad
 * request (a `fib 45` that blocks a worker past its hang timeout, a `sleep`
 * past its deadline) repeated by one client cannot keep the pool restarting:
 * after `kills` request-caused kills of one type within `windowMs`, that type
 * is answered `503 <type> is refused for N s: it cost K workers in W s` for
 * `cooldownMs`, and every other type keeps being served.
 * @module
 */
import type { Clock } from "../sys/clock.ts";
import { Status } from "../net/protocol.ts";
import type { Refusal } from "./worker_pool.ts";

/** Quarantine settings (flags `--quarantine-kills`, `--quarantine-window-ms`, `--quarantine-ms`). */
export interface QuarantineConfig {
  /** Request-caused kills of one type within the window that quarantine it (0 = never). */
  readonly quarantineKills: number;
  readonly quarantineWindowMs: number;
  /** How long a quarantined type is refused. */
  readonly quarantineMs: number;
}

/** A quarantined type, for status. */
export interface Quarantined {
  readonly type: string;
  /** Monotonic time the type is served again. */
  readonly until: number;
  readonly kills: number;
}

/** The dispatcher's quarantine of request types. */
export class Quarantine {
  readonly #cfg: QuarantineConfig;
  readonly #clock: Clock;
  /** Times of recent request-caused kills, by type. */
  readonly #kills = new Map<string, number[]>();
  readonly #until = new Map<string, { until: number; kills: number }>();
  /** Called when the set of quarantined types changes (the dispatcher publishes it). */
  onChange: (list: Quarantined[]) => void = () => {};

  constructor(cfg: QuarantineConfig, clock: Clock) {
    this.#cfg = cfg;
    this.#clock = clock;
  }

  /** Records a worker killed by a request of `type`; returns true when that quarantines the type. */
  recordKill(type: string): boolean {
    if (this.#cfg.quarantineKills <= 0) return false;
    const now = this.#clock.now();
    const times = (this.#kills.get(type) ?? []).filter((t) => now - t < this.#cfg.quarantineWindowMs);
    times.push(now);
    this.#kills.set(type, times);
    if (times.length < this.#cfg.quarantineKills) return false;
    this.#kills.delete(type);
    this.#until.set(type, { until: now + this.#cfg.quarantineMs, kills: times.length });
    this.onChange(this.list());
    return true;
  }

  /**
   * True when a request of `type` killed a worker within the window: its requests then run alone in their
   * worker (with several tickets per worker), so that another kill takes no other client's request with it.
   */
  suspect(type: string): boolean {
    const times = this.#kills.get(type);
    return times !== undefined && times.some((t) => this.#clock.now() - t < this.#cfg.quarantineWindowMs);
  }

  /** The refusal for a request of `type` now, or null when it may be served. */
  check(type: string): Refusal | null {
    const q = this.#until.get(type);
    if (!q) return null;
    const left = q.until - this.#clock.now();
    if (left <= 0) {
      this.#until.delete(type);
      this.onChange(this.list());
      return null;
    }
    return {
      status: Status.BUSY,
      refused: `${type} is refused for ${Math.ceil(left / 1000)} s: it cost ${q.kills} workers in ${
        Math.round(this.#cfg.quarantineWindowMs / 1000)
      } s`,
    };
  }

  /** Types refused right now. */
  list(): Quarantined[] {
    const now = this.#clock.now();
    return [...this.#until].filter(([, q]) => q.until > now).map(([type, q]) => ({ type, ...q }));
  }
}

/** Encodes the quarantined types for the shm header (`type until kills;…`), cut to `max` bytes. */
export function encodeQuarantine(list: readonly Quarantined[], max: number): string {
  let out = "";
  for (const q of list) {
    const item = `${q.type} ${Math.round(q.until)} ${q.kills};`;
    if (out.length + item.length > max) break;
    out += item;
  }
  return out;
}

/** Decodes {@link encodeQuarantine}. */
export function decodeQuarantine(text: string): Quarantined[] {
  return text.split(";").filter((s) => s !== "").map((item) => {
    const [type = "", until = "0", kills = "0"] = item.split(" ");
    return { type, until: Number(until), kills: Number(kills) };
  });
}
