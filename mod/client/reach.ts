/**
 * What this process may reach on the network, and the error for a worker it
 * may not (see ./scope.ts for how a client command is scoped).
 * @module
 */
import { ServiceError } from "../errors.ts";
import { Status } from "../net/protocol.ts";
import { netScope } from "../sys/spawn.ts";

/** The dispatcher sent the client to a worker on a host outside its network permissions. Nothing ran. */
export class OutOfScope extends ServiceError {
  constructor(readonly workerHost: string, port: number) {
    super(
      `the dispatcher sent this client to a worker at ${workerHost}:${port}, a host it was not scoped to ` +
        `(a host that joined after it started, or a dispatcher given by a loopback address): run the ` +
        `command again, with --host the dispatcher's network address`,
      Status.WORKER_LOST,
    );
  }
}

/** True when this process may connect to `host` (at `port`, or any port). */
export function mayReach(host: string, port?: number): boolean {
  const target = port === undefined ? bracket(host) : netScope(host, port);
  return Deno.permissions.querySync({ name: "net", host: target }).state === "granted";
}

/** A host for `--allow-net` (an IPv6 address in brackets). */
export function bracket(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
