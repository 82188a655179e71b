/**
 * Death of the watchdog: its children go with it at once, and the next
 * watchdog on that run dir cleans what the dead one left and starts; a
 * second watchdog on a live instance is refused.
 */
import assert from "node:assert/strict";
import {
  exists,
  freePorts,
  pollFast,
  rolesOf,
  since,
  startInstance,
  waitForLog,
  withInstance,
} from "./harness.ts";
import { instancePaths } from "../mod/cli/config.ts";
import { isAlive } from "../mod/sys/proc.ts";
import { Segment } from "../mod/ipc/shm.ts";

Deno.test("kill -9 of the watchdog: every child exits at once; the next watchdog cleans up and starts", async () => {
  const parent = Deno.makeTempDirSync({ prefix: "osps-test-" });
  const runDir = `${parent}/run`;
  const port = freePorts(4);
  try {
    const first = await startInstance({ workers: 3, port, runDir });
    const children = rolesOf(runDir).filter((pid) => pid !== first.pid);
    assert.equal(children.length, 4, "dispatcher and 3 workers");
    const t0 = performance.now();
    Deno.kill(first.pid, "SIGKILL");
    await pollFast("each child dead", () => children.every((pid) => !isAlive(pid)), 5_000, 0);
    const each = since(t0);
    await pollFast("no role process left", () => rolesOf(runDir).length === 0, 5_000, 1);
    const ms = since(t0);
    console.log(
      `children dead ${each} ms after the watchdog's SIGKILL; whole /proc clear of the instance ${ms} ms`,
    );
    assert.ok(ms < 2_000, `took ${ms} ms`);
    assert.equal(await first.exited(), 137);
    const paths = instancePaths(runDir);
    assert.ok(Segment.exists(paths.shm), "the dead watchdog left its segment");
    assert.ok(exists(paths.dwtube(1)), "and its FIFOs");

    await withInstance({ workers: 3, port, runDir }, async (second) => {
      await waitForLog(second, /removed leftovers of a crashed instance: shm .*dwtube1/);
      const rs = await Promise.all(Array.from({ length: 6 }, (_, i) => second.client(["echo", `${i}`])));
      for (const [i, r] of rs.entries()) assert.equal(r.stdout, `${i}\n`, r.stderr);
      assert.doesNotMatch(second.logs(), /address already in use/);
    });
  } finally {
    Deno.removeSync(parent, { recursive: true });
  }
});

Deno.test("a second watchdog on a live instance is refused with a clear error", async () => {
  await withInstance({ workers: 1 }, async (inst) => {
    const again = await startInstance({
      workers: 1,
      port: inst.port,
      runDir: inst.runDir,
      expectFailure: true,
    });
    assert.equal(await again.exited(), 100);
    assert.match(
      again.logs(),
      new RegExp(`an osps instance is already running in "${inst.runDir}" \\(watchdog pid ${inst.pid}`),
    );
    const s = await inst.status();
    assert.ok(s.workers[0]!.pid > 0, "the live instance is untouched");
    assert.equal((await inst.client(["echo", "still"])).stdout, "still\n");
  });
});
