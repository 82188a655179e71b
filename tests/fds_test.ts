/**
 * File descriptors are a budget: under a low open-file limit the watchdog
 * refuses a `--max-conns` that cannot fit, lowers the default to what fits,
 * and a flood of idle connections is answered with status lines while every
 * role keeps running (no runtime panic, no restart): past the cap the oldest
 * silent ones are closed to make room for the newest.
 */
import assert from "node:assert/strict";
import { LineConn } from "../mod/net/line_conn.ts";
import { parseReply } from "../mod/net/protocol.ts";
import { freePorts, startInstance, withInstance } from "./harness.ts";

const LIMIT = 256;

Deno.test("a --max-conns that cannot fit under the open-file limit is refused with a clear error", async () => {
  const inst = await startInstance({
    workers: 1,
    fileLimit: LIMIT,
    flags: ["--max-conns=100000"],
    expectFailure: true,
  });
  assert.equal(await inst.exited(), 100, "a watchdog with a bad flag cannot boot (not retried by systemd)");
  assert.match(
    inst.logs(),
    /--max-conns 100000 cannot fit under the open-file limit 256 \(this role keeps \d+ descriptors for itself\): use --max-conns \d+ or less, or raise the limit \(ulimit -n\)/,
  );
});

Deno.test("under ulimit -n 256, 600 idle connections all get status lines, the oldest closed to make room; no role panics or restarts", async () => {
  const port = freePorts(3);
  await withInstance(
    { workers: 2, port, fileLimit: LIMIT, flags: ["--handshake-timeout-ms=3000"] },
    async (inst) => {
      const before = await inst.status();
      const capped = /--max-conns lowered from 1024 to (\d+) to fit the open-file limit 256/.exec(
        inst.logs(),
      );
      assert.ok(capped, inst.logs());
      const cap = Number(capped[1]);
      const held: LineConn[] = [];
      try {
        for (const target of [port, port + 1]) {
          const conns = await Promise.all(
            Array.from({ length: 600 }, () => LineConn.connect("127.0.0.1", target)),
          );
          held.push(...conns);
          // Each is greeted; then told it was closed to make room, or (those still held) that its handshake
          // time is over. A client goes away once it has its last line, as a real one would.
          const lines = await Promise.all(conns.map(async (c) => {
            const got: string[] = [];
            for (
              let line;
              got.length < 3 && (line = await c.readLine({ timeoutMs: 15_000 }).catch(() => null));
            ) {
              got.push(line);
            }
            c.close();
            return got;
          }));
          const greeted = lines.filter((l) => l[0]?.startsWith("220 ")).length;
          const evicted = lines.filter((l) =>
            /^408 no complete line yet, and the server needed the room/.test(l[1] ?? "")
          );
          const timedOut = lines.filter((l) => /^408 no complete line within 3000 ms$/.test(l[1] ?? ""));
          assert.equal(greeted, 600, `${target}: every connection was greeted`);
          assert.equal(evicted.length + timedOut.length, 600, `${target}: every one got its status line`);
          assert.ok(
            timedOut.length <= cap && evicted.length >= 600 - cap,
            `${target}: ${timedOut.length} held, cap ${cap}`,
          );
          for (const l of lines) parseReply(l[1]!);
        }
      } finally {
        for (const c of held) c.close();
      }
      assert.equal((await inst.client(["echo", "after the flood"])).stdout, "after the flood\n");
      const after = await inst.status();
      assert.deepEqual(
        [after.dispatcher, ...after.workers].map((c) => [c.pid, c.restarts]),
        [before.dispatcher, ...before.workers].map((c) => [c.pid, c.restarts]),
        "same processes, no restart",
      );
      assert.doesNotMatch(inst.logs(), /panicked|no free file descriptor/);
    },
  );
});
