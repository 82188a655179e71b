/**
 * File descriptors are a budget. A role that runs out of them cannot accept,
 * cannot open a pipe, and Deno's runtime itself may abort when it cannot make
 * a thread or a timer (`errno 24` in a panic). So every role raises its soft
 * `RLIMIT_NOFILE` to the hard limit at start, keeps a reserve for its own
 * files, pipes and the runtime, and holds `--max-conns` under what is left:
 * connections beyond it are refused with a status line while descriptors for
 * that are still free.
 * @module
 */
import { fileLimit, raiseFileLimit } from "./libc.ts";
import { UsageError } from "../errors.ts";

/** Descriptors kept for the runtime (about 30 when idle), logs, the control channel, libc and the listener. */
export const BASE_RESERVE = 64;
/** Refused connections kept open at once to deliver their status line (see `LineConn.refuse`). */
export const MAX_LINGERING = 64;

/** The reserve of a role that holds `pipes` FIFO ends and `links` link connections besides clients. */
export function reserveFor(pipes: number, links = 0): number {
  return BASE_RESERVE + MAX_LINGERING + pipes + links;
}

/** What {@link fitConnections} decided. */
export interface FdPlan {
  /** The soft limit now in force. */
  readonly limit: number;
  /** `--max-conns` to use. */
  readonly maxConns: number;
  /** Set when the default had to be lowered (say so in the log). */
  readonly capped?: string;
}

/**
 * Raises the soft limit to the hard one and fits `maxConns` under it. A value
 * the user gave that cannot fit is refused (`UsageError`, with what would
 * fit); a default is lowered, and the plan says so.
 */
export function fitConnections(maxConns: number, reserve: number, given: boolean): FdPlan {
  let limit: number;
  try {
    limit = raiseFileLimit().soft;
  } catch {
    limit = fileLimit().soft; // not allowed to raise (seccomp, say): live with the soft limit
  }
  const fits = Math.max(0, limit - reserve);
  if (maxConns <= fits) return { limit, maxConns };
  if (given) {
    throw new UsageError(
      `--max-conns ${maxConns} cannot fit under the open-file limit ${limit} ` +
        `(this role keeps ${reserve} descriptors for itself): use --max-conns ${fits} or less, ` +
        `or raise the limit (ulimit -n)`,
    );
  }
  if (fits < 8) {
    throw new UsageError(
      `the open-file limit ${limit} leaves no room for connections (this role keeps ${reserve}); raise it (ulimit -n)`,
    );
  }
  return {
    limit,
    maxConns: fits,
    capped: `--max-conns lowered from ${maxConns} to ${fits} to fit the open-file limit ${limit}`,
  };
}
