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
  return {
    url: `postgres://osps@127.0.0.1:${port}/postgres`,
    stop: async () => {
      server.kill("SIGINT"); // fast shutdown
      await server.status;
      await logged;
      await drained;
      Deno.removeSync(dir, { recursive: true });
    },
  };
}
