/**
 * Planned replacement and pipe faults: `--max-requests` recycling under load
 * without a single client error, and the dispatcher's end-to-end probe
 * catching a wedged FIFO pair between two live processes.
 */
import assert from "node:assert/strict";
import { waitFor, waitForLog, withInstance } from "./harness.ts";
import { instancePaths } from "../mod/cli/config.ts";

Deno.test("--max-requests recycles workers under load with zero client errors", async () => {
  await withInstance({ workers: 2, flags: ["--max-requests=10"] }, async (inst) => {
    const before = await inst.status();
    const rs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => inst.client(["--repeat=20", "echo", `c${i}`])),
    );
    for (const [i, r] of rs.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, "", "no error, not even a retried one");
      assert.equal(r.stdout, `c${i}\n`.repeat(20));
    }
    const s = await waitFor("replacements ready", async () => {
      const s = await inst.status();
      return s.workers.every((w) => w.state === "ready" && w.work === "idle") ? s : null;
    });
    // 120 requests at ≤ 11 per worker process: at least 8 retirements (logs may trail the table a moment).
    await waitFor(
      "8 retirements logged",
      () => (inst.logs().match(/worker \d retired after \d+ ms/g) ?? []).length >= 8,
    );
    for (const [i, w] of s.workers.entries()) {
      assert.notEqual(w.pid, before.workers[i]!.pid);
      assert.equal(w.restarts, 0, "a retirement is not a failure");
      assert.equal(w.last_exit, "recycled (max requests)");
    }
    assert.equal(s.workers.reduce((n, w) => n + w.served, 0), 120);
  });
});

Deno.test("a wedged FIFO pair is caught by the probe: not routed to, then replaced", async () => {
  await withInstance({
    workers: 2,
    flags: ["--heartbeat-ms=100", "--hang-timeout-ms=1000", "--probe-ms=100"],
  }, async (inst) => {
    // A stray reader on worker 1's FIFO to the dispatcher: the kernel hands it
    // some of the doorbells, so probes go unanswered while both ends live.
    const thief = new Deno.Command("cat", {
      args: [instancePaths(inst.runDir).wdtube(1)],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const victim = (await inst.status()).workers[0]!.pid;
      await waitForLog(inst, /worker 1: probe unanswered for \d+ ms: pipes wedged; not routing to it/);
      stopThief(thief);
      const s = await waitFor("worker 1 replaced", async () => {
        const s = await inst.status();
        const w = s.workers[0]!;
        return w.pid > 0 && w.pid !== victim && w.state === "ready" && w.work === "idle" ? s : null;
      });
      assert.equal(s.workers[0]!.last_exit, "killed: pipe wedged (probe unanswered)");
      assert.equal(s.workers[1]!.restarts, 0);
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => inst.client(["echo", `${i}`])));
      for (const [i, r] of rs.entries()) assert.equal(r.stdout, `${i}\n`, r.stderr);
      const after = await inst.status();
      assert.ok(after.workers[0]!.served > 0, "the replacement is routed to again");
    } finally {
      stopThief(thief);
      await thief.status;
    }
  });
});

function stopThief(thief: Deno.ChildProcess): void {
  try {
    thief.kill("SIGKILL");
  } catch { /* already gone */ }
}
