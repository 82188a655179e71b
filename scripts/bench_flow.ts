/**
 * Part 2 of the benchmark suite: the full client flow (dispatcher, ticket,
 * worker, answer) at several client counts, one-shot and session mode,
 * against two references measured in the same run:
 * - the two-hop floor: `scripts/two_hop_floor.ts` answering every REQUEST
 *   with an ASSIGN to `scripts/tcp_floor.ts`, which answers the RUN: the same
 *   two connections per request as osps and nothing else (the seeds' design
 *   at its cheapest; the targets are set against it);
 * - the one-process floor: `tcp_floor.ts` answering the request on one direct
 *   connection (what the two hops themselves cost).
 * Every load runs through `runLoad` from `roles/bench.ts`, the loop `osps
 * bench` uses, with the same client code for osps and the two-hop floor.
 * @module
 */
import { type LoadClient, type LoadResult, ospsClient, runLoad } from "../roles/bench.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import { checkGreeting, formatRun, parseReply } from "../mod/net/protocol.ts";
import { ServiceError } from "../mod/errors.ts";
import { percentile } from "../mod/client/latency_stats.ts";
import { cpuMs, type Figure, figure, latencyJson, median } from "./bench_util.ts";

/** The request every load sends. */
export const REQUEST = { type: "echo", arg: "bench" } as const;

/** Kinds of load in this part: the one-process floor, the two-hop floor, osps one-shot and session. */
export type FlowKind = "floor" | "twohop" | "oneshot" | "session";

/** The ports of what is measured: osps's dispatcher, the one-process floor, the two-hop floor's dispatcher. */
export interface FlowPorts {
  readonly osps: number;
  readonly floor: number;
  readonly twohop: number;
}

/** A client of the floor server: one direct connection per request, pipelined like `Session`. */
export function floorClient(port: number): LoadClient {
  const run = formatRun("0".repeat(32), REQUEST.type, REQUEST.arg);
  return {
    async request() {
      const conn = await LineConn.connect("127.0.0.1", port);
      try {
        await conn.writeLine(run);
        checkGreeting(parseReply((await conn.readLine(30_000)) ?? "closed"));
        const reply = parseReply((await conn.readLine(30_000)) ?? "closed");
        if (reply.code >= 400) throw new ServiceError(`floor: ${reply.code} ${reply.text}`, reply.code);
      } finally {
        conn.close();
      }
    },
    close() {},
  };
}

/** Opens a load client of `kind`. */
export function clientOf(kind: FlowKind, ports: FlowPorts): () => LoadClient {
  if (kind === "floor") return () => floorClient(ports.floor);
  if (kind === "twohop") {
    return () => ospsClient("127.0.0.1", ports.twohop, "oneshot", REQUEST.type, REQUEST.arg);
  }
  return () => ospsClient("127.0.0.1", ports.osps, kind, REQUEST.type, REQUEST.arg);
}

/** Quantiles stored for the chart: 1 … 99 and 99.9. */
const QUANTILES = [...Array.from({ length: 99 }, (_, i) => i + 1), 99.9];

/** One measured load, as stored in results.json. */
export interface FlowRun {
  readonly kind: FlowKind;
  readonly clients: number;
  readonly sent: number;
  readonly ok: number;
  readonly errors: Record<string, number>;
  readonly throughput_rps: number;
  readonly latency_ms: ReturnType<typeof latencyJson>;
  /** CPU time per successful request, µs: the servers (osps: every role; a floor: its processes) and the load generator. */
  readonly cpu_us_per_request: { readonly server: number; readonly client: number };
  /** Latency (ms) at each of QUANTILES, for the chart. */
  readonly cdf: { readonly q: number; readonly ms: number }[];
}

function toRun(kind: FlowKind, r: LoadResult, cpu: { server: number; client: number }): FlowRun {
  const sorted = Float64Array.from(r.samples).sort();
  const per = (ms: number) => r.ok ? Math.round((ms * 1000) / r.ok) : 0;
  return {
    kind,
    cpu_us_per_request: { server: per(cpu.server), client: per(cpu.client) },
    clients: r.clients,
    sent: r.sent,
    ok: r.ok,
    errors: r.errors,
    throughput_rps: Math.round(r.throughputRps * 10) / 10,
    latency_ms: latencyJson(r.samples),
    cdf: QUANTILES.map((q) => ({ q, ms: Math.round(percentile(sorted, q) * 1000) / 1000 })),
  };
}

/** The processes whose CPU time counts as the server's, per kind. */
export interface FlowPids {
  readonly osps: number[];
  readonly floor: number;
  readonly twohop: number;
}

/** Runs part 2. Kinds are interleaved per client count so drift hits them alike. */
export async function benchFlow(
  ports: FlowPorts,
  pids: FlowPids,
  opts: { clients: number[]; durationMs: number; warmupMs: number },
): Promise<{ figures: Figure[]; runs: FlowRun[] }> {
  const runs: FlowRun[] = [];
  const serversOf: Record<FlowKind, number[]> = {
    floor: [pids.floor],
    twohop: [pids.twohop, pids.floor],
    oneshot: pids.osps,
    session: pids.osps,
  };
  for (const clients of opts.clients) {
    for (const kind of ["floor", "twohop", "oneshot", "session"] as const) {
      runs.push(await measure(kind, clients, clientOf(kind, ports), serversOf[kind], opts));
    }
  }
  return { figures: flowFigures(runs, opts.clients), runs };
}

/** One load of `kind` after a warm-up, with the CPU its servers and this process spent on it. */
async function measure(
  kind: FlowKind,
  clients: number,
  open: () => LoadClient,
  servers: number[],
  opts: { durationMs: number; warmupMs: number },
): Promise<FlowRun> {
  const cpu = (ps: number[]) => ps.reduce((t, p) => t + cpuMs(p), 0);
  await runLoad({ clients, durationMs: opts.warmupMs, open });
  const server0 = cpu(servers), client0 = cpuMs(Deno.pid);
  const r = await runLoad({ clients, durationMs: opts.durationMs, open });
  return toRun(kind, r, { server: cpu(servers) - server0, client: cpuMs(Deno.pid) - client0 });
}

/**
 * The design change that the one-shot misses point to, measured behind its flag: an instance with one worker
 * (`--workers 1`; it holds `--worker-concurrency` clients at once) against the two-hop floor, one-shot at
 * `clients`, the two alternated `rounds` times (medians). Two workers each see half the requests, so each wakes
 * for half as much work, and four busy processes on two cores switch more than three (docs/PERFORMANCE.md).
 */
export async function benchOneWorker(
  ports: FlowPorts,
  pids: FlowPids,
  opts: { clients: number[]; rounds: number; durationMs: number; warmupMs: number },
): Promise<{ figures: Figure[]; runs: FlowRun[] }> {
  const runs: FlowRun[] = [], figures: Figure[] = [];
  const note = `an instance with --workers 1 (default concurrency); median of ${opts.rounds} alternated runs`;
  for (const clients of opts.clients) {
    const mine: FlowRun[] = [];
    for (let i = 0; i < opts.rounds; i++) {
      mine.push(await measure("twohop", clients, clientOf("twohop", ports), [pids.twohop, pids.floor], opts));
      mine.push(await measure("oneshot", clients, clientOf("oneshot", ports), pids.osps, opts));
    }
    runs.push(...mine);
    const med = (kind: FlowKind, f: (r: FlowRun) => number) =>
      median(mine.filter((r) => r.kind === kind).map(f));
    const name = `one-shot, ${clients} client${clients > 1 ? "s" : ""}, one worker (--workers 1)`;
    figures.push(figure({
      part: "Full cycle",
      name: `${name}: throughput`,
      value: med("oneshot", (r) => r.throughput_rps),
      unit: "req/s",
      reference: { name: "two-hop floor req/s", value: med("twohop", (r) => r.throughput_rps) },
      note,
    }));
    if (clients === 1) {
      figures.push(figure({
        part: "Full cycle",
        name: `${name}: p50`,
        value: med("oneshot", (r) => r.latency_ms.p50),
        unit: "ms",
        reference: { name: "two-hop floor p50", value: med("twohop", (r) => r.latency_ms.p50) },
        note,
      }));
    }
    if (clients !== 16) continue; // CPU per request is compared at 16 clients, as for the default instance
    figures.push(figure({
      part: "Full cycle",
      name: `${name}: server CPU per request (all roles)`,
      value: med("oneshot", (r) => r.cpu_us_per_request.server),
      unit: "µs",
      reference: {
        name: "two-hop floor server CPU per request",
        value: med("twohop", (r) => r.cpu_us_per_request.server),
      },
      note,
    }));
  }
  return { figures, runs };
}

/**
 * The figures of part 2, with the targets of issue 19 set against the two-hop floor: one-shot throughput at 16
 * and 64 clients ≥ 0.8×, session throughput at 16 clients ≥ 0.9×, one client's p50 ≤ 1.25×, server CPU per
 * request ≤ 1.5× (the other figures are shown for scale, without a target).
 */
export function flowFigures(runs: FlowRun[], clientCounts: number[]): Figure[] {
  const figures: Figure[] = [];
  const find = (kind: FlowKind, c: number) => runs.find((r) => r.kind === kind && r.clients === c)!;
  const plural = (c: number) => `${c} client${c > 1 ? "s" : ""}`;
  for (const kind of ["oneshot", "session"] as const) {
    const label = kind === "oneshot" ? "one-shot" : "session";
    for (const c of clientCounts) {
      const o = find(kind, c), two = find("twohop", c), one = find("floor", c);
      const p50Limit = kind === "oneshot" && c === 1 ? 1.25 : undefined;
      const rpsLimit = kind === "oneshot" && c > 1 ? 0.8 : kind === "session" && c === 16 ? 0.9 : undefined;
      figures.push(
        figure({
          part: "Full cycle",
          name: `${label}, ${plural(c)}: p50`,
          value: o.latency_ms.p50,
          unit: "ms",
          reference: { name: "two-hop floor p50", value: two.latency_ms.p50 },
          ...(p50Limit ? { target: { on: "ratio", op: "<=", limit: p50Limit } as const } : {}),
        }),
        figure({
          part: "Full cycle",
          name: `${label}, ${plural(c)}: p99`,
          value: o.latency_ms.p99,
          unit: "ms",
          reference: { name: "two-hop floor p99", value: two.latency_ms.p99 },
        }),
        figure({
          part: "Full cycle",
          name: `${label}, ${plural(c)}: throughput`,
          value: o.throughput_rps,
          unit: "req/s",
          reference: { name: "two-hop floor req/s", value: two.throughput_rps },
          ...(rpsLimit ? { target: { on: "ratio", op: ">=", limit: rpsLimit } as const } : {}),
        }),
      );
      if (kind === "oneshot") {
        figures.push(figure({
          part: "Full cycle",
          name: `two-hop floor, ${plural(c)}: throughput`,
          value: two.throughput_rps,
          unit: "req/s",
          reference: { name: "one-process floor req/s", value: one.throughput_rps },
        }));
      }
    }
  }
  // Why throughput is what it is: CPU spent per request, on a machine where CPU is the limit.
  const c = clientCounts.includes(16) ? 16 : clientCounts[clientCounts.length - 1]!;
  for (const kind of ["oneshot", "session"] as const) {
    const o = find(kind, c), two = find("twohop", c);
    const label = kind === "oneshot" ? "one-shot" : "session";
    figures.push(
      figure({
        part: "Full cycle",
        name: `${label}, ${c} clients: server CPU per request (all roles)`,
        value: o.cpu_us_per_request.server,
        unit: "µs",
        reference: { name: "two-hop floor server CPU per request", value: two.cpu_us_per_request.server },
        target: { on: "ratio", op: "<=", limit: 1.5 } as const,
      }),
      figure({
        part: "Full cycle",
        name: `${label}, ${c} clients: client CPU per request`,
        value: o.cpu_us_per_request.client,
        unit: "µs",
        reference: { name: "two-hop floor client CPU per request", value: two.cpu_us_per_request.client },
      }),
    );
  }
  return figures;
}
