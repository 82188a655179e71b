/**
 * Part 4 of the benchmark suite: resident memory (VmRSS) of each role, idle
 * and under load, against the floor server (a plain Deno TCP server answering
 * the same requests) idle and under the same load; and, to say where a role's
 * idle memory goes, a bare Deno TCP server that first loads a module set (the
 * mandated `node:util` and `@logtape/logtape`, each role's whole module graph).
 * @module
 */
import { runLoad } from "../roles/bench.ts";
import type { Segment } from "../mod/ipc/shm.ts";
import { clientOf, type FlowPorts } from "./bench_flow.ts";
import { type Figure, figure, median, rssKiB, sleep, spawnHelper } from "./bench_util.ts";
import { bundleInto, startInstance } from "../tests/harness.ts";

/** What a bare server loads before idling, for the by-module figures: label → modules (see rss_probe.ts). */
const MODULE_SETS: ReadonlyArray<readonly [string, readonly string[]]> = [
  ["nothing (the floor's bare server)", []],
  ["node:util (parseArgs, mandated)", ["node:util"]],
  ["@logtape/logtape (the logger, mandated; its npm loading included)", ["npm:@logtape/logtape"]],
  ["the worker's module graph", ["main.ts", "roles/worker.ts"]],
  ["the dispatcher's module graph", ["main.ts", "roles/dispatcher.ts"]],
  ["the watchdog's module graph", ["main.ts", "roles/watchdog.ts"]],
];

/** Idle RSS (KiB) of a bare server after loading `modules`: the median of `runs` fresh processes. */
async function probeRss(modules: readonly string[], runs: number): Promise<number> {
  const kib: number[] = [];
  for (let i = 0; i < runs; i++) {
    const p = await spawnHelper("rss_probe.ts", [...modules], [
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-ffi",
    ]);
    kib.push(Number(p.firstLine.trim()));
    await p.stop();
  }
  return kib.sort((a, b) => a - b)[Math.floor(kib.length / 2)]!;
}

/** The by-module figures: what loading each module set costs a bare server, idle. */
export async function memoryByModule(
  runs: number,
): Promise<{ figures: Figure[]; raw: Record<string, number> }> {
  const raw: Record<string, number> = {};
  for (const [label, modules] of MODULE_SETS) raw[label] = await probeRss(modules, runs);
  const bare = raw[MODULE_SETS[0]![0]]!;
  const figures = MODULE_SETS.slice(1).map(([label]) =>
    figure({
      part: "Memory",
      name: `by module: a bare server that loads ${label}, idle`,
      value: raw[label]! / 1024,
      unit: "MiB",
      reference: { name: "the same bare server loading nothing", value: bare / 1024 },
      note: `median of ${runs} processes; the difference is what loading it costs before any work`,
    })
  );
  return { figures, raw };
}

type Roles = Record<"watchdog" | "dispatcher" | "worker" | "floor", number>;

function sample(pids: Record<keyof Roles, number[]>): Roles {
  const max = (ps: number[]) => Math.max(0, ...ps.map((p) => rssKiB(p) ?? 0));
  return {
    watchdog: max(pids.watchdog),
    dispatcher: max(pids.dispatcher),
    worker: max(pids.worker),
    floor: max(pids.floor),
  };
}

/** Runs part 4 on a running instance (its segment) and floor server. */
export async function benchMemory(
  seg: Segment,
  ports: FlowPorts,
  floorPid: number,
  opts: { durationMs: number; clients: number },
): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  const pids = {
    watchdog: [seg.header("watchdog_pid")],
    dispatcher: [seg.slot(0).load("pid")],
    worker: Array.from({ length: seg.slotCount - 1 }, (_, i) => seg.slot(i + 1).load("pid")),
    floor: [floorPid],
  };
  await sleep(1_000); // let the last load's garbage go
  const idle = sample(pids);
  const peak: Roles = { ...idle };
  const track = (s: Roles) => {
    for (const k of Object.keys(peak) as (keyof Roles)[]) peak[k] = Math.max(peak[k], s[k]);
  };
  const under = async (kind: "oneshot" | "floor") => {
    let running = true;
    const sampler = (async () => {
      while (running) {
        track(sample(pids));
        await sleep(50);
      }
    })();
    await runLoad({ clients: opts.clients, durationMs: opts.durationMs, open: clientOf(kind, ports) });
    running = false;
    await sampler;
  };
  await under("oneshot");
  await under("floor");
  const figures: Figure[] = [];
  for (const role of ["watchdog", "dispatcher", "worker"] as const) {
    const load = `under load (${opts.clients} clients, peak)`;
    for (const [when, values] of [["idle", idle], [load, peak]] as const) {
      figures.push(figure({
        part: "Memory",
        name: `${role} RSS ${when}${role === "worker" ? " (largest worker)" : ""}`,
        value: values[role] / 1024,
        unit: "MiB",
        reference: {
          name: `floor server RSS ${when === "idle" ? "idle" : "under the same load"}`,
          value: values.floor / 1024,
        },
        target: { on: "ratio", op: "<=", limit: 1.2 },
      }));
    }
  }
  return { figures, raw: { idle_kib: idle, peak_under_load_kib: peak, pids } };
}

/** One instance's start (spawn until its ready line, ms) and idle RSS per role (KiB, 2 s after ready). */
async function startAndIdle(main: string | undefined): Promise<{ startMs: number; rss: Roles }> {
  const t0 = performance.now();
  const inst = await startInstance({ workers: 2, flags: ["--log-level=warning"], main });
  const startMs = performance.now() - t0;
  try {
    await sleep(2_000);
    const s = await inst.status();
    const pids = {
      watchdog: [inst.pid],
      dispatcher: [s.dispatcher.pid],
      worker: s.workers.map((w) => w.pid),
      floor: [],
    };
    return { startMs, rss: sample(pids) };
  } finally {
    await inst.stop();
  }
}

/**
 * The roles run from the bundle (`deno task bundle`) against the same roles run
 * from main.ts: idle RSS per role and an instance's start until ready, median
 * of `runs` instances of each, started alternately.
 */
export async function benchBundle(
  runs: number,
  floorIdleKiB: number,
): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  const dir = Deno.makeTempDirSync({ prefix: "osps-bench-bundle-" });
  try {
    const { main } = await bundleInto(`${dir}/bundle`);
    const source: Array<{ startMs: number; rss: Roles }> = [], bundled: typeof source = [];
    for (let i = 0; i < runs; i++) {
      source.push(await startAndIdle(undefined));
      bundled.push(await startAndIdle(main));
    }
    const note = `median of ${runs} instances each, started alternately; idle 2 s after ready`;
    const figures: Figure[] = (["watchdog", "dispatcher", "worker"] as const).map((role) => {
      const kib = median(bundled.map((r) => r.rss[role]));
      return figure({
        part: "Memory",
        name: `${role} RSS idle, run from the bundle (deno task bundle)${
          role === "worker" ? " (largest worker)" : ""
        }`,
        value: kib / 1024,
        unit: "MiB",
        reference: {
          name: "the same role run from main.ts",
          value: median(source.map((r) => r.rss[role])) / 1024,
        },
        note: `${(kib / floorIdleKiB).toFixed(2)}× the floor server idle; ${note}`,
      });
    });
    figures.push(figure({
      part: "Memory",
      name: "instance start until ready (watchdog, dispatcher, 2 workers), from the bundle",
      value: median(bundled.map((r) => r.startMs)),
      unit: "ms",
      reference: { name: "the same from main.ts", value: median(source.map((r) => r.startMs)) },
      note,
    }));
    return { figures, raw: { source, bundled } };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
