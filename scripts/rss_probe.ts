/**
 * Helper process of the benchmark suite's memory part: imports the modules
 * named on its command line (project paths, `node:` or `npm:` specifiers),
 * then idles as a bare TCP server like the floor's, and prints its resident
 * memory (KiB, as `Deno.memoryUsage()` reads it) after a second and a half. With no module it is the
 * floor itself; with a role's module graph it shows what loading that role's
 * code costs before it does anything.
 *
 * Usage: `rss_probe.ts [MODULE…]`.
 * @module
 */
const root = new URL("../", import.meta.url);
for (const m of Deno.args) await import(/^(node|npm):/.test(m) ? m : new URL(m, root).href);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const accepting = (async () => {
  for await (const conn of listener) conn.close();
})();
await new Promise((r) => setTimeout(r, 1_500));
console.log(Math.round(Deno.memoryUsage().rss / 1024));
listener.close();
await accepting.catch(() => {});
