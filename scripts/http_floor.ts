/**
 * The reference servers of the benchmark's HTTP part: what a Deno user would
 * write instead of osps for `POST /v1/requests/echo` — the body back as
 * text, the same service function osps runs.
 *
 * - `deno serve --parallel scripts/http_floor_serve.ts` (the default export
 *   there): `deno serve`'s own workers answering it;
 * - `deno run scripts/http_floor.ts <port>`: a plain `Deno.serve` in one
 *   process (0 = any free port); prints `port <n>` once listening and runs
 *   until its stdin closes (a helper of `spawnHelper`).
 * @module
 */
import { lookupService } from "../mod/services/registry.ts";

const echo = lookupService("echo");
const context = { workerId: 0, pid: Deno.pid, uptimeMs: 0, served: 0 };

/** Answers a request as osps's echo route does: the body back, as text. */
export async function fetch(req: Request): Promise<Response> {
  const text = await echo.run(await req.text(), context);
  return new Response(text, { headers: { "content-type": "text/plain; charset=utf-8" } });
}

if (import.meta.main) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: Number(Deno.args[0]), onListen: (a) => console.log(`port ${a.port}`) },
    fetch,
  );
  for await (const _ of Deno.stdin.readable) { /* nothing is sent */ }
  await server.shutdown();
}
