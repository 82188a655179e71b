/**
 * A burst as a chat storm makes it, for `tests/memory_test.ts`: many small
 * buffers (malloc'd by the runtime), one in eight kept, the rest freed by a
 * full collection; then a {@link MallocTrim} looks every 50 ms. Prints the
 * resident KiB before and after its first trim, and its stats, as JSON.
 * Run with `--v8-flags=--expose-gc --allow-ffi`.
 */
import { MallocTrim, memoryReport } from "../../mod/sys/memory.ts";

const kept: Uint8Array[] = [];
let burst: Uint8Array[] = [];
for (let i = 0; i < 200_000; i++) {
  const b = new Uint8Array(600 + (i % 7) * 100);
  burst.push(b);
  if (i % 8 === 0) kept.push(b);
}
burst = [];
(globalThis as unknown as { gc: () => void }).gc();
await new Promise((r) => setTimeout(r, 100));
const before = memoryReport().rss;
const trim = new MallocTrim(50);
const until = performance.now() + 10_000;
while (trim.stats.trims === 0 && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
trim.stop();
console.log(JSON.stringify({ before, after: memoryReport().rss, stats: trim.stats, kept: kept.length }));
