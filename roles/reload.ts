/**
 * `osps reload`: asks an instance's watchdog to reload (SIGHUP, pid-reuse
 * safe), waits until a reload that began after the ask has finished (the
 * watchdog publishes its progress in the segment header, and its result in
 * `watchdog.json`), and prints that result: what changed, or why the reload
 * failed. The watchdog re-reads its config file and replaces every worker one
 * by one, a new one serving before the old one is replaced; a reload that
 * fails keeps the old workers serving.
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { OspsError } from "../mod/errors.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { sleep } from "../mod/deadline.ts";
import { isLocked, readNotes, readRecord } from "../mod/supervise/run_dir.ts";
import { SIG } from "../mod/sys/libc.ts";
import { isAlive, signalIfSame } from "../mod/sys/proc.ts";
import { NotRunning, notRunning } from "./status.ts";

/** The reload ran and failed (its reason in the message): the instance serves as before. */
export class ReloadFailed extends OspsError {}

/** Reloads the instance in `runDir`. Returns the exit code. */
export async function runReload(runDir: string, timeoutMs: number): Promise<number> {
  const paths = instancePaths(runDir);
  const rec = readRecord(paths);
  if (!rec || !isLocked(paths)) throw notRunning(runDir);
  using seg = Segment.open(rec.shm, rec.instance_id);
  const asked = seg.header("reloads_asked");
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
  const last = readNotes(paths).last_reload;
  if (!last) throw new OspsError(`the reload of "${runDir}" finished, but its result is missing`);
  if (!last.ok) throw new ReloadFailed(`the reload of "${runDir}" failed: ${last.text}`);
  console.log(`reloaded the osps instance in ${runDir}: ${last.text}`);
  return 0;
}
