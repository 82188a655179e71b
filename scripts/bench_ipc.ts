/**
 * Part 1 of the benchmark suite: the dispatcher↔worker doorbell round trip.
 *
 * - osps: this process is the dispatcher side of worker 1's local link
 *   (`LocalWorkerLink`); `scripts/ipc_peer.ts fifo` is the worker side
 *   (`LocalDispatcherLink`). One round trip is a PROBE frame on `dwtube1`,
 *   answered by an ECHO from the worker side's event loop on `wdtube1`,
 *   through the same poller, frames and sessions as every doorbell.
 * - C: a FIFO ping-pong between two processes, compiled here with `cc` (the
 *   physical limit of the mechanism on this machine).
 * - Deno TCP: one byte each way on a kept loopback connection.
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { ensureFifo } from "../mod/ipc/fifo.ts";
import { LocalWorkerLink } from "../mod/link/local_link.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { summarize } from "../mod/client/latency_stats.ts";
import { FifoPoller } from "../mod/ipc/fifo.ts";
import { systemClock } from "../mod/sys/clock.ts";
import { type Figure, figure, latencyJson, spawnHelper, timeUntil } from "./bench_util.ts";

/** A run dir with worker 1's FIFOs and a fresh shm segment, as the watchdog would make them. */
export interface LinkFixture {
  readonly runDir: string;
  readonly segment: Segment;
  readonly shm: string;
  readonly instance: number;
  remove(): void;
}

/** Makes a {@link LinkFixture} in a temp dir. */
export function linkFixture(): LinkFixture {
  const parent = Deno.makeTempDirSync({ prefix: "osps-bench-" });
  const runDir = `${parent}/run`;
  Deno.mkdirSync(runDir, { mode: 0o700 });
  const paths = instancePaths(runDir);
  ensureFifo(paths.dwtube(1));
  ensureFifo(paths.wdtube(1));
  const instance = Math.floor(Math.random() * 2 ** 31);
  const segment = Segment.create(paths.shm, 2, instance);
  return {
    runDir,
    segment,
    shm: paths.shm,
    instance,
    remove() {
      segment.close();
      Segment.unlink(paths.shm);
      Deno.removeSync(parent, { recursive: true });
    },
  };
}

/** Samples (ms) and wall time of one series of round trips. */
interface Series {
  samples: number[];
  elapsedMs: number;
}

async function timeRoundTrips(n: number, warmup: number, once: () => Promise<void>): Promise<Series> {
  for (let i = 0; i < warmup; i++) await once();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await once();
    samples.push(performance.now() - t0);
  }
  return { samples, elapsedMs: performance.now() - start };
}

async function ospsDoorbell(n: number, warmup: number): Promise<Series> {
  const fx = linkFixture();
  const peer = await spawnHelper("ipc_peer.ts", ["fifo", fx.shm, fx.runDir], [
    "--allow-ffi",
    "--allow-read=/tmp",
    "--allow-write=/tmp",
  ]);
  const poller = new FifoPoller();
  const link = new LocalWorkerLink(
    fx.segment.slot(1),
    instancePaths(fx.runDir),
    "127.0.0.1",
    poller,
    systemClock,
  );
  try {
    let echoed: (() => void) | undefined;
    link.start({ onReady() {}, onDone() {}, onClosed() {}, onLost() {}, onProbe: () => echoed?.() });
    poller.start();
    fx.segment.slot(1).store("pid", peer.pid); // what the watchdog records; the link requires it
    await timeUntil("the doorbell link to connect", () => link.available(), { timeoutMs: 10_000 });
    return await timeRoundTrips(n, warmup, async () => {
      const { promise, resolve } = Promise.withResolvers<void>();
      echoed = resolve;
      if (!link.probe()) throw new Error("the worker side is not connected");
      await promise;
    });
  } finally {
    link.close();
    await poller.stop();
    await peer.stop();
    fx.remove();
  }
}

const C_SOURCE = String.raw`
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static long long now(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  int n = atoi(argv[2]), warm = atoi(argv[3]);
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s/ping", argv[1]); snprintf(b, sizeof b, "%s/pong", argv[1]);
  if (mkfifo(a, 0600) || mkfifo(b, 0600)) { perror("mkfifo"); return 1; }
  pid_t pid = fork();
  if (pid == 0) {
    int r = open(a, O_RDONLY), w = open(b, O_WRONLY); char c;
    while (read(r, &c, 1) == 1) if (write(w, &c, 1) != 1) break;
    _exit(0);
  }
  int w = open(a, O_WRONLY), r = open(b, O_RDONLY); char c = 'p';
  long long *s = malloc(sizeof(long long) * n);
  for (int i = 0; i < warm; i++) { if (write(w, &c, 1) != 1 || read(r, &c, 1) != 1) return 1; }
  long long start = now();
  for (int i = 0; i < n; i++) {
    long long t0 = now();
    if (write(w, &c, 1) != 1 || read(r, &c, 1) != 1) return 1;
    s[i] = now() - t0;
  }
  long long total = now() - start;
  close(w); close(r); waitpid(pid, 0, 0);
  printf("%lld\n", total);
  for (int i = 0; i < n; i++) printf("%lld\n", s[i]);
  return 0;
}
`;

/** Compiles the C ping-pong; null when no C compiler is installed. */
async function compileC(dir: string): Promise<string | null> {
  await Deno.writeTextFile(`${dir}/fifo_pingpong.c`, C_SOURCE);
  for (const cc of ["cc", "gcc", "clang"]) {
    try {
      const o = await new Deno.Command(cc, {
        args: ["-O2", "-o", `${dir}/fifo_pingpong`, `${dir}/fifo_pingpong.c`],
        stdout: "null",
        stderr: "piped",
      }).output();
      if (o.success) return `${dir}/fifo_pingpong`;
      console.error(`${cc} failed: ${new TextDecoder().decode(o.stderr)}`);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  return null;
}

async function cPingPong(binary: string, dir: string, n: number, warmup: number): Promise<Series> {
  const fifoDir = Deno.makeTempDirSync({ dir });
  const o = await new Deno.Command(binary, { args: [fifoDir, String(n), String(warmup)], stderr: "inherit" })
    .output();
  if (!o.success) throw new Error(`C ping-pong failed (exit ${o.code})`);
  const [total, ...ns] = new TextDecoder().decode(o.stdout).trim().split("\n").map(Number);
  return { samples: ns.map((x) => x / 1e6), elapsedMs: total! / 1e6 };
}

async function denoTcp(n: number, warmup: number): Promise<Series> {
  const peer = await spawnHelper("ipc_peer.ts", ["tcp"], ["--allow-net=127.0.0.1"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(peer.firstLine.split(" ")[1]) });
  conn.setNoDelay(true);
  const one = new Uint8Array([0x70]), buf = new Uint8Array(16);
  try {
    return await timeRoundTrips(n, warmup, async () => {
      await conn.write(one);
      if ((await conn.read(buf)) !== 1) throw new Error("TCP peer closed");
    });
  } finally {
    conn.close();
    await peer.stop();
  }
}

function merge(all: Series[]): Series {
  return { samples: all.flatMap((s) => s.samples), elapsedMs: all.reduce((t, s) => t + s.elapsedMs, 0) };
}

/** Runs part 1: `rounds` interleaved rounds of `n` round trips of each kind. */
export async function benchIpc(opts: { n: number; warmup: number; rounds: number }): Promise<{
  figures: Figure[];
  raw: Record<string, unknown>;
}> {
  const tmp = Deno.makeTempDirSync({ prefix: "osps-bench-c-" });
  try {
    const binary = await compileC(tmp);
    const runs: Record<string, Series[]> = { osps: [], c: [], tcp: [] };
    for (let r = 0; r < opts.rounds; r++) {
      if (binary) runs.c!.push(await cPingPong(binary, tmp, opts.n, opts.warmup));
      runs.osps!.push(await ospsDoorbell(opts.n, opts.warmup));
      runs.tcp!.push(await denoTcp(opts.n, opts.warmup));
    }
    const raw: Record<string, unknown> = {};
    const stats: Record<string, { p50: number; p99: number; rps: number }> = {};
    for (const [k, series] of Object.entries(runs)) {
      if (series.length === 0) continue;
      const m = merge(series);
      const lat = summarize(m.samples);
      stats[k] = { p50: lat.p50 * 1000, p99: lat.p99 * 1000, rps: (m.samples.length * 1000) / m.elapsedMs };
      raw[k] = {
        latency_ms: latencyJson(m.samples),
        round_trips_per_s: Math.round(stats[k]!.rps),
        samples: m.samples.length,
      };
    }
    raw["c_compiler"] = binary ? "found" : "none (C reference skipped)";
    const o = stats["osps"]!, c = stats["c"], t = stats["tcp"]!;
    const ref = (
      name: string,
      s: { p50: number; p99: number; rps: number } | undefined,
      key: "p50" | "p99" | "rps",
    ) => s ? { reference: { name, value: s[key] } } : {};
    const figures: Figure[] = [
      figure({
        part: "IPC",
        name: "doorbell round trip p50 (shm slot + FIFO probe/echo)",
        value: o.p50,
        unit: "µs",
        ...ref("C FIFO ping-pong p50", c, "p50"),
        target: { on: "ratio", op: "<=", limit: 1.2 },
        ...(c ? {} : { note: "no C compiler: target not measurable" }),
      }),
      figure({
        part: "IPC",
        name: "doorbell round trip p99",
        value: o.p99,
        unit: "µs",
        ...ref("C FIFO p99", c, "p99"),
      }),
      figure({
        part: "IPC",
        name: "doorbell round trips per second",
        value: o.rps,
        unit: "/s",
        ...ref("C FIFO round trips/s", c, "rps"),
      }),
      figure({
        part: "IPC",
        name: "doorbell round trip p50 vs Deno TCP",
        value: o.p50,
        unit: "µs",
        ...ref("Deno TCP kept-connection p50", t, "p50"),
      }),
      figure({
        part: "IPC",
        name: "Deno TCP kept-connection round trip p50 (for scale)",
        value: t.p50,
        unit: "µs",
        ...ref("C FIFO ping-pong p50", c, "p50"),
      }),
    ];
    return { figures, raw };
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
}
