/**
 * The last minutes of traffic, for the status page's plot: every sample holds
 * the instance's cumulative request count and duration histogram at one
 * moment; rates and latency quantiles come from the differences between
 * neighbouring samples.
 * @module
 */
import { DURATION_BUCKETS, type StatsCounts } from "../ipc/stats.ts";

/** The instance's totals at one moment (monotonic ms). */
interface Sample {
  readonly at: number;
  readonly requests: number;
  /** Cumulative histogram over every type, per bucket (not cumulative across buckets). */
  readonly buckets: readonly number[];
}

/** One point of the plot. */
export interface TrafficPoint {
  /** Seconds before now (negative). */
  readonly t: number;
  /** Requests answered per second over the interval. */
  readonly rate: number;
  /** Estimated median and 99th percentile latency over the interval, ms; null with no request. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

/** Estimates quantile `q` of a bucketed distribution (linear within a bucket), seconds. */
export function bucketQuantile(
  q: number,
  counts: readonly number[],
  bounds = DURATION_BUCKETS,
): number | null {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    if (seen + c >= rank && c > 0) {
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      const hi = bounds[i] ?? lo; // above the last bound: say the last bound
      return lo + (hi - lo) * ((rank - seen) / c);
    }
    seen += c;
  }
  return bounds[bounds.length - 1]!;
}

/** A ring of samples covering `spanMs`, one at most every `everyMs`. */
export class TrafficHistory {
  readonly #samples: Sample[] = [];
  readonly #everyMs: number;
  readonly #max: number;

  constructor(options: { everyMs?: number; spanMs?: number } = {}) {
    this.#everyMs = options.everyMs ?? 2_000;
    this.#max = Math.ceil((options.spanMs ?? 5 * 60_000) / this.#everyMs) + 1;
  }

  /** Records the totals at `now` when a sample is due. A count going down (a new segment) restarts the history. */
  record(now: number, totals: StatsCounts): void {
    const last = this.#samples.at(-1);
    if (last && now - last.at < this.#everyMs) return;
    const requests = totals.requests.flat().reduce((a, b) => a + b, 0);
    const buckets = totals.buckets[0]!.map((_, i) => totals.buckets.reduce((a, row) => a + row[i]!, 0));
    if (last && requests < last.requests) this.#samples.length = 0;
    this.#samples.push({ at: now, requests, buckets });
    if (this.#samples.length > this.#max) this.#samples.shift();
  }

  /** Forgets every sample (the instance is gone). */
  clear(): void {
    this.#samples.length = 0;
  }

  /** The plot's points, oldest first, relative to `now`. */
  points(now: number): TrafficPoint[] {
    const out: TrafficPoint[] = [];
    for (let i = 1; i < this.#samples.length; i++) {
      const a = this.#samples[i - 1]!, b = this.#samples[i]!;
      const seconds = (b.at - a.at) / 1000;
      const delta = b.buckets.map((v, k) => v - a.buckets[k]!);
      const ms = (q: number) => {
        const s = bucketQuantile(q, delta);
        return s === null ? null : Math.round(s * 1e5) / 100;
      };
      out.push({
        t: (b.at - now) / 1000,
        rate: seconds > 0 ? (b.requests - a.requests) / seconds : 0,
        p50Ms: ms(0.5),
        p99Ms: ms(0.99),
      });
    }
    return out;
  }
}
