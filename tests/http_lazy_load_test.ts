/**
 * A worker started without `--http-port` never loads Hono or zod: nothing
 * the roles import statically reaches them; the HTTP service is imported by
 * `roles/worker.ts` only when the port is given (a dynamic import). The
 * walk follows static `import`/`export … from` (not `import type`, which
 * loads nothing at run time) through the repository's files.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** Bare specifiers (npm packages, `node:` modules) statically reachable from `entry`. */
function staticPackages(entry: string): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const visit = (url: URL) => {
    if (seen.has(url.href)) return;
    seen.add(url.href);
    const text = Deno.readTextFileSync(url);
    for (const m of text.matchAll(/^(?:import|export)\s+(?!type\b)[^;]*?\bfrom\s+"([^"]+)";/gms)) {
      const spec = m[1]!;
      if (spec.startsWith(".")) visit(new URL(spec, url));
      else packages.add(spec);
    }
    for (const m of text.matchAll(/^import\s+"([^"]+)";/gm)) {
      if (m[1]!.startsWith(".")) visit(new URL(m[1]!, url));
      else packages.add(m[1]!);
    }
  };
  visit(new URL(entry, ROOT));
  return packages;
}

const HEAVY = /^(hono|hono\/.*|@hono\/zod-openapi|zod)$/;

Deno.test("a worker without --http-port loads neither Hono nor zod; the HTTP service does", () => {
  for (const entry of ["main.ts", "roles/worker.ts", "roles/watchdog.ts", "roles/dispatcher.ts"]) {
    const heavy = [...staticPackages(entry)].filter((p) => HEAVY.test(p));
    assert.deepEqual(heavy, [], `${entry} reaches ${heavy.join(", ")} statically`);
  }
  const http = [...staticPackages("mod/http/http_service.ts")].filter((p) => HEAVY.test(p));
  assert.ok(http.includes("@hono/zod-openapi"), "the walk does see the HTTP service's imports");
});
