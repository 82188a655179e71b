import assert from "node:assert/strict";
import {
  BUCKET_BOUNDS_MS,
  formatMs,
  histogram,
  LatencyRecorder,
  percentile,
  renderHistogram,
  summarize,
} from "../mod/client/latency_stats.ts";

Deno.test("percentile() uses nearest rank: the smallest sample with p % at or below it", () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(sorted, 50), 50);
  assert.equal(percentile(sorted, 90), 90);
  assert.equal(percentile(sorted, 99), 99);
  assert.equal(percentile(sorted, 100), 100);
  assert.equal(percentile(sorted, 0), 1);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 50), 0);
});

Deno.test("percentile() throws RangeError outside 0..100", () => {
  assert.throws(() => percentile([1], 101), RangeError);
  assert.throws(() => percentile([1], -1), RangeError);
  assert.throws(() => percentile([1], NaN), RangeError);
});

Deno.test("summarize() sorts a copy and reports min, mean, percentiles and max", () => {
  const samples = [5, 1, 4, 2, 3];
  const s = summarize(samples);
  assert.deepEqual(s, { count: 5, min: 1, mean: 3, p50: 3, p90: 5, p99: 5, max: 5 });
  assert.deepEqual(samples, [5, 1, 4, 2, 3], "input untouched");
  assert.deepEqual(summarize([]), { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 });
});

Deno.test("summarize() sorts numerically, not as strings", () => {
  assert.equal(summarize([10, 9, 100, 2]).p50, 9);
});

Deno.test("histogram() counts every sample once in 1-2-5 buckets, trimmed to the used range", () => {
  const h = histogram([0.3, 0.5, 0.5, 0.7, 1, 1.5, 12]);
  assert.deepEqual(h, [
    { le_ms: 0.5, count: 3 },
    { le_ms: 1, count: 2 },
    { le_ms: 2, count: 1 },
    { le_ms: 5, count: 0 },
    { le_ms: 10, count: 0 },
    { le_ms: 20, count: 1 },
  ]);
  assert.deepEqual(histogram([]), []);
});

Deno.test("histogram() puts samples beyond the last bound into an overflow bucket", () => {
  const last = BUCKET_BOUNDS_MS[BUCKET_BOUNDS_MS.length - 1]!;
  const h = histogram([last, last * 2]);
  assert.deepEqual(h, [{ le_ms: last, count: 1 }, { le_ms: Infinity, count: 1 }]);
});

Deno.test("bucket bounds rise strictly on a 1-2-5 scale", () => {
  for (let i = 1; i < BUCKET_BOUNDS_MS.length; i++) {
    assert.ok(BUCKET_BOUNDS_MS[i]! > BUCKET_BOUNDS_MS[i - 1]!);
  }
  assert.deepEqual(BUCKET_BOUNDS_MS.slice(0, 4), [0.001, 0.002, 0.005, 0.01]);
});

Deno.test("renderHistogram() draws one line per bucket with the count and share", () => {
  const text = renderHistogram([{ le_ms: 0.5, count: 1 }, { le_ms: 1, count: 3 }], 6);
  const lines = text.split("\n");
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /≤ +500 µs │██ +1 +25\.0 %$/);
  assert.match(lines[1]!, /≤ +1\.00 ms │██████ +3 +75\.0 %$/);
});

Deno.test("formatMs() picks µs, ms or s", () => {
  assert.equal(formatMs(0.0449), "44.9 µs");
  assert.equal(formatMs(2.5), "2.50 ms");
  assert.equal(formatMs(12_000), "12.0 s");
  assert.equal(formatMs(Infinity), "∞");
});

Deno.test("LatencyRecorder keeps every sample across growth", () => {
  const r = new LatencyRecorder();
  for (let i = 1; i <= 5000; i++) r.add(i / 1000);
  assert.equal(r.count, 5000);
  assert.equal(r.samples().length, 5000);
  const s = r.summary();
  assert.equal(s.min, 0.001);
  assert.equal(s.max, 5);
  assert.equal(s.p50, 2.5);
  assert.equal(r.histogram().reduce((n, b) => n + b.count, 0), 5000);
});
