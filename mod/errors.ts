/**
 * Typed errors for osps. Everything below `main.ts` throws one of these; only
 * `main.ts` turns them into an exit code (see {@link exitCodeOf}).
 *
 * Exit codes follow s6/daemontools: 100 is a permanent failure (do not
 * restart), 111 a temporary one, 2 a usage error.
 * @module
 */

/** Exit code for bad command-line usage or configuration. */
export const EXIT_USAGE = 2;
/** Exit code for a child that cannot boot (port taken, bad config): the watchdog does not restart it in a loop. */
export const EXIT_CANNOT_BOOT = 100;
/** Exit code for a temporary failure worth retrying. */
export const EXIT_TEMPORARY = 111;

/** Base class of every osps error. */
export class OspsError extends Error {
  /** Exit code `main.ts` uses when this error reaches it. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, bad configuration, bad arguments: the user's to fix. */
export class UsageError extends OspsError {
  override readonly exitCode = EXIT_USAGE;
}

/** A role could not start (address in use, run dir refused, peer instance alive). */
export class CannotBootError extends OspsError {
  override readonly exitCode = EXIT_CANNOT_BOOT;
}

/** A libc call failed; carries the call name and errno. */
export class SysError extends OspsError {
  /** The libc function that failed. */
  readonly call: string;
  /** The errno it set. */
  readonly errno: number;
  constructor(call: string, errno: number, detail = "") {
    super(`${call}${detail ? ` ${detail}` : ""} failed: ${errnoName(errno)} (errno ${errno})`);
    this.call = call;
    this.errno = errno;
  }
}

/** A peer broke the wire protocol, or answered with an error status. */
export class ProtocolError extends OspsError {
  /** Status code received or sent, when there is one. */
  readonly status: number;
  constructor(message: string, status = 0, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
  }
}

/** The request could not be served (worker lost, busy, refused); the client may retry. */
export class ServiceError extends ProtocolError {
  override readonly exitCode = 3;
}

/** Returns the process exit code for any thrown value. */
export function exitCodeOf(err: unknown): number {
  return err instanceof OspsError ? err.exitCode : 1;
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  13: "EACCES",
  17: "EEXIST",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  27: "EFBIG",
  32: "EPIPE",
  40: "ELOOP",
};

/** Symbolic name of an errno value (Linux numbering). */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}
