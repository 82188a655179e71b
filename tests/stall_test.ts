/**
 * A supervisor that was itself stopped must not punish its children (issue 16,
 * item 10): `kill -STOP` of the watchdog (a paused VM, Ctrl-Z then `fg`), or of
 * the whole process group, for longer than the hang timeout, then `-CONT`:
 * no child is killed, no budget is spent, no pipe is called wedged. A child
 * that is itself stopped is still found hung.
 */
import assert from "node:assert/strict";
import { waitFor, withInstance } from "./harness.ts";

/** Every role's pid, restarts and last exit, for before/after comparisons. */
async function snapshot(inst: { status(): Promise<import("./harness.ts").StatusJson> }) {
  const s = await inst.status();
  return [s.dispatcher, ...s.workers].map((c) => ({
    pid: c.pid,
    restarts: c.restarts,
    last_exit: c.last_exit,
  }));
}

/** Pauses `pids` for `ms` with SIGSTOP, then SIGCONT (in the order given, so a group resumes at once). */
async function pause(pids: number[], ms: number): Promise<void> {
  for (const p of pids) Deno.kill(p, "SIGSTOP");
  await new Promise((r) => setTimeout(r, ms));
  for (const p of pids) Deno.kill(p, "SIGCONT");
}

Deno.test("the watchdog stopped for 5 s (kill -STOP, then -CONT): no child is killed, no budget spent", async () => {
  await withInstance(
    { workers: 2, flags: ["--hang-timeout-ms=1500", "--heartbeat-ms=200"] },
    async (inst) => {
      const before = await snapshot(inst);
      await pause([inst.pid], 5_000);
      // Several heartbeats after it resumed: time for any wrong verdict to be carried out.
      await new Promise((r) => setTimeout(r, 1_500));
      assert.deepEqual(await snapshot(inst), before, "every child kept its process and its budget");
      assert.doesNotMatch(inst.logs(), /hung, killing|wedged/);
      assert.match(inst.logs(), /the watchdog itself did not run for \d+ ms/);
      assert.equal((await inst.client(["echo", "still here"])).stdout.trim(), "still here");
    },
  );
});

Deno.test("the whole process group stopped for 5 s (a paused VM): nothing killed, no pipe called wedged", async () => {
  await withInstance({
    workers: 2,
    flags: ["--hang-timeout-ms=1500", "--heartbeat-ms=200", "--probe-ms=200"],
  }, async (inst) => {
    const s = await inst.status();
    const before = await snapshot(inst);
    // The watchdog last, so that its children are stopped before it, and first back.
    const group = [inst.pid, s.dispatcher.pid, ...s.workers.map((w) => w.pid)];
    for (const p of [...group].reverse()) Deno.kill(p, "SIGSTOP");
    await new Promise((r) => setTimeout(r, 5_000));
    for (const p of group) Deno.kill(p, "SIGCONT");
    await new Promise((r) => setTimeout(r, 1_500));
    assert.deepEqual(await snapshot(inst), before);
    assert.doesNotMatch(inst.logs(), /hung, killing|wedged/);
    assert.equal((await inst.client(["echo", "after the pause"])).stdout.trim(), "after the pause");
  });
});

Deno.test("a worker stopped together with its watchdog is still found hung once the watchdog runs again", async () => {
  await withInstance(
    { workers: 2, flags: ["--hang-timeout-ms=1500", "--heartbeat-ms=200"] },
    async (inst) => {
      const s = await inst.status();
      const victim = s.workers[0]!;
      Deno.kill(victim.pid, "SIGSTOP");
      await pause([inst.pid], 3_000);
      const after = await waitFor("the stopped worker replaced", async () => {
        const now = await inst.status();
        const w = now.workers.find((x) => x.id === victim.id)!;
        return w.pid !== victim.pid && w.state === "ready" && now;
      });
      const w = after.workers.find((x) => x.id === victim.id)!;
      assert.equal(w.last_exit, "killed: hung (no heartbeat)");
      const other = after.workers.find((x) => x.id !== victim.id)!;
      assert.equal(other.pid, s.workers[1]!.pid, "the other worker, which answered, was left alone");
      assert.equal(after.dispatcher.pid, s.dispatcher.pid);
    },
  );
});
