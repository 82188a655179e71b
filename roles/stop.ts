/**
 * `osps stop`: asks an instance's watchdog to stop (SIGTERM, pid-reuse safe),
 * waits until it has fully stopped (its lock released, its pid gone), and
 * says what it stopped.
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { SIG } from "../mod/sys/libc.ts";
import { isAlive, signalIfSame } from "../mod/sys/proc.ts";
import { isLocked, readRecord } from "../mod/supervise/run_dir.ts";
import { NotRunning, notRunning } from "./status.ts";
import { OspsError } from "../mod/errors.ts";
import { sleep } from "../mod/deadline.ts";

/** Stops the instance in `runDir`. Returns the exit code. */
export async function runStop(runDir: string, timeoutMs: number): Promise<number> {
  const paths = instancePaths(runDir);
  const rec = readRecord(paths);
  if (!rec || !isLocked(paths)) throw notRunning(runDir);
  if (!signalIfSame(rec.pid, rec.start_time, SIG.SIGTERM)) {
    throw new NotRunning(`watchdog pid ${rec.pid} is gone (stale record in "${runDir}")`);
  }
  const t0 = performance.now();
  while (isLocked(paths) || isAlive(rec.pid, rec.start_time)) {
    if (performance.now() - t0 > timeoutMs) {
      throw new OspsError(
        `instance in "${runDir}" (watchdog pid ${rec.pid}) still running after ${timeoutMs} ms`,
      );
    }
    await sleep(25);
  }
  const what = rec.join
    ? `workers joined to the dispatcher at ${rec.join}`
    : `dispatcher on ${rec.host}:${rec.port}`;
  console.log(
    `stopped the osps instance in ${runDir}: watchdog pid ${rec.pid}, ${what}, ` +
      `${rec.workers} worker${rec.workers === 1 ? "" : "s"} (${Math.round(performance.now() - t0)} ms)`,
  );
  return 0;
}
