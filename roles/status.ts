/**
 * `osps status`: what each process of an instance is doing, read straight from
 * the shared-memory table (so it works while the dispatcher is down); with
 * `--watch`, the table redrawn in place every second until Ctrl-C.
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { OspsError } from "../mod/errors.ts";
import { isLocked, readNotes, readRecord } from "../mod/supervise/run_dir.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { type InstanceStatus, segmentStatus, statusTable } from "../mod/ops/instance_status.ts";
import { sleep } from "../mod/deadline.ts";
import { systemClock } from "../mod/sys/clock.ts";

/** No live instance at that run dir. */
export class NotRunning extends OspsError {}

/**
 * The error for a run dir with no live instance, saying how to name another
 * (the default run dir depends on the port and on `$XDG_RUNTIME_DIR`, so an
 * instance started by systemd or by another user's shell is elsewhere).
 */
export function notRunning(runDir: string, detail = ""): NotRunning {
  return new NotRunning(
    `no osps instance is running in "${runDir}"${detail}; for another instance pass --run-dir DIR (the ` +
      `watchdog's ready line and log say which; under systemd: /run/osps/instance) or --port PORT`,
  );
}

/** Reads the status of the instance in `runDir`. */
export function readStatus(runDir: string): InstanceStatus {
  const paths = instancePaths(runDir);
  const rec = readRecord(paths);
  if (!rec || !isLocked(paths)) throw notRunning(runDir);
  using seg = Segment.open(rec.shm, rec.instance_id);
  return segmentStatus(seg, {
    runDir,
    shm: rec.shm,
    limits: rec.limits,
    host: rec.host,
    workers: rec.workers,
    linkPort: rec.link_port,
    join: rec.join,
    chat: rec.chat,
    notes: () => readNotes(paths),
    http: rec.http,
  }, systemClock.now());
}

/** Terminal control sequences: cursor home, clear to end of line and of screen, hide and show the cursor. */
const CSI = {
  home: "\x1b[H",
  clearLine: "\x1b[K",
  clearBelow: "\x1b[J",
  hide: "\x1b[?25l",
  show: "\x1b[?25h",
};

/** One frame of `--watch`: a title line, then the table or why there is none. */
export function watchFrame(runDir: string, now = new Date()): string {
  const title = `osps status --watch · every 1 s · Ctrl-C to quit · ${now.toTimeString().slice(0, 8)}`;
  let body: string;
  try {
    body = statusTable(readStatus(runDir));
  } catch (err) {
    if (!(err instanceof OspsError)) throw err;
    body = `${err.message} (still watching)`;
  }
  return [title, "", ...body.split("\n")].map((l) => l + CSI.clearLine).join("\n") + "\n" + CSI.clearBelow;
}

/**
 * `osps status --watch`: redraws the table in place every second (cursor home,
 * each line overwritten, the rest cleared: no flicker, no scrolling) until
 * Ctrl-C or `signal` aborts. An instance that stops or is not there yet is
 * shown as such, and watched for.
 */
export async function watchStatus(runDir: string, signal?: AbortSignal): Promise<number> {
  const out = new TextEncoder();
  const stop = new AbortController();
  const onInt = () => stop.abort();
  Deno.addSignalListener("SIGINT", onInt);
  const done = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  try {
    await Deno.stdout.write(out.encode("\x1b[2J" + CSI.hide));
    while (!done.aborted) {
      await Deno.stdout.write(out.encode(CSI.home + watchFrame(runDir)));
      await sleep(1_000, done).catch(() => {});
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onInt);
    await Deno.stdout.write(out.encode(CSI.show + "\n"));
  }
  return 0;
}
