/**
 * A throwaway PostgreSQL server for tests: Debian's binaries
 * (`/usr/lib/postgresql/<v>/bin`), a fresh cluster in a temp dir, trust
 * authentication on 127.0.0.1 only, a free port. PostgreSQL refuses to run
 * as root, so under root it runs as the `postgres` user (made by the Debian
 * package) through `setpriv`, which execs it (signals reach it directly).
 */
import { freePorts, waitFor } from "../harness.ts";
import { getuid } from "../../mod/sys/libc.ts";

/** A running test server. */
export interface TestPostgres {
  readonly url: string;
  /** A new, empty database on the server (a test of its own), as a URL. */
  freshDatabase(): Promise<string>;
  /** Runs SQL as the server's owner (psql), on the default database or `url`'s; returns psql's output. */
  psql(query: string, url?: string): Promise<string>;
  /** Stops the server (fast shutdown: connections end) until {@link resume}. */
  pause(): Promise<void>;
  /** Starts the server again on the same port and data. */
  resume(): Promise<void>;
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's bin dir, or null. */
export function postgresBin(): string | null {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name).sort((a, b) =>
      Number(b) - Number(a)
    );
    for (const v of versions) {
      const bin = `/usr/lib/postgresql/${v}/bin`;
      try {
        Deno.statSync(`${bin}/initdb`);
        return bin;
      } catch { /* not this one */ }
    }
  } catch { /* not installed */ }
  return null;
}

function isRoot(): boolean {
  return getuid() === 0;
}

/** Runs a PostgreSQL program, as the postgres user when we are root. */
function pgCommand(program: string, args: string[]): Deno.Command {
  const [cmd, argv] = isRoot()
    ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--clear-groups", "--", program, ...args]]
    : [program, args];
  return new Deno.Command(cmd, { args: argv, stdin: "null", stdout: "piped", stderr: "piped" });
}

/** Starts a server, or returns null (with the reason) where PostgreSQL is not installed. */
export async function startPostgres(): Promise<TestPostgres | string> {
  const bin = postgresBin();
  if (!bin) return "PostgreSQL is not installed (Debian: apt-get install postgresql; .ci/run does)";
  const dir = Deno.makeTempDirSync({ prefix: "osps-pg-" });
  const data = `${dir}/data`;
  if (isRoot()) {
    const id = new Deno.Command("id", { args: ["-u", "postgres"], stdout: "piped", stderr: "null" })
      .outputSync();
    if (!id.success) return "no postgres user to run PostgreSQL as (root cannot)";
    const uid = Number(new TextDecoder().decode(id.stdout));
    Deno.chownSync(dir, uid, null);
    Deno.chmodSync(dir, 0o700);
  }
  const init = await pgCommand(`${bin}/initdb`, ["-D", data, "-U", "osps", "--auth=trust", "-E", "UTF8"])
    .output();
  if (!init.success) throw new Error(`initdb failed: ${new TextDecoder().decode(init.stderr)}`);
  const port = freePorts(1);
  let stopServer = await runServer(bin, data, dir, port);
  const url = `postgres://osps@127.0.0.1:${port}/postgres`;
  const psql = async (query: string, on = url) => {
    const o = await new Deno.Command("psql", {
      args: ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", on, "-c", query],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!o.success) throw new Error(`psql: ${new TextDecoder().decode(o.stderr)}`);
    return new TextDecoder().decode(o.stdout).trim();
  };
  let databases = 0;
  return {
    url,
    psql,
    freshDatabase: async () => {
      const name = `t${++databases}`;
      await psql(`CREATE DATABASE ${name}`);
      return `postgres://osps@127.0.0.1:${port}/${name}`;
    },
    pause: () => stopServer(),
    resume: async () => {
      stopServer = await runServer(bin, data, dir, port);
    },
    stop: async () => {
      await stopServer();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** Runs the server on `data` until the returned function stops it (fast shutdown). */
async function runServer(bin: string, data: string, dir: string, port: number): Promise<() => Promise<void>> {
  const server = pgCommand(`${bin}/postgres`, [
    "-D",
    data,
    "-p",
    String(port),
    "-k",
    dir,
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "fsync=off",
  ]).spawn();
  let log = "";
  const logged = (async () => {
    for await (const c of server.stderr.pipeThrough(new TextDecoderStream())) log += c;
  })();
  const drained = server.stdout.cancel();
  await waitFor(
    "PostgreSQL to accept connections",
    () => log.includes("ready to accept connections"),
    30_000,
  );
  return async () => {
    server.kill("SIGINT"); // fast shutdown
    await server.status;
    await logged;
    await drained;
  };
}
