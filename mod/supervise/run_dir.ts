/**
 * The run dir of an instance: created 0700, owned by us, never a symlink; an
 * flock(2)ed lock file proves a live watchdog (the kernel drops the lock when
 * it dies, even by SIGKILL); an instance record says which shm segment and
 * FIFOs this instance made, so a later watchdog removes exactly those after a
 * crash and nothing that is someone else's.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { CannotBootError } from "../errors.ts";
import type { InstancePaths } from "../cli/config.ts";
import { procStat } from "../sys/proc.ts";
import { Segment } from "../ipc/shm.ts";

/** What instance.json holds. */
export interface InstanceRecord {
  readonly pid: number;
  readonly start_time: number;
  readonly instance_id: number;
  readonly shm: string;
  readonly fifos: readonly string[];
  readonly host: string;
  readonly port: number;
  readonly workers: number;
  readonly created: string;
  /** Limit flags the roles enforce (shown by `osps status`). */
  readonly limits?: Readonly<Record<string, number | string>>;
  /** The dispatcher's port for remote workers, when it has one. */
  readonly link_port?: number;
  /** On a joined host: the dispatcher link address its workers attach to. */
  readonly join?: string;
  /** Chat settings in force (no secrets), when chat is on. */
  readonly chat?: Readonly<Record<string, string | number | boolean>>;
  /** HTTP API settings in force, when it is on. */
  readonly http?: Readonly<Record<string, string | number>>;
}

/** Checks (or creates) the run dir: a real directory, ours, mode 0700. */
export function ensureRunDir(dir: string): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(dir);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw new CannotBootError(`cannot inspect run dir "${dir}"`, { cause: err });
    }
    try {
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (err2) {
      throw new CannotBootError(`cannot create run dir "${dir}"`, { cause: err2 });
    }
    Deno.chmodSync(dir, 0o700);
    return;
  }
  if (st.isSymlink) throw new CannotBootError(`run dir "${dir}" is a symbolic link; refusing to use it`);
  if (!st.isDirectory) throw new CannotBootError(`run dir "${dir}" exists and is not a directory`);
  if (st.uid !== libc.getuid()) {
    throw new CannotBootError(
      `run dir "${dir}" is owned by uid ${st.uid}, not by this user (uid ${libc.getuid()})`,
    );
  }
  if (((st.mode ?? 0) & 0o077) !== 0) Deno.chmodSync(dir, 0o700);
}

/** Reads instance.json; null when absent or unreadable. */
export function readRecord(paths: InstancePaths): InstanceRecord | null {
  try {
    return JSON.parse(Deno.readTextFileSync(paths.record)) as InstanceRecord;
  } catch {
    return null;
  }
}

/** Writes instance.json atomically so readers never see half a file. */
export function writeRecord(paths: InstancePaths, record: InstanceRecord): void {
  writeAtomically(paths.record, record);
}

/** Writes `value` as JSON to `path`: to `.new` first, then renamed (runit's way: never half a file). */
function writeAtomically(path: string, value: unknown): void {
  const tmp = `${path}.new`;
  Deno.writeTextFileSync(tmp, JSON.stringify(value, null, 2) + "\n", { mode: 0o600 });
  Deno.renameSync(tmp, path);
}

/** What `watchdog.json` holds: what the watchdog reports that shared memory has no room for. */
export interface NotesRecord {
  /** The last reload's result, and the `reloads_asked` count it covered. */
  readonly last_reload?: { readonly ok: boolean; readonly text: string; readonly asked: number };
  /** `--max-worker-rss-mb` refused (below what a fresh worker holds), and why. */
  readonly memory_limit?: { readonly refused_mb: number; readonly reason: string } | null;
}

/** The watchdog's notes of one incarnation (`watchdog.json` in the run dir); removed when disposed. */
export class Notes implements Disposable {
  readonly #path: string;
  #notes: NotesRecord = {};

  constructor(paths: InstancePaths) {
    this.#path = paths.notes;
  }

  /** Merges `change` into the notes and writes them. */
  update(change: NotesRecord): void {
    this.#notes = { ...this.#notes, ...change };
    writeAtomically(this.#path, this.#notes);
  }

  /** The notes as last written. */
  get current(): NotesRecord {
    return this.#notes;
  }

  /** Removes the file. */
  [Symbol.dispose](): void {
    try {
      Deno.removeSync(this.#path);
    } catch { /* never written */ }
  }
}

/** Reads `watchdog.json`; empty when absent or unreadable. */
export function readNotes(paths: InstancePaths): NotesRecord {
  try {
    return JSON.parse(Deno.readTextFileSync(paths.notes)) as NotesRecord;
  } catch {
    return {};
  }
}

/** True when a watchdog holds the instance's lock right now. */
export function isLocked(paths: InstancePaths): boolean {
  const fd = libc.tryOpen(paths.lock, libc.O.RDONLY | libc.O.NOFOLLOW);
  if (fd < 0) return false;
  try {
    return !libc.tryLockExclusive(fd);
  } finally {
    libc.close(fd);
  }
}

/**
 * The live instance lock; released by {@link InstanceLock.release} (or
 * disposing it, which also removes the run dir if it is empty) or by the
 * kernel at exit.
 */
export class InstanceLock implements Disposable {
  readonly #fd: number;
  readonly paths: InstancePaths;
  /** Record of a crashed earlier instance found when taking the lock, if any. */
  readonly stale: InstanceRecord | null;

  private constructor(fd: number, paths: InstancePaths, stale: InstanceRecord | null) {
    this.#fd = fd;
    this.paths = paths;
    this.stale = stale;
  }

  /** Creates the run dir if needed and takes the lock; refuses a live instance. */
  static acquire(paths: InstancePaths): InstanceLock {
    ensureRunDir(paths.runDir);
    const fd = libc.open(paths.lock, libc.O.RDWR | libc.O.CREAT | libc.O.NOFOLLOW, 0o600);
    if (!libc.tryLockExclusive(fd)) {
      libc.close(fd);
      const rec = readRecord(paths);
      throw new CannotBootError(
        `an osps instance is already running in "${paths.runDir}"${
          rec ? ` (watchdog pid ${rec.pid}, port ${rec.port})` : ""
        }`,
      );
    }
    return new InstanceLock(fd, paths, readRecord(paths));
  }

  /**
   * Removes what a crashed instance left: its shm segment and its FIFOs, as
   * named in its record and only if they are this run dir's. Returns what was removed.
   */
  cleanStale(): string[] {
    const removed: string[] = [];
    const rec = this.stale;
    if (rec) {
      if (rec.shm === this.paths.shm && Segment.unlink(rec.shm)) removed.push(`shm ${rec.shm}`);
      for (const f of rec.fifos) {
        if (f.startsWith(`${this.paths.runDir}/`) && isOwnFifo(f) && libc.unlink(f)) removed.push(f);
      }
      libc.unlink(this.paths.record);
    } else if (Segment.unlink(this.paths.shm)) {
      // No record (crash before it was written), but the name is derived from this run dir.
      removed.push(`shm ${this.paths.shm}`);
    }
    return removed;
  }

  /** Releases the lock and removes the lock file. */
  release(): void {
    libc.unlink(this.paths.lock);
    libc.close(this.#fd);
  }

  /** Releases the lock, then removes the run dir unless something else is in it (the user's: left alone). */
  [Symbol.dispose](): void {
    this.release();
    try {
      Deno.removeSync(this.paths.runDir);
    } catch { /* not empty */ }
  }
}

function isOwnFifo(path: string): boolean {
  try {
    const st = Deno.lstatSync(path);
    return st.isFifo === true && st.uid === libc.getuid();
  } catch {
    return false;
  }
}

/** This process's start time (for the record, so `osps stop` never signals a recycled pid). */
export function selfStartTime(): number {
  return procStat(Deno.pid)?.startTime ?? 0;
}
