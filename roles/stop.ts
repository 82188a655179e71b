/**
 * `osps stop`: asks an instance's watchdog to stop (SIGTERM, pid-reuse safe)
 * and waits until it has fully stopped (its lock released, its pid gone).
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { SIG } from "../mod/sys/libc.ts";
import { isAlive, signalIfSame } from "../mod/sys/proc.ts";
import { isLocked, readRecord } from "../mod/supervise/run_dir.ts";
import { NotRunning } from "./status.ts";
import { OspsError } from "../mod/errors.ts";

/** Stops the instance in `runDir`. Returns the exit code. */
export async function runStop(runDir: string, timeoutMs: number): Promise<number> {
  const paths = instancePaths(runDir);
  const rec = readRecord(paths);
  if (!rec || !isLocked(paths)) throw new NotRunning(`no osps instance is running in "${runDir}"`);
  if (!signalIfSame(rec.pid, rec.start_time, SIG.SIGTERM)) {
    throw new NotRunning(`watchdog pid ${rec.pid} is gone (stale record in "${runDir}")`);
  }
  const deadline = Date.now() + timeoutMs;
  while (isLocked(paths) || isAlive(rec.pid, rec.start_time)) {
    if (Date.now() > deadline) {
      throw new OspsError(`instance in "${runDir}" still running after ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return 0;
}
