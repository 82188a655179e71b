/**
 * Latency statistics for `osps bench` and the benchmark suite: a sample
 * recorder, nearest-rank percentiles, a log-scale histogram and its text
 * rendering. Times are in milliseconds throughout.
 * @module
 */

/** Summary of a set of latency samples, in ms (all 0 when there are none). */
export interface LatencySummary {
  readonly count: number;
  readonly min: number;
  readonly mean: number;
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
}

/** One histogram bucket: samples `> previous le_ms` and `<= le_ms`. */
export interface Bucket {
  /** Upper bound of the bucket in ms (inclusive). */
  readonly le_ms: number;
  readonly count: number;
}

/**
 * The nearest-rank percentile `p` (0–100) of ascending `sorted` samples: the
 * smallest sample such that at least p % of the samples are ≤ it. 0 when empty.
 * @example
 * ```ts
 * percentile([1, 2, 3, 4], 50); // 2
 * ```
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be between 0 and 100, got ${p}`);
  const n = sorted.length;
  if (n === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * n));
  return sorted[Math.min(rank, n) - 1]!;
}

/** Summarizes `samples` (any order; not modified). */
export function summarize(samples: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(samples).sort();
  const n = sorted.length;
  if (n === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: n,
    min: sorted[0]!,
    mean: sum / n,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[n - 1]!,
  };
}

/** Bucket bounds in ms on a 1-2-5 scale from 1 µs to 100 s. */
export const BUCKET_BOUNDS_MS: readonly number[] = (() => {
  const out: number[] = [];
  for (let e = -3; e <= 4; e++) for (const m of [1, 2, 5]) out.push(Number((m * 10 ** e).toPrecision(1)));
  out.push(1e5);
  return out;
})();

/**
 * A log-scale histogram of `samples` on {@link BUCKET_BOUNDS_MS}, trimmed to the
 * buckets between the first and last non-empty one. Samples above the last
 * bound land in a final bucket with `le_ms: Infinity`.
 */
export function histogram(samples: ArrayLike<number>): Bucket[] {
  const counts = new Array<number>(BUCKET_BOUNDS_MS.length + 1).fill(0);
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i]!;
    let b = BUCKET_BOUNDS_MS.findIndex((le) => v <= le);
    if (b < 0) b = BUCKET_BOUNDS_MS.length;
    counts[b]!++;
  }
  const first = counts.findIndex((c) => c > 0);
  if (first < 0) return [];
  const last = counts.findLastIndex((c) => c > 0);
  const out: Bucket[] = [];
  for (let b = first; b <= last; b++) out.push({ le_ms: BUCKET_BOUNDS_MS[b] ?? Infinity, count: counts[b]! });
  return out;
}

/** Formats a duration in ms for people: µs below 1 ms, s from 10 s. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return "∞";
  if (ms < 1) return `${(ms * 1000).toPrecision(3)} µs`;
  if (ms < 10_000) return `${ms.toPrecision(3)} ms`;
  return `${(ms / 1000).toPrecision(3)} s`;
}

/**
 * Renders a histogram as text, one line per bucket: bound, bar, count, share.
 * @example
 * ```ts
 * console.log(renderHistogram(histogram([0.4, 0.5, 1.2]), 20));
 * ```
 */
export function renderHistogram(buckets: readonly Bucket[], width = 40): string {
  const total = buckets.reduce((n, b) => n + b.count, 0);
  const most = Math.max(1, ...buckets.map((b) => b.count));
  return buckets.map((b) => {
    const bar = "█".repeat(Math.round((b.count / most) * width));
    const share = total ? ((100 * b.count) / total).toFixed(1) : "0.0";
    return `  ≤ ${formatMs(b.le_ms).padStart(9)} │${bar.padEnd(width)} ${String(b.count).padStart(7)} ${
      share.padStart(5)
    } %`;
  }).join("\n");
}

/** Collects latency samples without reallocating on every add. */
export class LatencyRecorder {
  #samples = new Float64Array(1024);
  #count = 0;

  /** Number of samples recorded. */
  get count(): number {
    return this.#count;
  }

  /** Records one latency in ms. */
  add(ms: number): void {
    if (this.#count === this.#samples.length) {
      const next = new Float64Array(this.#samples.length * 2);
      next.set(this.#samples);
      this.#samples = next;
    }
    this.#samples[this.#count++] = ms;
  }

  /** The samples recorded so far (a view; do not keep it across adds). */
  samples(): Float64Array {
    return this.#samples.subarray(0, this.#count);
  }

  /** {@link summarize} of the samples. */
  summary(): LatencySummary {
    return summarize(this.samples());
  }

  /** {@link histogram} of the samples. */
  histogram(): Bucket[] {
    return histogram(this.samples());
  }
}
