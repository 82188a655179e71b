/**
 * Part 4 of the benchmark suite: resident memory (VmRSS) of each role, idle
 * and under load, against the floor server (a plain Deno TCP server answering
 * the same requests) idle and under the same load.
 * @module
 */
import { runLoad } from "../roles/bench.ts";
import type { Segment } from "../mod/ipc/shm.ts";
import { clientOf, type FlowPorts } from "./bench_flow.ts";
import { type Figure, figure, rssKiB, sleep } from "./bench_util.ts";

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
