/**
 * The network scope of the commands that talk to a dispatcher (`client`,
 * `chat`, `bench`): the dispatcher they were given and the hosts of the
 * workers it may assign, nothing else.
 *
 * They start under the permissions of the `osps` task or the installed
 * command, which reach loopback only. Given a dispatcher out of that reach,
 * the command runs again in a child process scoped to exactly what it needs,
 * as the watchdog runs each of its children: a short child first asks the
 * dispatcher on which hosts its workers are (`HOSTS`), then the command runs
 * with `--allow-net` for the dispatcher and those hosts.
 *
 * Why ask first: a dispatcher may assign a worker on another host, and Deno
 * grants permissions when a process starts, never later; a client that met an
 * unknown host mid-session would have to drop what it holds. Why not widen to
 * every address: the client then reaches the dispatcher and the workers it
 * names, nothing else, even through a bug or a dependency. A worker host that
 * joins after the command started (or one behind a loopback dispatcher) is
 * `OutOfScope` (./reach.ts): a one-shot command that has not run anything yet runs
 * again scoped to it, others say what to do.
 *
 * A compiled binary keeps the permissions baked into it; it is never re-run.
 * @module
 */
import { currentExec, netScope, selfCommand } from "../sys/spawn.ts";
import { bracket, mayReach } from "./reach.ts";
import { Session } from "./session.ts";

/** Set in the scoped child: it does not re-run itself again. */
const SCOPED_ENV = "OSPS_SCOPED";

function scoped(): boolean {
  try {
    return Deno.env.get(SCOPED_ENV) === "1";
  } catch {
    return false; // not allowed to look: the launcher, which is not scoped
  }
}

/**
 * Runs this command again scoped to the dispatcher at `host:port` and its
 * workers' hosts when this process may not reach the dispatcher (or, with
 * `always`, when it may but met an {@link OutOfScope} worker); resolves to
 * the child's exit code, or null when the command should run here.
 */
export async function runScoped(host: string, port: number, always = false): Promise<number | null> {
  const self = currentExec();
  if (self.standalone || scoped() || (!always && mayReach(host, port))) return null;
  const hosts = await askHosts(host, port);
  const args = Deno.args;
  const { program, args: argv } = selfCommand(args, {
    listen: [],
    connect: [netScope(host, port), ...hosts.map(bracket)],
    env: [SCOPED_ENV],
    ffi: false,
  });
  const child = new Deno.Command(program, { args: argv, env: { [SCOPED_ENV]: "1" } }).spawn();
  // Ctrl-C reaches both (one process group); a signal sent to this process alone is passed on.
  const forward = (sig: Deno.Signal) => () => {
    try {
      child.kill(sig);
    } catch { /* gone */ }
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  const handlers = signals.map((s) => [s, forward(s)] as const);
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  try {
    const status = await child.status;
    return status.signal ? 128 + signalNumber(status.signal) : status.code;
  } finally {
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}

function signalNumber(sig: Deno.Signal): number {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[sig] ?? 1;
}

/**
 * The worker hosts of the dispatcher at `host:port`, asked by a short child
 * that may reach the dispatcher alone (`osps hosts`); when it cannot say
 * (unreachable, refused, an older dispatcher), the dispatcher's own host:
 * the command then reports the failure itself.
 */
async function askHosts(host: string, port: number): Promise<string[]> {
  if (mayReach(host, port)) return await dispatcherHosts(host, port).catch(() => [host]);
  const { program, args } = selfCommand(["hosts", `--host=${host}`, `--port=${port}`], {
    listen: [],
    connect: [netScope(host, port)],
    ffi: false,
  });
  const o = await new Deno.Command(program, { args, stdin: "null", stdout: "piped", stderr: "null" })
    .output();
  const said = new TextDecoder().decode(o.stdout).trim();
  return o.success && said ? said.split(" ") : [host];
}

/** Asks the dispatcher at `host:port` for its workers' hosts (`HOSTS`), a wildcard address read as `host`. */
export async function dispatcherHosts(host: string, port: number): Promise<string[]> {
  const session = await Session.open(host, port, { timeoutMs: 5_000 });
  try {
    const hosts = await session.hosts();
    return [...new Set([host, ...hosts.map((h) => h === "0.0.0.0" || h === "::" ? host : h)])];
  } finally {
    await session.close().catch(() => {});
  }
}
