/**
 * systemd-logind's `RemoveIPC=yes` deletes a user's POSIX shared memory when
 * they log out (systemd issue #2324), under a running instance. The watchdog
 * notices on its next tick, stops everything cleanly, exits 111 (temporary:
 * restart me), and a new start on the same run dir works.
 */
import assert from "node:assert/strict";
import { instancePaths } from "../mod/config.ts";
import { Segment } from "../mod/shm.ts";
import { assertNothingLeft, exists, rolesOf, startInstance, waitFor } from "./harness.ts";

Deno.test("a shm segment removed under a live instance: clean stop with exit 111, then a clean restart", async () => {
  const first = await startInstance({ workers: 2, flags: ["--heartbeat-ms=100", "--hang-timeout-ms=1000"] });
  const shm = instancePaths(first.runDir).shm;
  let code: number;
  try {
    const o = await first.client(["echo", "before"]);
    assert.equal(o.stdout, "before\n", o.stderr);
    assert.ok(Segment.unlink(shm), "the segment existed");
    code = await Promise.race([
      first.exited(),
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error("watchdog did not react")), 20_000)
      ),
    ]);
  } catch (err) {
    await first.stop().catch(() => {});
    throw err;
  }
  assert.equal(code, 111, first.logs());
  assert.match(first.logs(), /shared memory \/osps-\S+ vanished/);
  assert.match(first.logs(), /removed by someone else .*stopped cleanly/);
  await waitFor("every role process to be gone", () => rolesOf(first.runDir).length === 0, 5_000);
  assert.equal(exists(first.runDir), false, "run dir removed");
  assert.equal(Segment.exists(shm), false);

  Deno.mkdirSync(first.runDir.replace(/\/run$/, ""), { recursive: true }); // the parent is the test's, keep it
  const second = await startInstance({ workers: 2, port: first.port, runDir: first.runDir });
  try {
    const o = await second.client(["upper", "after"]);
    assert.equal(o.stdout, "AFTER\n", o.stderr);
    assert.equal(Segment.exists(shm), true, "a fresh segment under the same name");
  } finally {
    assert.equal(await second.stop(), 0);
  }
  await assertNothingLeft(second);
});
