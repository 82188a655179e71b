/**
 * Helper process of the benchmark suite (`deno task bench`): the floor of the
 * full-cycle benchmark. A plain Deno TCP server that answers the same request
 * a worker answers, on one direct connection, without dispatcher or ticket:
 * greeting, one `RUN <ticket> <type> [arg]` line (the ticket is not checked),
 * the answer, close. It uses the same protocol and service modules as a worker,
 * so the difference from osps is the dispatcher hop and the ticket alone.
 *
 * Usage: `tcp_floor.ts <port>` (0 = any free port); prints `port <n>` once
 * listening and runs until its stdin closes.
 * @module
 */
import { LineConn } from "../mod/net/line_conn.ts";
import { formatReply, greeting, parseRunCommand, Status } from "../mod/net/protocol.ts";
import { lookupService } from "../mod/services/registry.ts";

const startedMs = performance.now();
let served = 0;

async function serve(tcp: Deno.TcpConn): Promise<void> {
  tcp.setNoDelay(true);
  const conn = new LineConn(tcp);
  try {
    await conn.writeLine(greeting("worker", "floor"));
    const line = await conn.readLine({ timeoutMs: 10_000 });
    if (line === null) return;
    const run = parseRunCommand(line);
    const result = await lookupService(run.type).run(run.arg, {
      workerId: 0,
      pid: Deno.pid,
      uptimeMs: performance.now() - startedMs,
      served: served++,
    });
    await conn.writeLine(formatReply(Status.OK, result));
  } catch (err) {
    await conn.writeLine(formatReply(Status.BAD_REQUEST, (err as Error).message));
  } finally {
    conn.close();
  }
}

if (import.meta.main) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(Deno.args[0] ?? 0) });
  console.log(`port ${(listener.addr as Deno.NetAddr).port}`);
  const accepting = (async () => {
    for await (const conn of listener) void serve(conn);
  })();
  for await (const _ of Deno.stdin.readable) { /* nothing is sent */ }
  listener.close();
  await accepting.catch(() => {});
}
