/**
 * `osps reload`: asks an instance's watchdog to reload (SIGHUP, pid-reuse
 * safe), waits until a reload that began after the ask has finished (the
 * watchdog publishes its progress in the segment header), and says what
 * changed. The watchdog re-reads its config file and replaces every worker
 * one by one, a new one serving before the old one leaves.
 * @module
 */
import { instancePaths, localSlots } from "../mod/cli/config.ts";
import { OspsError } from "../mod/errors.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { sleep } from "../mod/deadline.ts";
import { isLocked, readRecord } from "../mod/supervise/run_dir.ts";
import { SIG } from "../mod/sys/libc.ts";
import { isAlive, signalIfSame } from "../mod/sys/proc.ts";
import { NotRunning } from "./status.ts";

/** The reload ran, but its configuration did not load: nothing changed. */
export class ReloadFailed extends OspsError {}

/** Reloads the instance in `runDir`. Returns the exit code. */
export async function runReload(runDir: string, timeoutMs: number): Promise<number> {
  const paths = instancePaths(runDir);
  const rec = readRecord(paths);
  if (!rec || !isLocked(paths)) throw new NotRunning(`no osps instance is running in "${runDir}"`);
  using seg = Segment.open(rec.shm, rec.instance_id);
  const asked = seg.header("reloads_asked"), failed = seg.header("reloads_failed");
  const pids = () => workerPids(seg, rec.workers);
  const before = pids();
  if (!signalIfSame(rec.pid, rec.start_time, SIG.SIGHUP)) {
    throw new NotRunning(`watchdog pid ${rec.pid} is gone (stale record in "${runDir}")`);
  }
  const t0 = performance.now();
  // Our ask is number asked + 1 or later; a reload that began after it covers it.
  while (seg.header("reloads_covered") <= asked) {
    if (!isAlive(rec.pid, rec.start_time)) {
      throw new NotRunning(`watchdog pid ${rec.pid} ended during the reload`);
    }
    if (performance.now() - t0 > timeoutMs) {
      throw new OspsError(
        `the reload of "${runDir}" is still running after ${timeoutMs} ms (it goes on: osps status shows it)`,
      );
    }
    await sleep(25);
  }
  const ms = Math.round(performance.now() - t0);
  if (seg.header("reloads_failed") > failed) {
    throw new ReloadFailed(
      `the reload of "${runDir}" changed nothing: its configuration did not load (the watchdog's log says why); ` +
        "the instance keeps serving as before",
    );
  }
  const after = pids();
  console.log(
    `reloaded the osps instance in ${runDir}: ${after.length} worker${
      after.length === 1 ? "" : "s"
    } replaced ` +
      `in ${ms} ms (pids ${before.join(" ")} → ${after.join(" ")})`,
  );
  return 0;
}

/** Pids of the instance's local workers now (the spare slot aside). */
function workerPids(seg: Segment, workers: number): number[] {
  const out: number[] = [];
  for (let i = 1; i <= localSlots(workers) && i < seg.slotCount; i++) {
    const slot = seg.slot(i);
    if (slot.load("spare") === 0 && slot.load("pid") > 0) out.push(slot.load("pid"));
  }
  return out;
}
