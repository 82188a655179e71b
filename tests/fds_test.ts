/**
 * File descriptors are a budget: under a low open-file limit the watchdog
 * refuses a `--max-conns` that cannot fit, lowers the default to what fits,
 * and a flood of idle connections is answered with status lines while every
 * role keeps running (no runtime panic, no restart).
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
  assert.equal(await inst.exited(), 2);
  assert.match(
    inst.logs(),
    /--max-conns 100000 cannot fit under the open-file limit 256 \(this role keeps \d+ descriptors for itself\): use --max-conns \d+ or less, or raise the limit \(ulimit -n\)/,
  );
});

Deno.test("under ulimit -n 256, 600 idle connections get 429 lines past the cap; no role panics or restarts", async () => {
  const port = freePorts(3);
  await withInstance({ workers: 2, port, fileLimit: LIMIT }, async (inst) => {
    const before = await inst.status();
    const capped = /--max-conns lowered from 1024 to (\d+) to fit the open-file limit 256/.exec(inst.logs());
    assert.ok(capped, inst.logs());
    const cap = Number(capped[1]);
    const held: LineConn[] = [];
    const refusals: string[] = [];
    try {
      for (const target of [port, port + 1]) {
        const conns = await Promise.all(
          Array.from({ length: 600 }, () => LineConn.connect("127.0.0.1", target)),
        );
        held.push(...conns);
        // A refused client goes away once it has its line (as a real one would); admitted ones stay.
        const first = await Promise.all(conns.map(async (c) => {
          const line = await c.readLine({ timeoutMs: 15_000 }).catch(() => null);
          if (!line?.startsWith("220")) c.close();
          return line;
        }));
        const greeted = first.filter((l) => l?.startsWith("220")).length;
        const refused = first.filter((l) => l?.startsWith("429")).length;
        refusals.push(...first.filter((l): l is string => l?.startsWith("429") ?? false));
        assert.ok(greeted <= cap && greeted >= cap - 5, `${target}: ${greeted} greeted, cap ${cap}`);
        assert.equal(
          greeted + refused,
          600,
          `${target}: every connection got a status line (${greeted} + ${refused})`,
        );
      }
      assert.match(refusals[0]!, /^429 too many connections \(\d+\); retry later$/);
      parseReply(refusals[0]!);
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
  });
});
