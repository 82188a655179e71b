/** The run dir: 0700, ours, not a link; one live watchdog per run dir; stale leftovers removed. */
import assert from "node:assert/strict";
import { instancePaths } from "../mod/cli/config.ts";
import { ensureRunDir, InstanceLock, isLocked, writeRecord } from "../mod/supervise/run_dir.ts";
import { ensureFifo } from "../mod/ipc/fifo.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { CannotBootError } from "../mod/errors.ts";
import { exists } from "./harness.ts";

Deno.test("ensureRunDir creates 0700, tightens a loose mode, refuses a symlink", async () => {
  const base = Deno.makeTempDirSync({ prefix: "osps-rundir-" });
  try {
    ensureRunDir(`${base}/run`);
    assert.equal((Deno.statSync(`${base}/run`).mode ?? 0) & 0o777, 0o700);
    Deno.chmodSync(`${base}/run`, 0o755);
    ensureRunDir(`${base}/run`);
    assert.equal((Deno.statSync(`${base}/run`).mode ?? 0) & 0o777, 0o700);
    // Deno.symlinkSync needs unscoped read/write permissions; ln does not.
    assert.equal(
      (await new Deno.Command("ln", { args: ["-s", `${base}/run`, `${base}/link`] }).output()).code,
      0,
    );
    assert.throws(() => ensureRunDir(`${base}/link`), /is a symbolic link/);
    Deno.writeTextFileSync(`${base}/file`, "");
    assert.throws(() => ensureRunDir(`${base}/file`), /not a directory/);
  } finally {
    Deno.removeSync(base, { recursive: true });
  }
});

Deno.test("a second lock on a live run dir is refused; release frees it", () => {
  const base = Deno.makeTempDirSync({ prefix: "osps-rundir-" });
  const paths = instancePaths(`${base}/run`);
  try {
    const lock = InstanceLock.acquire(paths);
    assert.equal(isLocked(paths), true);
    assert.throws(() => InstanceLock.acquire(paths), CannotBootError);
    lock.release();
    assert.equal(isLocked(paths), false);
    InstanceLock.acquire(paths).release();
  } finally {
    Deno.removeSync(base, { recursive: true });
  }
});

Deno.test("cleanStale removes the crashed instance's shm and FIFOs, and nothing else", () => {
  const base = Deno.makeTempDirSync({ prefix: "osps-rundir-" });
  const paths = instancePaths(`${base}/run`);
  try {
    ensureRunDir(paths.runDir);
    const seg = Segment.create(paths.shm, 2, 9);
    seg.close();
    ensureFifo(paths.dwtube(1));
    ensureFifo(paths.wdtube(1));
    ensureFifo(`${base}/not-ours`); // outside the run dir: must survive even if listed
    Deno.writeTextFileSync(`${paths.runDir}/notes.txt`, "user file");
    writeRecord(paths, {
      pid: 1,
      start_time: 1,
      instance_id: 9,
      shm: paths.shm,
      fifos: [paths.dwtube(1), paths.wdtube(1), `${base}/not-ours`],
      host: "127.0.0.1",
      port: 1,
      workers: 1,
      created: "",
    });
    const lock = InstanceLock.acquire(paths);
    const removed = lock.cleanStale();
    lock.release();
    assert.deepEqual(removed.sort(), [`shm ${paths.shm}`, paths.dwtube(1), paths.wdtube(1)].sort());
    assert.equal(Segment.exists(paths.shm), false);
    assert.equal(exists(`${base}/not-ours`), true);
    assert.equal(exists(`${paths.runDir}/notes.txt`), true);
    assert.equal(exists(paths.record), false);
  } finally {
    Segment.unlink(paths.shm);
    Deno.removeSync(base, { recursive: true });
  }
});
