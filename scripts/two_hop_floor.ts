/**
 * Helper process of the benchmark suite: the "dispatcher" of the two-hop
 * floor. A plain Deno TCP server speaking just enough of the dispatcher's
 * protocol: the greeting, and `200 ASSIGN 127.0.0.1 <port> <ticket>` for every
 * `REQUEST` (no pool, no shared memory, no doorbell, no limits), naming a
 * `tcp_floor.ts` process as the worker. With it, a client makes the same two
 * connections as through osps and nothing else: the architectural floor of
 * the seeds' design, which osps is measured against.
 *
 * Usage: `two_hop_floor.ts <worker port>`; prints `port <n>` once listening and
 * runs until its stdin closes.
 * @module
 */
import { LineConn } from "../mod/net/line_conn.ts";
import { formatAssign, formatReply, greeting, Status } from "../mod/net/protocol.ts";

const workerPort = Number(Deno.args[0]);
const ticket = "ab".repeat(16);

async function serve(tcp: Deno.TcpConn): Promise<void> {
  tcp.setNoDelay(true);
  const conn = new LineConn(tcp);
  try {
    await conn.writeLine(greeting("dispatcher"));
    for (;;) {
      const line = await conn.readLine({ timeoutMs: 60_000 });
      if (line === null) return;
      if (line.startsWith("REQUEST")) {
        await conn.writeLine(formatAssign({ host: "127.0.0.1", port: workerPort, ticket }));
      } else if (line === "QUIT") return void await conn.writeLine(formatReply(Status.BYE, "bye"));
      else await conn.writeLine(formatReply(Status.OK, "OSPS/1"));
    }
  } catch {
    /* the client went away */
  } finally {
    conn.close();
  }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(`port ${(listener.addr as Deno.NetAddr).port}`);
const serving = (async () => {
  for await (const conn of listener) void serve(conn);
})();
for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
listener.close();
await serving.catch(() => {});
