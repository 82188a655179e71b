/**
 * `--log-file PATH`: every role's log lines in one file, reopened on SIGUSR2
 * so logrotate can rename it and signal instead of `copytruncate` (which loses
 * the lines written between its copy and its truncate).
 *
 * The watchdog is the only writer. Children keep writing to their stderr,
 * which is then a pipe to the watchdog that relays their lines, whole, into
 * the same bounded queue: children need no file permission, and a reopen
 * takes effect for every role at once.
 * @module
 */
import { OspsError } from "../errors.ts";
import { flushLogs, logger, logTo, relayLogLines } from "../log.ts";
import type { Spawner } from "../supervise/child_spec.ts";

/** The log file cannot be opened. */
export class LogFileError extends OspsError {}

function openAppend(path: string): Deno.FsFile {
  try {
    return Deno.openSync(path, { append: true, create: true, mode: 0o640 });
  } catch (err) {
    throw new LogFileError(`cannot open log file "${path}": ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The open log file.
 * @example
 * ```ts
 * await using log = await LogFile.open("/var/log/osps/osps.log");
 * Deno.addSignalListener("SIGUSR2", () => void log.reopen());
 * ```
 */
export class LogFile implements AsyncDisposable {
  readonly path: string;
  #file: Deno.FsFile;

  private constructor(path: string, file: Deno.FsFile) {
    this.path = path;
    this.#file = file;
  }

  /** Opens `path` for appending (created 0640) and sends every log line there. */
  static async open(path: string): Promise<LogFile> {
    const file = openAppend(path);
    await logTo(file);
    return new LogFile(path, file);
  }

  /**
   * Opens the path again (after logrotate renamed the old file) and switches
   * to it; the old file is closed once its last write is done. A failure
   * keeps the old file and is logged there.
   */
  async reopen(): Promise<void> {
    let next: Deno.FsFile;
    try {
      next = openAppend(this.path);
    } catch (err) {
      logger().error("log reopen failed, still writing to the old file: {err}", { err: String(err) });
      return;
    }
    const old = this.#file;
    this.#file = next;
    await logTo(next);
    old.close();
    logger().info("log file reopened: {path}", { path: this.path });
  }

  /** Writes what is queued to the file, sends later lines back to stderr, and closes the file. */
  async [Symbol.asyncDispose](): Promise<void> {
    await flushLogs();
    await logTo(Deno.stderr);
    this.#file.close();
  }
}

/** A child's line longer than this is cut into pieces rather than held. */
const MAX_PENDING = 64 * 1024;

/** Relays a child's stderr into the log, whole lines at a time (a partial last line is completed with LF). */
async function relay(stream: ReadableStream<Uint8Array>): Promise<void> {
  let pending = "";
  try {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const all = pending + text;
      const cut = all.lastIndexOf("\n");
      if (cut >= 0) relayLogLines(all.slice(0, cut + 1));
      pending = all.slice(cut + 1);
      if (pending.length > MAX_PENDING) {
        relayLogLines(pending + "\n");
        pending = "";
      }
    }
  } catch { /* the child is gone */ }
  if (pending) relayLogLines(pending + "\n");
}

/** Spawns children with stderr piped to the watchdog, which relays their lines to the log file. */
export const relayingSpawner: Spawner = (program, args, env) => {
  const child = new Deno.Command(program, { args, env, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  void relay(child.stderr);
  return child;
};
