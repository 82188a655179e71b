/** Where a process's memory goes (`mod/sys/memory.ts`), and giving glibc's freed memory back. */
import assert from "node:assert/strict";
import { memoryLine, memoryReport, parseMemoryLine } from "../mod/sys/memory.ts";

Deno.test("memoryReport() splits the resident set: heap used within committed, anonymous within resident", () => {
  const r = memoryReport();
  assert.ok(r.rss > 0 && r.anon > 0 && r.anon <= r.rss, JSON.stringify(r));
  assert.ok(r.heapUsed > 0 && r.heapUsed <= r.heapCommitted, JSON.stringify(r));
  assert.ok(r.oldUsed <= r.oldCommitted && r.oldCommitted <= r.heapCommitted, JSON.stringify(r));
  assert.ok(r.mallocUsed > 0 && r.mallocFree >= 0, JSON.stringify(r));
  const line = memoryLine(r);
  assert.match(line, /^rss=\d+ anon=\d+ heap_used=\d+ heap_committed=\d+ /);
  assert.deepEqual(
    parseMemoryLine(`memory KiB ${line} trims=0 (owner)`),
    {
      ...Object.fromEntries(
        Object.entries(r).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]),
      ),
      trims: 0,
    },
  );
});

Deno.test("MallocTrim gives back the memory a burst of small buffers left free in glibc's heap", async () => {
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--v8-flags=--expose-gc",
      "--allow-ffi",
      new URL("./support/malloc_burst.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
  const r = JSON.parse(new TextDecoder().decode(o.stdout));
  // About 140 MB were freed in chunks between kept ones: only a trim gives their pages back.
  assert.equal(r.stats.trims, 1, JSON.stringify(r));
  assert.ok(r.stats.lastKiB > 32 * 1024, JSON.stringify(r));
  assert.ok(r.before - r.after > 32 * 1024, JSON.stringify(r));
});
