/**
 * `deno task bench [--quick] [--parts ipc,flow,memory,recovery,chat,chat-scale,hosts,lines,http] [--out DIR]`: the
 * benchmark suite. Starts what it needs, measures, stops everything, and
 * writes `bench/results.json`, `bench/RESULTS.md` and `bench/latency.svg`.
 * Every figure is set against a reference measured in the same run.
 *
 * chat-scale runs only when named (`--parts chat-scale`: 2,000 and 10,000
 * clients in one channel take minutes).
 *
 * `--quick` runs the parts briefly (CI: it must finish and write valid
 * results; the figures are not meant to be compared).
 * @module
 */
import { parseArgs } from "node:util";
import { instancePaths } from "../mod/cli/config.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { startInstance } from "../tests/harness.ts";
import { benchIpc } from "./bench_ipc.ts";
import { benchFlow, benchOneWorker, type FlowRun } from "./bench_flow.ts";
import { benchBundle, benchMemory, memoryByModule } from "./bench_memory.ts";
import { benchRecovery } from "./bench_recovery.ts";
import { benchChat } from "./bench_chat.ts";
import { benchChatScale } from "./bench_chat_scale.ts";
import { benchHosts } from "./bench_hosts.ts";
import { benchLines } from "./bench_lines.ts";
import { benchHttp } from "./bench_http.ts";
import { latencySvg, type Results, resultsMarkdown } from "./bench_report.ts";
import { type Figure, machine, ROOT, spawnHelper } from "./bench_util.ts";

const PARTS = ["ipc", "flow", "memory", "recovery", "chat", "chat-scale", "hosts", "lines", "http"] as const;
type Part = (typeof PARTS)[number];
/** chat-scale (10,000 clients, minutes) runs only when asked for by name. */
const DEFAULT_PARTS = PARTS.filter((p) => p !== "chat-scale");

/** Sizes of each part, full and quick. */
function plan(quick: boolean) {
  return quick
    ? {
      ipc: { n: 2_000, warmup: 200, rounds: 1 },
      flow: { clients: [1, 16, 64], durationMs: 700, warmupMs: 200 },
      oneWorker: { clients: [1, 16, 64], rounds: 1, durationMs: 700, warmupMs: 200 },
      memory: { durationMs: 700, clients: 16, probeRuns: 1 },
      recovery: { kills: 1, bareStarts: 2 },
      chat: { members: [2, 50], rounds: 20, burst: 200, window: 50 },
      chatScale: { sizes: [200], rounds: 5 },
      hosts: { seconds: 1, clients: [1, 16] },
      lines: { rounds: 1 },
      http: { clients: [1, 16, 64], seconds: 1, rounds: 1, messages: 20, probeWatchMs: 2_000 },
    }
    : {
      ipc: { n: 20_000, warmup: 1_000, rounds: 3 },
      flow: { clients: [1, 16, 64], durationMs: 5_000, warmupMs: 1_000 },
      oneWorker: { clients: [1, 16, 64], rounds: 3, durationMs: 3_000, warmupMs: 1_000 },
      memory: { durationMs: 3_000, clients: 16, probeRuns: 3 },
      recovery: { kills: 3, bareStarts: 5 },
      chat: { members: [2, 50], rounds: 500, burst: 5_000, window: 100 },
      chatScale: { sizes: [2_000, 10_000], rounds: 30 },
      hosts: { seconds: 4, clients: [1, 16] },
      lines: { rounds: 5 },
      http: { clients: [1, 16, 64], seconds: 4, rounds: 3, messages: 300, probeWatchMs: 12_000 },
    };
}

function say(line: string): void {
  console.error(`bench: ${line}`);
}

/** Parts 2 and 4 share one instance and one floor server. */
async function flowAndMemory(
  p: ReturnType<typeof plan>,
  parts: Set<Part>,
): Promise<{ figures: Figure[]; flow: FlowRun[]; raw: Record<string, unknown> }> {
  const floor = await spawnHelper("tcp_floor.ts", ["0"], ["--allow-net=127.0.0.1"]);
  const floorPort = Number(floor.firstLine.split(" ")[1]);
  const twohop = await spawnHelper("two_hop_floor.ts", [String(floorPort)], ["--allow-net=127.0.0.1"]);
  try {
    // Default flags (two workers, the default concurrency and limits); only the log is quieter.
    const inst = await startInstance({ workers: 2, flags: ["--log-level=warning"] });
    const seg = Segment.open(instancePaths(inst.runDir).shm);
    try {
      const ports = { osps: inst.port, floor: floorPort, twohop: Number(twohop.firstLine.split(" ")[1]) };
      const figures: Figure[] = [];
      const raw: Record<string, unknown> = {};
      let flow: FlowRun[] = [];
      if (parts.has("memory")) {
        say("memory: RSS of each role idle and under load, and of the floor server");
        const m = await benchMemory(seg, ports, floor.pid, p.memory);
        const byModule = await memoryByModule(p.memory.probeRuns);
        const bundle = await benchBundle(p.memory.probeRuns, (m.raw["idle_kib"] as { floor: number }).floor);
        figures.push(...m.figures, ...byModule.figures, ...bundle.figures);
        raw["memory"] = { ...m.raw, by_module_kib: byModule.raw, bundle: bundle.raw };
      }
      if (parts.has("flow")) {
        say(
          `full cycle: ${
            p.flow.clients.join(", ")
          } clients, one-process floor / two-hop floor / one-shot / session`,
        );
        const roles = [
          seg.header("watchdog_pid"),
          ...Array.from({ length: seg.slotCount }, (_, i) => seg.slot(i).load("pid")),
        ];
        const f = await benchFlow(ports, { osps: roles, floor: floor.pid, twohop: twohop.pid }, p.flow);
        say(
          `full cycle: one-shot at ${p.oneWorker.clients} clients with --workers 1, against the two-hop floor`,
        );
        const one = await startInstance({ workers: 1, flags: ["--log-level=warning"] });
        try {
          const s = await one.status();
          const o = await benchOneWorker(
            { ...ports, osps: one.port },
            {
              osps: [one.pid, s.dispatcher.pid, ...s.workers.map((w) => w.pid)],
              floor: floor.pid,
              twohop: twohop.pid,
            },
            p.oneWorker,
          );
          figures.unshift(...f.figures, ...o.figures);
          raw["one_worker"] = o.runs;
        } finally {
          await one.stop();
        }
        flow = f.runs;
      }
      return { figures, flow, raw };
    } finally {
      seg.close();
      await inst.stop();
    }
  } finally {
    await twohop.stop();
    await floor.stop();
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      parts: { type: "string", default: DEFAULT_PARTS.join(",") },
      out: { type: "string", default: `${ROOT}bench` },
    },
  });
  const parts = new Set(values.parts.split(",") as Part[]);
  for (const x of parts) {
    if (!PARTS.includes(x)) throw new Error(`unknown part "${x}"; known: ${PARTS.join(", ")}`);
  }
  const quick = values.quick;
  const p = plan(quick);
  const started = new Date();
  const t0 = performance.now();
  const loadStart = machine().loadavg;
  const figures: Figure[] = [];
  const raw: Record<string, unknown> = {};
  let flow: FlowRun[] = [];

  if (parts.has("ipc")) {
    say("IPC: doorbell round trip vs C FIFO ping-pong vs Deno TCP");
    const r = await benchIpc(p.ipc);
    figures.push(...r.figures);
    raw["ipc"] = r.raw;
  }
  if (parts.has("flow") || parts.has("memory")) {
    const r = await flowAndMemory(p, parts);
    figures.push(...r.figures);
    flow = r.flow;
    Object.assign(raw, r.raw);
  }
  if (parts.has("recovery")) {
    say("recovery: kill -9 worker / SIGSTOP worker / kill -9 dispatcher / kill -9 watchdog");
    const r = await benchRecovery(p.recovery);
    figures.push(...r.figures);
    raw["recovery"] = r.raw;
  }

  if (parts.has("chat")) {
    say(`chat: one sender, ${p.chat.members.join(" and ")} members, osps vs ngircd`);
    const r = await benchChat(p.chat);
    figures.push(...r.figures);
    raw["chat"] = r.runs;
  }

  if (parts.has("chat-scale")) {
    say(`chat-scale: ${p.chatScale.sizes.join(" and ")} clients in one channel, osps vs ngircd`);
    const r = await benchChatScale({ ...p.chatScale, say });
    figures.push(...r.figures);
    raw["chat_scale"] = r.runs;
  }

  if (parts.has("hosts")) {
    say("hosts: full cycle through a remote worker vs a local one, link attach times (network namespaces)");
    const r = await benchHosts(p.hosts);
    if (r.raw["skipped"]) say(`hosts: skipped: ${r.raw["skipped"]}`);
    figures.push(...r.figures);
    raw["hosts"] = r.raw;
  }

  if (parts.has("lines")) {
    say("lines: the worst line of each shape per KiB, parse only and end to end, on both roles");
    const r = await benchLines(p.lines);
    figures.push(...r.figures);
    raw["lines"] = r.raw;
  }

  if (parts.has("http")) {
    say(
      "http: POST /v1/requests/echo vs deno serve --parallel and Deno.serve; chat post → event stream / IRC",
    );
    const r = await benchHttp(p.http);
    figures.push(...r.figures);
    raw["http"] = r.raw;
  }

  const results: Results = {
    suite: "osps bench",
    quick,
    started_at: started.toISOString(),
    duration_s: Math.round((performance.now() - t0) / 100) / 10,
    machine: machine(),
    load: { start: loadStart, end: machine().loadavg },
    figures,
    flow,
    raw,
  };
  const dir = values.out;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/results.json`, JSON.stringify(results, null, 2) + "\n");
  await Deno.writeTextFile(`${dir}/RESULTS.md`, resultsMarkdown(results));
  if (flow.length) await Deno.writeTextFile(`${dir}/latency.svg`, latencySvg(flow));
  const targets = figures.filter((f) => f.met !== undefined);
  say(
    `done in ${results.duration_s} s: ${
      targets.filter((f) => f.met).length
    } of ${targets.length} targets met; ` +
      `wrote ${dir}/results.json, RESULTS.md${flow.length ? ", latency.svg" : ""}`,
  );
  return 0;
}

if (import.meta.main) {
  Deno.exitCode = await main();
}
