/**
 * Reading /proc: process start times (for pid-reuse-safe signals), liveness,
 * zombies and role processes. Linux only.
 * @module
 */
import * as libc from "./libc.ts";

/** Fields of /proc/<pid>/stat osps uses. */
export interface ProcStat {
  readonly pid: number;
  readonly state: string;
  readonly ppid: number;
  /** Start time in clock ticks since boot (field 22): with the pid, identifies one process for good. */
  readonly startTime: number;
}

/** Parses /proc/<pid>/stat; null when the process does not exist. */
export function procStat(pid: number): ProcStat | null {
  const raw = libc.readSmallFile(`/proc/${pid}/stat`);
  if (!raw) return null;
  const text = new TextDecoder().decode(raw);
  // comm (field 2) may contain spaces and parentheses: split after the last ')'.
  const close = text.lastIndexOf(")");
  const rest = text.slice(close + 2).split(" ");
  return {
    pid: Number(text.slice(0, text.indexOf(" "))),
    state: rest[0] ?? "?",
    ppid: Number(rest[1]),
    startTime: Number(rest[19]),
  };
}

/** CPU and memory of one process, from /proc/<pid>/stat. */
export interface ProcUsage {
  /** User plus system CPU time, seconds. */
  readonly cpuSeconds: number;
  readonly residentBytes: number;
  readonly virtualBytes: number;
  /** Start time, seconds since the epoch. */
  readonly startSeconds: number;
}

let ticks: { perSecond: number; pageSize: number; bootSeconds: number } | undefined;

function hostTicks(): { perSecond: number; pageSize: number; bootSeconds: number } {
  if (ticks) return ticks;
  const stat = new TextDecoder().decode(libc.readSmallFile("/proc/stat") ?? new Uint8Array());
  const btime = Number(/^btime (\d+)$/m.exec(stat)?.[1] ?? 0);
  ticks = { perSecond: libc.sysconf("clk_tck"), pageSize: libc.sysconf("pagesize"), bootSeconds: btime };
  return ticks;
}

/** CPU and memory use of `pid` ("self" for this process); null when it does not exist. */
export function procUsage(pid: number | "self"): ProcUsage | null {
  const raw = libc.readSmallFile(`/proc/${pid}/stat`);
  if (!raw) return null;
  const text = new TextDecoder().decode(raw);
  // Fields after comm: state is field 3, so field n is rest[n - 3].
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const t = hostTicks();
  const field = (n: number) => Number(rest[n - 3] ?? 0);
  return {
    cpuSeconds: (field(14) + field(15)) / t.perSecond,
    virtualBytes: field(23),
    residentBytes: field(24) * t.pageSize,
    startSeconds: t.bootSeconds + field(22) / t.perSecond,
  };
}

/** True when `pid` exists, is not a zombie, and (when given) started at `startTime`. */
export function isAlive(pid: number, startTime?: number): boolean {
  const st = procStat(pid);
  if (!st || st.state === "Z" || st.state === "X") return false;
  return startTime === undefined || st.startTime === startTime;
}

/**
 * Sends `sig` to `pid` only if it is still the process that started at
 * `startTime` (a recycled pid is left alone). Returns whether it was sent.
 */
export function signalIfSame(pid: number, startTime: number, sig: number): boolean {
  if (!isAlive(pid, startTime)) return false;
  return libc.kill(pid, sig);
}

/** Command lines of every process, keyed by pid (unreadable ones skipped). */
export function processTable(): Map<number, { stat: ProcStat; cmdline: string[] }> {
  const out = new Map<number, { stat: ProcStat; cmdline: string[] }>();
  for (const name of libc.listDir("/proc") ?? []) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const stat = procStat(pid);
    if (!stat) continue;
    const raw = libc.readSmallFile(`/proc/${pid}/cmdline`);
    const cmdline = raw ? new TextDecoder().decode(raw).split("\0").filter((s) => s !== "") : [];
    out.set(pid, { stat, cmdline });
  }
  return out;
}
