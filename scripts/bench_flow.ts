/**
 * Part 2 of the benchmark suite: the full client flow (dispatcher, ticket,
 * worker, answer) at several client counts, one-shot and session mode,
 * against the floor: `scripts/tcp_floor.ts` answering the same request on one
 * direct connection. Every load runs through `runLoad` from `roles/bench.ts`,
 * the loop `osps bench` uses.
 * @module
 */
import { type LoadClient, type LoadResult, ospsClient, runLoad } from "../roles/bench.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import { checkGreeting, formatRun, parseReply } from "../mod/net/protocol.ts";
import { ServiceError } from "../mod/errors.ts";
import { percentile } from "../mod/client/latency_stats.ts";
import { cpuMs, type Figure, figure, latencyJson } from "./bench_util.ts";

/** The request every load sends. */
export const REQUEST = { type: "echo", arg: "bench" } as const;

/** Kinds of load in this part. */
export type FlowKind = "floor" | "oneshot" | "session";

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
export function clientOf(kind: FlowKind, ports: { osps: number; floor: number }): () => LoadClient {
  return kind === "floor"
    ? () => floorClient(ports.floor)
    : () => ospsClient("127.0.0.1", ports.osps, kind, REQUEST.type, REQUEST.arg);
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
  /** CPU time per successful request, µs: the servers (osps: every role; floor: its server) and the load generator. */
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

/** Runs part 2. Kinds are interleaved per client count so drift hits them alike. */
export async function benchFlow(
  ports: { osps: number; floor: number },
  pids: { osps: number[]; floor: number },
  opts: { clients: number[]; durationMs: number; warmupMs: number },
): Promise<{ figures: Figure[]; runs: FlowRun[] }> {
  const runs: FlowRun[] = [];
  const cpu = (ps: number[]) => ps.reduce((t, p) => t + cpuMs(p), 0);
  for (const clients of opts.clients) {
    for (const kind of ["floor", "oneshot", "session"] as const) {
      const open = clientOf(kind, ports);
      const servers = kind === "floor" ? [pids.floor] : pids.osps;
      await runLoad({ clients, durationMs: opts.warmupMs, open });
      const server0 = cpu(servers), client0 = cpuMs(Deno.pid);
      const r = await runLoad({ clients, durationMs: opts.durationMs, open });
      runs.push(toRun(kind, r, { server: cpu(servers) - server0, client: cpuMs(Deno.pid) - client0 }));
    }
  }
  const figures: Figure[] = [];
  const find = (kind: FlowKind, c: number) => runs.find((r) => r.kind === kind && r.clients === c)!;
  for (const kind of ["oneshot", "session"] as const) {
    const label = kind === "oneshot" ? "one-shot" : "session";
    for (const c of opts.clients) {
      const o = find(kind, c), f = find("floor", c);
      figures.push(
        figure({
          part: "Full cycle",
          name: `${label}, ${c} client${c > 1 ? "s" : ""}: p50`,
          value: o.latency_ms.p50,
          unit: "ms",
          reference: { name: "floor p50", value: f.latency_ms.p50 },
          target: { on: "ratio", op: "<=", limit: 2.0 },
        }),
        figure({
          part: "Full cycle",
          name: `${label}, ${c} client${c > 1 ? "s" : ""}: p99`,
          value: o.latency_ms.p99,
          unit: "ms",
          reference: { name: "floor p99", value: f.latency_ms.p99 },
        }),
        figure({
          part: "Full cycle",
          name: `${label}, ${c} client${c > 1 ? "s" : ""}: throughput`,
          value: o.throughput_rps,
          unit: "req/s",
          reference: { name: "floor req/s", value: f.throughput_rps },
          ...(c === 16 ? { target: { on: "ratio", op: ">=", limit: 0.5 } as const } : {}),
        }),
      );
    }
  }
  // Why throughput is what it is: CPU spent per request, on a machine where CPU is the limit.
  const c = opts.clients.includes(16) ? 16 : opts.clients[opts.clients.length - 1]!;
  for (const kind of ["oneshot", "session"] as const) {
    const o = find(kind, c), f = find("floor", c);
    figures.push(
      figure({
        part: "Full cycle",
        name: `${
          kind === "oneshot" ? "one-shot" : "session"
        }, ${c} clients: server CPU per request (all roles)`,
        value: o.cpu_us_per_request.server,
        unit: "µs",
        reference: { name: "floor server CPU per request", value: f.cpu_us_per_request.server },
      }),
      figure({
        part: "Full cycle",
        name: `${kind === "oneshot" ? "one-shot" : "session"}, ${c} clients: client CPU per request`,
        value: o.cpu_us_per_request.client,
        unit: "µs",
        reference: { name: "floor client CPU per request", value: f.cpu_us_per_request.client },
      }),
    );
  }
  return { figures, runs };
}
