/**
 * Test harness for multi-process tests: starts a real watchdog (deno run mode,
 * scoped permissions) on free loopback ports in a fresh run dir, runs osps
 * subcommands, and checks that nothing is left behind.
 * @module
 */
import assert from "node:assert/strict";
import { instancePaths } from "../mod/cli/config.ts";
import { processTable } from "../mod/sys/proc.ts";
import { Segment, SupState } from "../mod/ipc/shm.ts";
import type { ChildStatus, InstanceStatus } from "../mod/ops/instance_status.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** `deno run` flags the tests use for osps subcommands (same scope as the `osps` task). */
export const RUN_FLAGS = [
  "run",
  "--no-prompt",
  `--config=${CONFIG}`,
  "--allow-net=127.0.0.1,localhost",
  "--allow-ffi",
  "--allow-read=/tmp",
  "--allow-write=/tmp",
  "--allow-env=PGAPPNAME,PGTARGETSESSIONATTRS", // the PostgreSQL client's (chat --store postgres://)
  `--allow-run=${Deno.execPath()}`,
  // systemd's notify protocol (tests stand in for systemd).
  "--allow-env=NOTIFY_SOCKET,WATCHDOG_USEC,WATCHDOG_PID",
];

/**
 * A stand-in for what `deno compile` makes (no `denort` here): a shell script that runs main.ts with the
 * permissions `deno task compile` bakes into the binary, naming itself for re-runs as the binary does.
 * `extra` flags go before main.ts (a test marks versions of the "binary" with them).
 */
export function compiledStandIn(extra: string[] = []): string {
  const tasks = JSON.parse(Deno.readTextFileSync(CONFIG)).tasks.compile as string;
  const task = tasks.slice(tasks.indexOf("deno compile")); // not the preflight's (scripts/compile_check.ts)
  const baked = task.split(/\s+/).filter((a) => a.startsWith("--allow-") || a === "--no-prompt");
  return [
    "#!/bin/sh",
    "# Stand-in for `deno compile` output: same argv shape, same baked-in permissions, names itself for re-runs.",
    `OSPS_SELF_EXEC="$0" exec "${Deno.execPath()}" run --config="${CONFIG}" ${
      [...extra, ...baked].join(" ")
    } ` +
    `"${MAIN}" "$@"`,
    "",
  ].join("\n");
}

/** Output of a finished osps command. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `osps <args>` to completion (`net`: addresses it may reach besides loopback). */
export async function osps(
  args: string[],
  options: { stdin?: string; net?: string[]; wrap?: string[] } = {},
): Promise<Output> {
  const flags = options.net
    ? RUN_FLAGS.map((f) => f.startsWith("--allow-net=") ? `${f},${options.net!.join(",")}` : f)
    : RUN_FLAGS;
  const [program, ...prefix] = options.wrap ?? [];
  const cmd = new Deno.Command(program ?? Deno.execPath(), {
    args: [...(program ? [...prefix, Deno.execPath()] : []), ...flags, MAIN, ...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  });
  if (options.stdin === undefined) {
    const o = await cmd.output();
    return { code: o.code, stdout: dec(o.stdout), stderr: dec(o.stderr) };
  }
  const child = cmd.spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(options.stdin));
  await w.close();
  const o = await child.output();
  return { code: o.code, stdout: dec(o.stdout), stderr: dec(o.stderr) };
}

function dec(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

/**
 * A block of `n` consecutive free loopback ports; returns the first. Taken
 * below Linux's ephemeral range (32768–60999 by default): a port found free
 * there can be given to some client's outgoing connection before the server
 * that was to listen on it does (a reload's replacement worker binding its
 * slot's port while 16 load clients open connections did, in CI).
 */
export function freePorts(n: number): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * (22_000 - n));
    const held: Deno.Listener[] = [];
    try {
      for (let i = 0; i < n; i++) held.push(Deno.listen({ hostname: "127.0.0.1", port: base + i }));
      return base;
    } catch {
      // taken; try another block
    } finally {
      for (const l of held) l.close();
    }
  }
  throw new Error("no free port block");
}

/** A running instance started by {@link startInstance}. */
export interface Instance {
  readonly port: number;
  readonly workers: number;
  readonly runDir: string;
  readonly pid: number;
  readonly process: Deno.ChildProcess;
  /** The watchdog's `ready …` line. */
  readonly readyLine: string;
  /** stderr collected so far (all roles log there). */
  logs(): string;
  /** `osps client --port <port> …`. */
  client(args: string[], options?: { stdin?: string }): Promise<Output>;
  /** `osps status --json`, parsed. */
  status(): Promise<StatusJson>;
  /** `osps stop`, then waits for the watchdog's exit code. */
  stop(): Promise<number>;
  /** Waits for the watchdog to exit on its own; returns its code. */
  exited(): Promise<number>;
}

/** Shape of `osps status --json` the tests rely on. */
export interface StatusJson {
  watchdog: { pid: number; state: string };
  reloads: InstanceStatus["reloads"];
  limits: InstanceStatus["limits"];
  dispatcher: ChildJson;
  workers: ChildJson[];
}
/** One child in {@link StatusJson}. */
export type ChildJson = Pick<
  ChildStatus,
  | "id"
  | "pid"
  | "port"
  | "state"
  | "work"
  | "busy"
  | "capacity"
  | "restarts"
  | "served"
  | "heartbeat_age_ms"
  | "last_exit"
  | "backoff_ms"
  | "host"
  | "link"
  | "wedged"
  | "watchdog_pid"
  | "rss_bytes"
  | "spare"
  | "conns"
>;

/**
 * `deno task bundle --outdir <outDir>` (scripts/bundle.ts, scoped to `outDir`):
 * the bundle's main module and its launcher.
 */
export async function bundleInto(outDir: string): Promise<{ main: string; launcher: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-read",
      `--allow-write=${outDir}`,
      "--allow-env=HOME",
      `--allow-run=${Deno.execPath()}`,
      new URL("../scripts/bundle.ts", import.meta.url).pathname,
      "--outdir",
      outDir,
    ],
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return { main: `${outDir}/main.js`, launcher: `${outDir}/osps` };
}

/** Options of {@link startInstance}. */
export interface StartOptions {
  workers?: number;
  flags?: string[];
  /** Expect the watchdog to fail instead of printing ready. */
  expectFailure?: boolean;
  runDir?: string;
  port?: number;
  /** Open-file limit (soft and hard) to start the watchdog under, as `ulimit -n` would set it. */
  fileLimit?: number;
  /** A command the watchdog runs under (say `ip netns exec NS`): it ends by exec'ing the watchdog. */
  wrap?: string[];
  /** How long to wait for the ready line (default 30 s); then the watchdog is stopped (SIGTERM, then SIGKILL). */
  timeoutMs?: number;
  /** Environment variables to add for the watchdog (NOTIFY_SOCKET, say). */
  env?: Record<string, string>;
  /** The main module to run (default: this checkout's main.ts; a bundle's main.js, say). */
  main?: string;
}

/** Starts `osps watchdog` and waits for its `ready` line. */
export async function startInstance(options: StartOptions = {}): Promise<Instance> {
  const workers = options.workers ?? 3;
  const port = options.port ?? freePorts(workers + 2); // the dispatcher, the workers, the spare slot
  const runDir = options.runDir ?? `${Deno.makeTempDirSync({ prefix: "osps-test-" })}/run`;
  const argv = [
    Deno.execPath(),
    ...(options.main
      ? [...RUN_FLAGS.filter((f) => !f.startsWith("--config=")), "--no-config", options.main]
      : [...RUN_FLAGS, MAIN]),
    "watchdog",
    `--port=${port}`,
    `--workers=${workers}`,
    `--run-dir=${runDir}`,
    "--log-level=info",
    ...(options.flags ?? []),
  ];
  // A low open-file limit is set by a shell that then becomes the watchdog (exec): same pid, same pipes.
  const limited = options.fileLimit === undefined
    ? argv
    : ["sh", "-c", `ulimit -n ${options.fileLimit} && exec "$@"`, "sh", ...argv];
  const [program, ...args] = [...(options.wrap ?? []), ...limited];
  const child = new Deno.Command(program!, {
    args,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  const status = child.status;
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const readyTimeout = options.timeoutMs ?? 30_000;
  const deadline = Date.now() + readyTimeout;
  while (!buffered.includes("\n")) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      lines.read(),
      new Promise<"timeout">((res) =>
        timer = setTimeout(() => res("timeout"), Math.max(0, deadline - Date.now()))
      ),
    ]);
    clearTimeout(timer); // a pending timer would keep a caller's process (the bench suite) alive for 30 s
    if (r === "timeout" || r.done) {
      await lines.cancel();
      if (r === "timeout") {
        child.kill("SIGTERM"); // a clean stop removes what it made; SIGKILL if it does not come
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await status;
        clearTimeout(killer);
      }
      const code = (await status).code;
      await stderrDone;
      removeTempParent(runDir, options.runDir);
      if (!options.expectFailure) throw new Error(`watchdog did not get ready (exit ${code}):\n${stderr}`);
      const done = Promise.resolve(code);
      const fail = () => Promise.reject(new Error("instance is not running"));
      return instance({ port, workers, runDir, readyLine: "" }, child, () => stderr, {
        client: fail,
        status: fail,
        stop: () => done,
        exited: () => done,
      });
    }
    buffered += r.value;
  }
  assert.match(buffered, /^ready /, `first stdout line should start with "ready": ${buffered}`);
  const readyLine = buffered.slice(0, buffered.indexOf("\n"));
  // Keep draining stdout so the watchdog never blocks on it.
  const stdoutDone = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })();
  const finished = status.then(async (s) => {
    await stdoutDone;
    await stderrDone;
    removeTempParent(runDir, options.runDir);
    return s.code;
  });
  return instance({ port, workers, runDir, readyLine }, child, () => stderr, {
    client: (args, o) => osps(["client", `--port=${port}`, ...args], o),
    status: async () => {
      const o = await osps(["status", `--run-dir=${runDir}`, "--json"]);
      assert.equal(o.code, 0, `status failed: ${o.stderr}`);
      return JSON.parse(o.stdout) as StatusJson;
    },
    stop: async () => {
      const o = await osps(["stop", `--run-dir=${runDir}`]);
      assert.equal(o.code, 0, `stop failed: ${o.stderr}`);
      return await finished;
    },
    exited: () => finished,
  });
}

/** An {@link Instance}: what every one has, running or failed, plus how it is driven. */
function instance(
  where: Pick<Instance, "port" | "workers" | "runDir" | "readyLine">,
  child: Deno.ChildProcess,
  logs: () => string,
  drive: Pick<Instance, "client" | "status" | "stop" | "exited">,
): Instance {
  return { ...where, pid: child.pid, process: child, logs, ...drive };
}

/** Removes the temp dir the harness made around a run dir (only when it is empty: the watchdog cleaned up). */
function removeTempParent(runDir: string, given: string | undefined): void {
  if (given !== undefined) return;
  try {
    Deno.removeSync(runDir.slice(0, runDir.lastIndexOf("/")));
  } catch { /* not empty: something was left, and assertNothingLeft will say so */ }
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(
  what: string,
  check: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Processes whose command line mentions `runDir` (the roles of that instance). */
export function rolesOf(runDir: string): number[] {
  return [...processTable().values()]
    .filter((p) => p.cmdline.some((a) => a.includes(runDir)) && p.stat.state !== "Z")
    .map((p) => p.stat.pid);
}

/** Zombie children of `ppid`. */
export function zombiesOf(ppid: number): number[] {
  return [...processTable().values()].filter((p) => p.stat.ppid === ppid && p.stat.state === "Z").map((p) =>
    p.stat.pid
  );
}

/**
 * Asserts that a live watchdog has reaped every child that ended: none of its
 * children is a zombie (one that died this very moment gets a short grace).
 */
export async function assertNoZombies(inst: Pick<Instance, "pid">): Promise<void> {
  await waitFor("the watchdog to reap its dead children", () => zombiesOf(inst.pid).length === 0, 2_000)
    .catch(
      () => assert.deepEqual(zombiesOf(inst.pid), [], "zombie children of the live watchdog"),
    );
}

/** Asserts that an instance left no process, FIFO, run dir or shm segment (and that it was reaped itself). */
export async function assertNothingLeft(inst: Pick<Instance, "runDir" | "pid">): Promise<void> {
  await waitFor("every role process to be gone", () => rolesOf(inst.runDir).length === 0, 5_000);
  assert.deepEqual(zombiesOf(Deno.pid).filter((z) => z === inst.pid), [], "the watchdog was reaped");
  assert.equal(exists(inst.runDir), false, `run dir ${inst.runDir} should be removed`);
  const shm = instancePaths(inst.runDir).shm;
  assert.equal(Segment.exists(shm), false, `shm segment ${shm} should be unlinked`);
}

/** Options of {@link withInstance}. */
export interface WithInstanceOptions extends Omit<StartOptions, "expectFailure"> {
  /** Exit code the watchdog must end with after `osps stop` (default 0); `null` leaves it unchecked. */
  stopCode?: number | null;
}

/**
 * Starts an instance, runs `body` on it, always stops it (checking the
 * watchdog's exit code), then asserts that it left nothing behind. Resolves to
 * the stopped instance, whose logs are then complete.
 */
export async function withInstance(
  options: WithInstanceOptions,
  body: (inst: Instance) => Promise<void>,
): Promise<Instance> {
  const { stopCode = 0, ...start } = options;
  const inst = await startInstance(start);
  try {
    await body(inst);
    await assertNoZombies(inst); // checked while the watchdog runs: after its exit there is nothing to see
    assert.doesNotMatch(inst.logs(), /uncaught error/, "no role hit an error nobody handled");
  } catch (err) {
    await inst.stop().catch(() => {}); // stop it all the same; the body's failure is the one to report
    throw err;
  }
  const code = await inst.stop();
  if (stopCode !== null) assert.equal(code, stopCode, `watchdog exit code after stop; logs:\n${inst.logs()}`);
  await assertNothingLeft(inst);
  return inst;
}

/** True when `path` exists (without following a final symlink). */
export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Waits until the instance's logs match `pattern`; returns the match. */
export function waitForLog(
  inst: Pick<Instance, "logs">,
  pattern: RegExp,
  timeoutMs = 15_000,
): Promise<RegExpMatchArray> {
  return waitFor(`log line ${pattern}`, () => inst.logs().match(pattern), timeoutMs);
}

/** Waits until worker `id` (1-based) runs a new process other than `oldPid` and is ready and idle. */
export function waitReplaced(
  inst: Instance,
  id: number,
  oldPid: number,
  timeoutMs = 15_000,
): Promise<StatusJson> {
  return waitFor(`worker ${id} replaced`, async () => {
    const s = await inst.status();
    const w = s.workers[id - 1]!;
    return w.pid > 0 && w.pid !== oldPid && w.state === "ready" && w.work === "idle" ? s : null;
  }, timeoutMs);
}

/** Milliseconds since `t0` (a `performance.now()` reading), rounded to 0.1 ms. */
export function since(t0: number): number {
  return Math.round((performance.now() - t0) * 10) / 10;
}

/** Maps the instance's shm table in this process (fast polling for timings); close it when done. */
export function mapTable(inst: Pick<Instance, "runDir">): Segment {
  return Segment.open(instancePaths(inst.runDir).shm);
}

/** Polls `check` every `everyMs` (default 2 ms) until truthy; for measuring, where {@link waitFor} is too coarse. */
export async function pollFast<T>(
  what: string,
  check: () => T | null | undefined | false,
  timeoutMs = 15_000,
  everyMs = 2,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Kills (SIGKILL) the process of each slot in `slots` every time one comes
 * up, until all of them are `failed` (past their restart budgets).
 */
export async function killUntilFailed(table: Segment, slots: number[], timeoutMs: number): Promise<void> {
  const killed = new Set<number>();
  await pollFast(
    `slots ${slots.join(", ")} failing`,
    () => {
      for (const i of slots) {
        const pid = table.slot(i).load("pid");
        if (pid > 0 && !killed.has(pid)) {
          killed.add(pid);
          Deno.kill(pid, "SIGKILL");
        }
      }
      return slots.every((i) => table.slot(i).load("sup_state") === SupState.FAILED);
    },
    timeoutMs,
    1,
  );
}
