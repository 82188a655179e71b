/**
 * The watchdog's last-resort error handler (issue 16, item 11): an error
 * nobody caught while it handles an event is logged and contained, and the
 * watchdog keeps supervising; a storm of them stops it cleanly (every child
 * reaped, nothing left) with exit 111, for its own supervisor to start afresh.
 *
 * The fault is real: the path `watchdog.json` is written through
 * (`watchdog.json.new`) is made a directory, so publishing a reload's result
 * throws where nothing expects it to.
 */
import assert from "node:assert/strict";
import { assertNothingLeft, osps, startInstance, waitFor, waitForLog } from "./harness.ts";
import { EventQueue } from "../mod/supervise/events.ts";
import { STORM_LIMIT, StrayErrors } from "../mod/supervise/stray_errors.ts";

Deno.test("StrayErrors logs and contains each error; a storm within the window posts one fault", async () => {
  using events = new EventQueue();
  let now = 0;
  using errors = new StrayErrors(events, () => now);
  for (let i = 0; i < STORM_LIMIT - 1; i++) {
    errors.contain("a handler", () => {
      throw new Error(`bug ${i}`);
    });
    now += 2_000; // spread out: the window forgets the oldest
  }
  assert.deepEqual(await events.next(0), [], "spread-out errors are no storm");
  for (let i = 0; i < STORM_LIMIT; i++) errors.contain("a handler", () => void JSON.parse("{"));
  const batch = await events.next(0);
  assert.equal(batch.length, 1);
  assert.equal(batch[0]!.kind, "fault");
});

Deno.test("an error nobody caught in the watchdog is logged and contained: it keeps supervising", async () => {
  // Not withInstance: it fails a test on any "uncaught error" line, and this one is provoked.
  const inst = await startInstance({ workers: 1 });
  try {
    Deno.mkdirSync(`${inst.runDir}/watchdog.json.new`); // publishing a reload's result now throws
    const o = await osps(["reload", `--run-dir=${inst.runDir}`, "--timeout-ms=3000"]);
    assert.equal(o.code, 1);
    await waitForLog(inst, /uncaught error in the reload \(contained; the watchdog keeps supervising\)/);
    // Still supervising: a killed worker is replaced, clients are served.
    const victim = (await inst.status()).workers[0]!;
    Deno.kill(victim.pid, "SIGKILL");
    await waitFor("the worker replaced", async () => {
      const w = (await inst.status()).workers[0]!;
      return w.pid !== victim.pid && w.state === "ready";
    });
    assert.equal((await inst.client(["echo", "supervised"])).stdout.trim(), "supervised");
    Deno.removeSync(`${inst.runDir}/watchdog.json.new`);
    const again = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(again.code, 0, again.stderr);
  } catch (err) {
    await inst.stop().catch(() => {});
    throw err;
  }
  assert.equal(await inst.stop(), 0);
  await assertNothingLeft(inst);
});

Deno.test("a storm of uncaught errors stops the watchdog cleanly: children reaped, nothing left, exit 111", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-storm-" });
  const config = `${dir}/osps.toml`;
  Deno.writeTextFileSync(config, "workers = 1\n");
  const inst = await startInstance({ workers: 1, flags: [`--config=${config}`] });
  try {
    Deno.writeTextFileSync(config, "workers = = 1\n"); // each reload fails at once, then throws publishing it
    Deno.mkdirSync(`${inst.runDir}/watchdog.json.new`);
    for (let i = 0; i < 6 * STORM_LIMIT && inst.logs().indexOf("stopping (") < 0; i++) {
      Deno.kill(inst.pid, "SIGHUP");
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitForLog(inst, /stopping \(\d+ uncaught errors/, 10_000);
    assert.equal(await inst.exited(), 111, inst.logs());
    // Everything the watchdog made is gone; what is left is the test's own directory (so the run dir stays).
    assert.deepEqual([...Deno.readDirSync(inst.runDir)].map((e) => e.name), ["watchdog.json.new"]);
    Deno.removeSync(inst.runDir, { recursive: true });
    assert.match(inst.logs(), /stopping \(\d+ uncaught errors within 10 s\)/);
    assert.match(inst.logs(), /stopped cleanly: \d+ uncaught errors/);
    await assertNothingLeft(inst);
  } finally {
    await inst.stop().catch(() => {});
    Deno.removeSync(dir, { recursive: true });
  }
});
