/**
 * Whether an instance can serve now (`GET /readyz`, systemd's `STATUS=`): the
 * dispatcher runs and answers heartbeats, and at least one worker does too.
 * A process that has not answered for longer than two heartbeat intervals is
 * taken for unable to serve, before the watchdog's hang timeout kills it.
 * @module
 */
import type { ChildStatus, InstanceStatus } from "./instance_status.ts";

/** The verdict, with the reason people read. */
export interface Readiness {
  readonly ready: boolean;
  readonly reason: string;
}

/** Why `c` cannot serve now, or null when it can. */
function cannotServe(c: ChildStatus, name: string, heartbeatMs: number): string | null {
  if (c.pid === 0 || c.state !== "ready") return `${name} is not running (${c.state})`;
  const age = c.heartbeat_age_ms ?? Infinity;
  if (age > 2 * heartbeatMs) {
    return `${name} has not answered heartbeats for ${age} ms (limit ${2 * heartbeatMs} ms)`;
  }
  if (c.wedged) return `${name}'s pipes are wedged`;
  return null;
}

/**
 * Judges `s` (null: no instance mapped, as between a lost segment and its
 * rebuild) with heartbeats every `heartbeatMs`.
 * @example
 * ```ts
 * const r = readiness(status, 500);
 * if (!r.ready) console.log(`503 ${r.reason}`);
 * ```
 */
export function readiness(s: InstanceStatus | null, heartbeatMs: number): Readiness {
  if (!s) return { ready: false, reason: "no instance is running (starting or being rebuilt)" };
  if (s.watchdog.state === "stopping") return { ready: false, reason: "the instance is stopping" };
  if (s.watchdog.state === "starting") return { ready: false, reason: "the instance is starting" };
  // A joined host runs no dispatcher: it serves while one of its workers is attached to the remote one.
  const joined = s.watchdog.joined;
  const dispatcher = joined ? null : cannotServe(s.dispatcher, "the dispatcher", heartbeatMs);
  if (dispatcher) return { ready: false, reason: dispatcher };
  // A worker in the spare slot is on its way in or out (a replacement): the pool is the others.
  const pool = s.workers.filter((w) => !w.spare);
  const why = pool.map((w) =>
    cannotServe(w, `worker ${w.id}`, heartbeatMs) ??
      (joined && w.link !== "attached"
        ? `worker ${w.id} is not attached to the dispatcher (${w.link})`
        : null)
  );
  const serving = why.filter((w) => w === null).length;
  if (serving === 0) return { ready: false, reason: `no worker can serve: ${why.join("; ")}` };
  return {
    ready: true,
    reason: joined
      ? `ready: ${serving} of ${pool.length} workers attached to the dispatcher at ${joined}`
      : `ready: the dispatcher and ${serving} of ${pool.length} workers can serve`,
  };
}
