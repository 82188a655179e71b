/**
 * Signals sent to the whole process group (a terminal hang-up, `kill -HUP
 * -PGID`, a careless `kill -USR1 -PGID`) reach every child too. Only the
 * watchdog acts on SIGHUP (reload) and SIGUSR2 (reopen the log file): the
 * children ignore them, as nginx's workers do (issue 16, item 12). SIGUSR1
 * changes nothing anywhere: Deno would open an inspector on 127.0.0.1:9229,
 * through which any local user could run code in the process.
 */
import assert from "node:assert/strict";
import { type StatusJson, waitFor, withInstance } from "./harness.ts";

Deno.test("SIGHUP to the process group: the watchdog reloads, no child dies of it, no pipe is called wedged", async () => {
  // setsid: the watchdog leads a process group of its own (its children join it), as under a terminal.
  await withInstance({ workers: 2, wrap: ["setsid"] }, async (inst) => {
    const before = await inst.status();
    Deno.kill(-inst.pid, "SIGHUP");
    const after = await waitFor("the reload done", async () => {
      const s = await inst.status();
      return s.reloads.done === 1 && s.workers.length === 2 && s.workers.every((w) => w.state === "ready") &&
        s;
    });
    assert.equal(after.dispatcher.pid, before.dispatcher.pid, "the dispatcher ignored the hang-up");
    assert.equal(after.dispatcher.restarts, 0);
    assert.deepEqual(after.workers.map((w) => w.restarts), [0, 0], "workers were replaced, none restarted");
    assert.ok(
      after.workers.every((w) => w.last_exit === "-" || w.last_exit === "replaced (reload)"),
      JSON.stringify(after.workers),
    );
    await new Promise((r) => setTimeout(r, 1_500)); // a probe round after the reload
    assert.doesNotMatch(inst.logs(), /signal 1\b|wedged|hung, killing/);
    assert.equal((await inst.client(["echo", "after HUP"])).stdout.trim(), "after HUP");
  });
});

/** Every child still runs the process it ran `before`, and none was restarted. */
function assertSameProcesses(before: StatusJson, after: StatusJson, why: string): void {
  const processes = (s: StatusJson) => [s.dispatcher, ...s.workers].map((c) => [c.pid, c.restarts]);
  assert.deepEqual(processes(after), processes(before), why);
}

/** True when something accepts connections on 127.0.0.1:`port`. */
async function listening(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("SIGUSR2 to the process group: the watchdog reopens its log, every child keeps running", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-usr2-" });
  try {
    const logFile = `${dir}/osps.log`;
    await withInstance({ workers: 2, wrap: ["setsid"], flags: [`--log-file=${logFile}`] }, async (inst) => {
      const before = await inst.status();
      Deno.renameSync(logFile, `${logFile}.1`);
      Deno.kill(-inst.pid, "SIGUSR2");
      await waitFor("the log file reopened", () => {
        try {
          return Deno.readTextFileSync(logFile).includes("log file reopened");
        } catch {
          return false;
        }
      });
      await new Promise((r) => setTimeout(r, 1_000));
      assertSameProcesses(before, await inst.status(), "no child died of SIGUSR2");
      assert.equal((await inst.client(["echo", "after USR2"])).stdout.trim(), "after USR2");
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("SIGUSR1 to the process group changes nothing: no process dies, none opens an inspector", async () => {
  const inspectorPortFree = !(await listening(9229));
  await withInstance({ workers: 2, wrap: ["setsid"] }, async (inst) => {
    const before = await inst.status();
    await new Promise((r) => setTimeout(r, 700)); // past the runtime's start-up grace for its SIGUSR1 handler
    Deno.kill(-inst.pid, "SIGUSR1");
    await new Promise((r) => setTimeout(r, 1_500));
    assertSameProcesses(before, await inst.status(), "no child died of SIGUSR1");
    assert.doesNotMatch(inst.logs(), /Debugger listening|inspect/);
    if (inspectorPortFree) assert.equal(await listening(9229), false, "nothing listens on 127.0.0.1:9229");
    assert.equal((await inst.client(["echo", "after USR1"])).stdout.trim(), "after USR1");
  });
});
