/**
 * The upgrade path (issue 16, item 13): a new binary renamed over the old one
 * while an instance runs (what `install`, package managers and `deno upgrade`
 * do). The running watchdog's `Deno.execPath()` then reads "<path> (deleted)";
 * every later spawn must run what is installed at the path: a child that
 * restarts keeps working, and `osps reload` moves every worker to the new code.
 */
import assert from "node:assert/strict";
import { assertNothingLeft, compiledStandIn, freePorts, osps, RUN_FLAGS, waitFor } from "./harness.ts";
import { processTable } from "../mod/sys/proc.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;

/** What `/proc/<pid>/exe` names (Deno asks for --allow-all to read /proc paths: `readlink` does it). */
async function exeOf(pid: number): Promise<string> {
  const o = await new Deno.Command("readlink", { args: [`/proc/${pid}/exe`] }).output();
  return new TextDecoder().decode(o.stdout).trim();
}

/** Replaces `path` by a copy of `from`, the way an installer does: written beside it, then renamed over it. */
function renameOver(from: string, path: string): void {
  Deno.copyFileSync(from, `${path}.new`);
  Deno.chmodSync(`${path}.new`, 0o755);
  Deno.renameSync(`${path}.new`, path);
}

/** Starts a watchdog as `program args…` and waits for its ready line. */
async function start(program: string, args: string[]) {
  const child = new Deno.Command(program, { args, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  let logs = "";
  const logsDone = (async () => {
    for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) logs += c;
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const r = await reader.read();
    if (r.done) throw new Error(`no ready line:\n${logs}`);
    out += r.value;
  }
  void (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  assert.match(out, /^ready /);
  return {
    child,
    logs: () => logs,
    /** Kills what is left (a failed test), waits for its logs, removes `dir`. */
    async cleanUp(dir: string) {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await logsDone;
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

Deno.test("deno run: the Deno binary renamed over while running; restarts and osps reload still spawn", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-upgrade-" });
  const deno = `${dir}/bin/deno`;
  Deno.mkdirSync(`${dir}/bin`);
  renameOver(Deno.execPath(), deno);
  const port = freePorts(4);
  const runDir = `${dir}/run`;
  const flags = RUN_FLAGS.map((f) => f.startsWith("--allow-run=") ? `--allow-run=${deno}` : f).slice(1);
  const w = await start(deno, [
    "run",
    ...flags,
    MAIN,
    "watchdog",
    `--port=${port}`,
    "--workers=2",
    `--run-dir=${runDir}`,
  ]);
  try {
    const status = async () => JSON.parse((await osps(["status", `--run-dir=${runDir}`, "--json"])).stdout);
    const before = await status();
    renameOver(Deno.execPath(), deno); // the upgrade
    assert.match(await exeOf(w.child.pid), / \(deleted\)$/);
    // A child that dies after the upgrade is restarted from the path: the new binary.
    Deno.kill(before.workers[0].pid, "SIGKILL");
    const after = await waitFor("worker 1 restarted", async () => {
      const s = await status();
      const w1 = s.workers.find((x: { id: number }) => x.id === 1);
      return w1.pid !== before.workers[0].pid && w1.state === "ready" && s;
    });
    const exe = await exeOf(after.workers.find((x: { id: number }) => x.id === 1).pid);
    assert.equal(exe, deno, "the restarted worker runs the binary now at the path");
    const reload = await osps(["reload", `--run-dir=${runDir}`]);
    assert.equal(reload.code, 0, reload.stderr);
    const reloaded = await status();
    for (const x of reloaded.workers) assert.equal(await exeOf(x.pid), deno);
    assert.equal((await osps(["client", `--port=${port}`, "echo", "upgraded"])).stdout.trim(), "upgraded");
    assert.doesNotMatch(w.logs(), /\(deleted\)/);
    const stop = await osps(["stop", `--run-dir=${runDir}`]);
    assert.equal(stop.code, 0, stop.stderr);
    assert.equal((await w.child.status).code, 0);
    await assertNothingLeft({ runDir, pid: w.child.pid });
  } finally {
    await w.cleanUp(dir);
  }
});

/** A stand-in for the compiled binary, marked with `version` in its children's argv. */
function standIn(version: number): string {
  return compiledStandIn([`--v8-flags=--stack-size=${980 + version}`]);
}

Deno.test("compiled (a stand-in): a new binary renamed over the old one runs after osps reload and in every restart", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-upgrade-bin-" });
  const bin = `${dir}/osps`;
  Deno.writeTextFileSync(`${dir}/v1`, standIn(1));
  Deno.writeTextFileSync(`${dir}/v2`, standIn(2));
  renameOver(`${dir}/v1`, bin);
  const port = freePorts(4);
  const runDir = `${dir}/run`;
  const w = await start(bin, ["watchdog", `--port=${port}`, "--workers=2", `--run-dir=${runDir}`]);
  const version = (pid: number) => processTable().get(pid)?.cmdline.find((a) => a.startsWith("--v8-flags="));
  try {
    const run = (args: string[]) => new Deno.Command(bin, { args }).output();
    const status = async () =>
      JSON.parse(new TextDecoder().decode((await run(["status", `--run-dir=${runDir}`, "--json"])).stdout));
    const before = await status();
    assert.equal(version(before.workers[0].pid), "--v8-flags=--stack-size=981");
    renameOver(`${dir}/v2`, bin); // the upgrade
    const reload = await run(["reload", `--run-dir=${runDir}`]);
    assert.equal(reload.code, 0, new TextDecoder().decode(reload.stderr));
    const after = await status();
    for (const x of after.workers) {
      assert.equal(version(x.pid), "--v8-flags=--stack-size=982", `worker ${x.id}`);
    }
    Deno.kill(after.dispatcher.pid, "SIGKILL"); // a restart after the upgrade runs the new binary too
    const back = await waitFor("the dispatcher restarted", async () => {
      const s = await status();
      return s.dispatcher.pid !== after.dispatcher.pid && s.dispatcher.state === "ready" && s;
    });
    assert.equal(version(back.dispatcher.pid), "--v8-flags=--stack-size=982");
    const stop = await run(["stop", `--run-dir=${runDir}`]);
    assert.equal(stop.code, 0);
    assert.equal((await w.child.status).code, 0);
  } finally {
    await w.cleanUp(dir);
  }
});
