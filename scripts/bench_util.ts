/**
 * Shared pieces of the benchmark suite: helper processes, the figures table
 * every part adds to, /proc readings (RSS) and the machine description.
 * @module
 */
import * as libc from "../mod/sys/libc.ts";
import { type LatencySummary, summarize } from "../mod/client/latency_stats.ts";

/** The repository root (ends with a slash). */
export const ROOT = new URL("..", import.meta.url).pathname;
const CONFIG = `${ROOT}deno.json`;

/** A helper process started with {@link spawnHelper}; stops when its stdin closes. */
export interface Helper {
  readonly pid: number;
  /** The first line it printed. */
  readonly firstLine: string;
  /** Closes its stdin and waits for it to exit. */
  stop(): Promise<void>;
  /** SIGKILLs it and waits (when stop is not enough). */
  kill(): Promise<void>;
}

/**
 * Starts `deno run <perms> scripts/<script> <args>` and waits for its first
 * stdout line (it prints one once ready).
 */
export async function spawnHelper(script: string, args: string[], perms: string[]): Promise<Helper> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `--config=${CONFIG}`, ...perms, `${ROOT}scripts/${script}`, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const r = await reader.read();
    if (r.done) {
      await child.stdin.close().catch(() => {});
      throw new Error(`${script} exited before it was ready (exit ${(await child.status).code})`);
    }
    text += r.value;
  }
  const drained = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      await child.stdin.close().catch(() => {});
      await child.status;
      await drained;
    })();
  return {
    pid: child.pid,
    firstLine: text.slice(0, text.indexOf("\n")),
    stop,
    kill: async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await stop();
    },
  };
}

/** Resident set size of `pid` in KiB (VmRSS), or null when it is gone. */
export function rssKiB(pid: number): number | null {
  const raw = libc.readSmallFile(`/proc/${pid}/status`);
  if (!raw) return null;
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(new TextDecoder().decode(raw));
  return m ? Number(m[1]) : null;
}

/**
 * True when every thread of `pid` has exited (or it was reaped). A killed
 * process's main thread can show as a zombie while its other threads still
 * exit, and until the last one has, its file descriptors (FIFO ends,
 * listening socket) stay open.
 */
export function processGone(pid: number): boolean {
  const raw = libc.readSmallFile(`/proc/${pid}/status`);
  if (!raw) return true;
  const text = new TextDecoder().decode(raw);
  const state = /^State:\s+(\S)/m.exec(text)?.[1];
  const threads = Number(/^Threads:\s+(\d+)/m.exec(text)?.[1] ?? 0);
  return (state === "Z" || state === "X") && threads <= 1;
}

/** CPU time (user + system, all threads) `pid` has used, in ms; 0 when it is gone. */
export function cpuMs(pid: number): number {
  const raw = libc.readSmallFile(`/proc/${pid}/stat`);
  if (!raw) return 0;
  const text = new TextDecoder().decode(raw);
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // utime and stime (fields 14, 15) in clock ticks; USER_HZ is 100 on Linux.
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every `everyMs` until it is true; returns the time it took in ms, or throws after `timeoutMs`. */
export async function timeUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  opts: { since?: number; everyMs?: number; timeoutMs?: number } = {},
): Promise<number> {
  const since = opts.since ?? performance.now();
  const deadline = since + (opts.timeoutMs ?? 20_000);
  for (;;) {
    if (await check()) return performance.now() - since;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(opts.everyMs ?? 1);
  }
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
export async function listening(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

/** The median of some numbers. */
export function median(xs: readonly number[]): number {
  return summarize(xs).p50;
}

/** How a figure compares with its reference. */
export interface Target {
  /** `ratio` compares value/reference; `value` compares the value itself. */
  readonly on: "ratio" | "value";
  readonly op: "<=" | ">=";
  readonly limit: number;
}

/** One row of the results table. */
export interface Figure {
  readonly part: string;
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** What it is set against; `missing` says why a reference has no value (NaN) this run. */
  readonly reference?: { readonly name: string; readonly value: number; readonly missing?: string };
  /** value / reference.value */
  readonly ratio?: number;
  readonly target?: Target;
  /** Whether the target was met; absent when there is no target. */
  readonly met?: boolean;
  readonly note?: string;
}

/** Builds a figure, computing the ratio and whether the target is met. */
export function figure(
  f: Omit<Figure, "ratio" | "met">,
): Figure {
  const ratio = f.reference && f.reference.value > 0 ? f.value / f.reference.value : undefined;
  let met: boolean | undefined;
  if (f.target) {
    const x = f.target.on === "ratio" ? ratio : f.value;
    met = x === undefined ? false : f.target.op === "<=" ? x <= f.target.limit : x >= f.target.limit;
  }
  return { ...f, ...(ratio === undefined ? {} : { ratio }), ...(met === undefined ? {} : { met }) };
}

/** Latency samples in ms summarized and rounded to µs for the results file. */
export function latencyJson(samples: ArrayLike<number>): LatencySummary {
  const s = summarize(samples);
  return Object.fromEntries(
    Object.entries(s).map(([k, v]) => [k, k === "count" ? v : Math.round(v * 1000) / 1000]),
  ) as unknown as LatencySummary;
}

/** The machine the suite ran on. */
export interface Machine {
  readonly nproc: number;
  readonly cpu: string;
  readonly kernel: string;
  readonly deno: string;
  readonly v8: string;
  readonly loadavg: number[];
}

/** A /proc file's text, trimmed ("?" when unreadable). */
function procText(path: string): string {
  const raw = libc.readSmallFile(path); // Deno guards /proc paths behind --allow-all
  return raw ? new TextDecoder().decode(raw).trim() : "?";
}

/** Describes this machine (CPU model from /proc/cpuinfo). */
export function machine(): Machine {
  const cpu = /^model name\s*:\s*(.+)$/m.exec(procText("/proc/cpuinfo"))?.[1]?.trim() ?? "unknown";
  return {
    nproc: navigator.hardwareConcurrency,
    cpu,
    kernel: `${Deno.build.os} ${procText("/proc/sys/kernel/osrelease")} ${Deno.build.arch}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    loadavg: procText("/proc/loadavg").split(" ").slice(0, 3).map(Number),
  };
}
