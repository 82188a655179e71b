/**
 * The HTTP API's settings (`--http-*` flags) as the watchdog passes them to
 * every worker, and the permissions a worker needs for them.
 * @module
 */
import type { FlagValues } from "../cli/cli.ts";
import { UsageError } from "../errors.ts";
import { netScope, type RolePermissions } from "../sys/spawn.ts";

/** Settings of the HTTP API in a worker. */
export interface HttpConfig {
  /** Port every worker serves HTTP on (0: off). */
  readonly port: number;
  /** Address of that port ("" = the instance's `--host`). */
  readonly host: string;
  /** Origins browsers may call the API from (comma-separated, `*` for any); "" = CORS off. */
  readonly corsOrigin: string;
  /** Request line and headers together, bytes (431 past it). */
  readonly maxHeaderBytes: number;
  /** Request body, bytes (413 past it). */
  readonly maxBodyBytes: number;
}

const num = (v: FlagValues, k: string) => Number(v[k] ?? 0);
const str = (v: FlagValues, k: string) => String(v[k] ?? "");

/** The HTTP settings from flag values. */
export function httpConfig(v: FlagValues): HttpConfig {
  const c = {
    port: num(v, "http-port"),
    host: str(v, "http-host"),
    corsOrigin: str(v, "http-cors-origin"),
    maxHeaderBytes: num(v, "http-max-header-bytes"),
    maxBodyBytes: num(v, "http-max-body-bytes"),
  };
  for (const o of c.corsOrigin.split(",").map((s) => s.trim()).filter((s) => s !== "" && s !== "*")) {
    if (!/^https?:\/\/[^/\s]+$/.test(o)) {
      throw new UsageError(`--http-cors-origin takes origins like http://host:port (or *), got "${o}"`);
    }
  }
  return c;
}

/** The HTTP flags' names and values, as passed on to workers and shown by `status`. */
export function httpFlags(c: HttpConfig): Record<string, string | number> {
  return {
    "http-port": c.port,
    "http-host": c.host,
    "http-cors-origin": c.corsOrigin,
    "http-max-header-bytes": c.maxHeaderBytes,
    "http-max-body-bytes": c.maxBodyBytes,
  };
}

/**
 * What every worker needs for HTTP: its flags, and permission to listen on
 * the HTTP port and to reach the dispatcher and the workers (a request type
 * that runs through a ticket is sent there as `osps client` sends it).
 */
export function httpForWorkers(
  c: HttpConfig,
  instance: { host: string; port: number; slots: number },
): { flags: FlagValues; permissions: RolePermissions } {
  if (c.port === 0) return { flags: {}, permissions: { listen: [] } };
  const ports = Array.from(
    { length: instance.slots + 1 },
    (_, i) => netScope(instance.host, instance.port + i),
  );
  return {
    flags: httpFlags(c),
    permissions: { listen: [netScope(c.host || instance.host, c.port)], connect: ports },
  };
}

/** The HTTP settings as `osps status` and the status page show them (the host resolved). */
export function httpShown(
  c: { readonly host: string; readonly http: HttpConfig },
): Record<string, string | number> {
  return { ...httpFlags(c.http), "http-host": c.http.host || c.host };
}
