/**
 * Re-running this very program as another role, in both modes:
 * - compiled (`Deno.build.standalone`): `Deno.execPath() <role> …`; the
 *   permissions baked in at compile time apply;
 * - `deno run`: `Deno.execPath() run <scoped permission flags> --config
 *   <deno.json> <main module> <role> …`, with only what that role needs;
 *   from a bundle (`deno task bundle`), `--no-config <bundle>/main.js`.
 *
 * Upgrades. Every spawn runs what is installed at that path *now*. An upgrade
 * that renames a new binary over the old one (what package managers and
 * `install` do) leaves the running watchdog's `Deno.execPath()` reading
 * "<path> (deleted)": the path is taken without that suffix, i.e. the new
 * binary. Under `deno run` the same holds for the source: a child re-reads
 * `main.ts` when it starts. So after an upgrade, `osps reload` moves every
 * worker to the new code, and any child that restarts runs it too.
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };

/** What a spawned role needs from Deno's permission system. */
export interface RolePermissions {
  /** `host:port` pairs it listens on. */
  readonly listen: readonly string[];
  /** `host:port` pairs it connects to (a PostgreSQL server, for chat). */
  readonly connect?: readonly string[];
  /** Paths it reads and writes (the chat's SQLite data dir). */
  readonly files?: readonly string[];
  /** Environment variables it reads (a database client's). */
  readonly env?: readonly string[];
  /**
   * V8 flags it runs with under `deno run`. A compiled binary ignores them
   * (and `DENO_V8_FLAGS`): it runs with the flags baked in by `deno compile`.
   */
  readonly v8Flags?: readonly string[];
  /** FFI (libc: shm, FIFOs); every role but the client side needs it (default true). */
  readonly ffi?: boolean;
}

/**
 * Scoped permission flags for a child role under `deno run`. FFI must be
 * unscoped: Deno checks pointer views (`UnsafePointerView`, needed to map shm)
 * against "all FFI", not a library path.
 */
export function permissionFlags(p: RolePermissions): string[] {
  const files = p.files ?? [], net = [...p.listen, ...(p.connect ?? [])];
  return [
    "--no-prompt",
    ...(net.length ? [`--allow-net=${net.join(",")}`] : []),
    ...(files.length ? [`--allow-read=${files.join(",")}`, `--allow-write=${files.join(",")}`] : []),
    ...(p.env?.length ? [`--allow-env=${p.env.join(",")}`] : []),
    ...(p.ffi === false ? [] : ["--allow-ffi"]),
  ];
}

/** Formats `host:port` for `--allow-net` (IPv6 in brackets). */
export function netScope(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** How this program runs, which decides how it re-runs itself. */
export interface SelfExec {
  /** A compiled binary (`deno compile`): `<execPath> <role> …`, its permissions baked in. */
  readonly standalone: boolean;
  /** The executable to re-run. */
  readonly execPath: string;
  /** Under `deno run`: the main module. */
  readonly mainModule: string;
}

/**
 * This process's {@link SelfExec}. `OSPS_SELF_EXEC`, when set, names an
 * executable that behaves as the compiled binary does (`<exe> <role> …`): a
 * packager's wrapper, or the tests' stand-in for `deno compile`, whose
 * download host these machines cannot reach; this program then re-runs that
 * executable exactly as a compiled binary re-runs itself.
 */
export function currentExec(): SelfExec {
  let standIn: string | undefined;
  try {
    standIn = Deno.env.get("OSPS_SELF_EXEC") || undefined;
  } catch { /* no env permission: not under a stand-in */ }
  return {
    standalone: standIn !== undefined || Deno.build.standalone,
    execPath: standIn ?? installedPath(Deno.execPath()),
    mainModule: Deno.mainModule,
  };
}

/** What the kernel appends to `/proc/self/exe` once the running binary's file was replaced or removed. */
const DELETED = " (deleted)";

/**
 * The path to run for `execPath` (this process's binary as `/proc/self/exe`
 * names it): the same path without " (deleted)" when the binary was replaced
 * since this process started (an upgrade), so that the new one runs.
 * @example
 * ```ts
 * installedPath("/usr/local/bin/osps (deleted)"); // "/usr/local/bin/osps"
 * ```
 */
export function installedPath(execPath: string): string {
  return execPath.endsWith(DELETED) ? execPath.slice(0, -DELETED.length) : execPath;
}

/** What runs a role as a child: program, arguments, and environment variables to add (if any). */
export interface SelfCommand {
  readonly program: string;
  readonly args: string[];
  readonly env?: Record<string, string>;
}

/**
 * How a child finds its imports under `deno run`. The source (`main.ts`)
 * resolves them through the `deno.json` beside it; a bundle (`deno task
 * bundle`: JavaScript with every import inside) needs none, and must not
 * pick up whatever `deno.json` lies around the directory it was started in,
 * so it gets `--no-config` and, on the command line, the unstable APIs that
 * deno.json enables (`Deno.listen`'s `reusePort`, for the chat's IRC port).
 */
export function configFlags(mainModule: string): string[] {
  const config = new URL("./deno.json", mainModule);
  if (/\.[cm]?ts$/.test(mainModule) && config.protocol === "file:") {
    return [`--config=${decodeURIComponent(config.pathname)}`];
  }
  return ["--no-config", ...BUNDLE_FLAGS];
}

/** What deno.json's settings add to a bundle's `deno run` (see {@link configFlags}). */
export const BUNDLE_FLAGS: readonly string[] = (denoJson.unstable ?? []).map((u: string) =>
  `--unstable-${u}`
);

/** The command line (program and arguments) that runs `roleArgv` as a child of this process. */
export function selfCommand(
  roleArgv: string[],
  perms: RolePermissions,
  self: SelfExec = currentExec(),
): SelfCommand {
  const program = self.execPath;
  if (self.standalone) {
    // A compiled binary takes no runtime flags on its command line; its runtime reads V8's from the environment.
    return perms.v8Flags?.length
      ? { program, args: roleArgv, env: { DENO_V8_FLAGS: perms.v8Flags.join(",") } }
      : { program, args: roleArgv };
  }
  const args = ["run", ...permissionFlags(perms)];
  if (perms.v8Flags?.length) args.push(`--v8-flags=${perms.v8Flags.join(",")}`);
  args.push(...configFlags(self.mainModule));
  return { program, args: [...args, self.mainModule, ...roleArgv] };
}
