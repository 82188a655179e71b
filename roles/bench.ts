/**
 * `osps bench`: a load generator any user can point at a running instance.
 * C virtual clients run the full flow (dispatcher, ticket, worker, answer)
 * for a number of requests or seconds, then it reports throughput, latency
 * percentiles, errors by kind and a latency histogram, as text or JSON.
 *
 * The load loop ({@link runLoad}) takes any {@link LoadClient}, so the
 * benchmark suite drives its reference servers with the very same loop.
 * @module
 */
import type { FlagValues } from "../mod/cli/cli.ts";
import { ProtocolError, ServiceError, UsageError } from "../mod/errors.ts";
import { Session } from "../mod/client/session.ts";
import { dispatcherHosts, runScoped } from "../mod/client/scope.ts";
import { mayReach } from "../mod/client/reach.ts";
import {
  type Bucket,
  formatMs,
  LatencyRecorder,
  type LatencySummary,
  renderHistogram,
} from "../mod/client/latency_stats.ts";
import { Status } from "../mod/net/protocol.ts";
import { serviceNames, SERVICES } from "../mod/services/registry.ts";

/** Longest any single reply may take before the request counts as a timeout. */
const REPLY_TIMEOUT_MS = 30_000;
/** How often progress is drawn on a terminal. */
const PROGRESS_EVERY_MS = 250;

/** One virtual client of {@link runLoad}: sends one request per call. */
export interface LoadClient {
  /** Sends one request and resolves when its answer is in; throws on failure. */
  request(): Promise<void>;
  /** Releases what the client holds (connections). */
  close(): Promise<void> | void;
}

/** Progress of a running load, for a progress line. */
export interface LoadProgress {
  readonly ok: number;
  readonly failed: number;
  readonly elapsedMs: number;
}

/** Options of {@link runLoad}. Exactly one of `requests` and `durationMs` bounds the run. */
export interface LoadOptions {
  /** Concurrent virtual clients. */
  readonly clients: number;
  /** Total requests to send (shared by the clients). */
  readonly requests?: number;
  /** Or: send until this much time has passed. */
  readonly durationMs?: number;
  /** Makes one virtual client. */
  readonly open: () => LoadClient | Promise<LoadClient>;
  /** Called every {@link PROGRESS_EVERY_MS} while the load runs. */
  readonly onProgress?: (p: LoadProgress) => void;
}

/** What {@link runLoad} measured. */
export interface LoadResult {
  readonly clients: number;
  readonly sent: number;
  readonly ok: number;
  readonly failed: number;
  /** Failed requests by kind (see {@link errorKind}). */
  readonly errors: Record<string, number>;
  readonly elapsedMs: number;
  /** Successful requests per second over the whole run. */
  readonly throughputRps: number;
  /** Latency of successful requests. */
  readonly latency: LatencySummary;
  readonly histogram: Bucket[];
  /** Raw latencies of successful requests, in ms. */
  readonly samples: Float64Array;
}

/**
 * Names the kind of a failed request, for the error table: the status code
 * and what it means (`504 worker-lost`), `dispatcher-unreachable`, or the
 * error's class name for anything else.
 */
export function errorKind(err: unknown): string {
  if (err instanceof ServiceError) {
    if (err.status === 0) return "dispatcher-unreachable";
    if (err.status === Status.WORKER_LOST) {
      return err.message.startsWith("cannot reach worker") ? "504 worker-unreachable" : "504 worker-lost";
    }
  }
  if (err instanceof ProtocolError && err.status) {
    const name = Object.entries(Status).find(([, v]) => v === err.status)?.[0];
    return `${err.status} ${name ? name.toLowerCase().replaceAll("_", "-") : "error"}`;
  }
  return err instanceof Error ? err.name : "unknown";
}

/**
 * Runs `clients` virtual clients until `requests` were sent or `durationMs`
 * passed, and measures every request.
 * @example
 * ```ts
 * const r = await runLoad({ clients: 4, requests: 100, open: () => ({ request: async () => {}, close() {} }) });
 * console.log(r.throughputRps, r.latency.p99);
 * ```
 */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  if (opts.requests === undefined && opts.durationMs === undefined) {
    throw new UsageError("runLoad needs requests or durationMs");
  }
  const recorder = new LatencyRecorder();
  const errors: Record<string, number> = {};
  let sent = 0, failed = 0;
  const start = performance.now();
  const deadline = opts.durationMs === undefined ? Infinity : start + opts.durationMs;
  const more = () => opts.requests === undefined ? performance.now() < deadline : sent < opts.requests;
  const progress = opts.onProgress;
  const timer = progress &&
    setInterval(
      () => progress({ ok: recorder.count, failed, elapsedMs: performance.now() - start }),
      PROGRESS_EVERY_MS,
    );

  async function virtualClient(): Promise<void> {
    let client: LoadClient | undefined;
    try {
      while (more()) {
        sent++;
        const t0 = performance.now();
        try {
          client ??= await opts.open();
          await client.request();
          recorder.add(performance.now() - t0);
        } catch (err) {
          failed++;
          const kind = errorKind(err);
          errors[kind] = (errors[kind] ?? 0) + 1;
        }
      }
    } finally {
      await client?.close();
    }
  }

  const n = opts.requests === undefined ? opts.clients : Math.min(opts.clients, opts.requests);
  try {
    await Promise.all(Array.from({ length: n }, virtualClient));
  } finally {
    clearInterval(timer);
  }
  const elapsedMs = performance.now() - start;
  return {
    clients: n,
    sent,
    ok: recorder.count,
    failed,
    errors,
    elapsedMs,
    throughputRps: elapsedMs > 0 ? (recorder.count * 1000) / elapsedMs : 0,
    latency: recorder.summary(),
    histogram: recorder.histogram(),
    samples: recorder.samples().slice(),
  };
}

/** How `osps bench` uses the dispatcher. */
export type FlowMode = "oneshot" | "session";

/**
 * A virtual client of an osps instance. `oneshot`: a new dispatcher connection
 * per request, like `osps client`; `session`: one dispatcher connection reused
 * for every request, like `osps client --repeat` (reopened when it drops).
 */
export function ospsClient(
  host: string,
  port: number,
  mode: FlowMode,
  type: string,
  arg: string,
): LoadClient {
  let session: Session | undefined;
  const open = () => Session.open(host, port, { timeoutMs: REPLY_TIMEOUT_MS });
  if (mode === "oneshot") {
    return {
      async request() {
        const s = await open();
        try {
          await s.request(type, arg);
        } finally {
          await s.close();
        }
      },
      close() {},
    };
  }
  return {
    async request() {
      session ??= await open();
      try {
        await session.request(type, arg);
      } catch (err) {
        // The session may be unusable (dropped, timed out mid-line): start a new one next time.
        session.abort();
        session = undefined;
        throw err;
      }
    },
    async close() {
      await session?.close().catch(() => {});
      session = undefined;
    },
  };
}

/** The report `osps bench --json` prints. */
export interface BenchReport {
  readonly host: string;
  readonly port: number;
  readonly type: string;
  readonly arg: string;
  readonly mode: FlowMode;
  readonly clients: number;
  readonly elapsed_s: number;
  readonly requests: { readonly sent: number; readonly ok: number; readonly failed: number };
  readonly errors: Record<string, number>;
  readonly throughput_rps: number;
  readonly latency_ms: LatencySummary;
  /** Buckets of successful latencies; `le_ms` null is the overflow bucket. */
  readonly histogram: Bucket[];
}

/** Turns a {@link LoadResult} into the JSON report. */
export function benchReport(
  r: LoadResult,
  where: { host: string; port: number; type: string; arg: string; mode: FlowMode },
): BenchReport {
  return {
    ...where,
    clients: r.clients,
    elapsed_s: round(r.elapsedMs / 1000),
    requests: { sent: r.sent, ok: r.ok, failed: r.failed },
    errors: r.errors,
    throughput_rps: round(r.throughputRps),
    latency_ms: Object.fromEntries(
      Object.entries(r.latency).map(([k, v]) => [k, k === "count" ? v : round(v)]),
    ) as unknown as LatencySummary,
    histogram: r.histogram,
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

/** The report as text for people. */
export function reportText(b: BenchReport): string {
  const l = b.latency_ms;
  const errs = Object.entries(b.errors).sort((x, y) => y[1] - x[1]);
  return [
    `osps bench: ${b.type}${b.arg ? ` ${b.arg}` : ""} against ${b.host}:${b.port}, ${b.clients} clients, ${
      b.mode === "oneshot" ? "one dispatcher connection per request" : "one dispatcher session per client"
    }`,
    `requests    ${b.requests.sent} sent, ${b.requests.ok} ok, ${b.requests.failed} failed in ${b.elapsed_s} s`,
    `throughput  ${b.throughput_rps.toFixed(1)} req/s`,
    `latency     p50 ${formatMs(l.p50)}   p90 ${formatMs(l.p90)}   p99 ${formatMs(l.p99)}   max ${
      formatMs(l.max)
    }`,
    `errors      ${errs.length ? errs.map(([k, n]) => `${k}: ${n}`).join(", ") : "none"}`,
    ...(b.histogram.length ? ["latency histogram", renderHistogram(b.histogram)] : []),
  ].join("\n");
}

const encoder = new TextEncoder();

/** Runs `osps bench`. Returns the exit code: 0 when at least one request succeeded. */
export async function runBench(flags: FlagValues, positionals: string[]): Promise<number> {
  const [type = "echo", ...rest] = positionals;
  if (!Object.hasOwn(SERVICES, type)) {
    throw new UsageError(`unknown request type "${type}"; known: ${serviceNames().join(", ")}`);
  }
  const arg = positionals.length ? rest.join(" ") : "bench";
  const host = String(flags["host"]);
  const port = Number(flags["port"]);
  const mode: FlowMode = flags["session"] ? "session" : "oneshot";
  const requests = Number(flags["requests"]);
  const rerun = await runScoped(host, port);
  if (rerun !== null) return rerun;
  // Fail fast and clearly when nothing is there, rather than report N failures; and every worker host in reach.
  const hosts = await dispatcherHosts(host, port);
  if (!hosts.every((h) => mayReach(h))) return (await runScoped(host, port, true)) ?? 1;

  const tty = Deno.stderr.isTerminal();
  const result = await runLoad({
    clients: Number(flags["clients"]),
    ...(requests > 0 ? { requests } : { durationMs: Number(flags["duration"]) * 1000 }),
    open: () => ospsClient(host, port, mode, type, arg),
    ...(tty
      ? {
        onProgress: (p: LoadProgress) =>
          Deno.stderr.writeSync(encoder.encode(
            `\r\x1b[K${(p.elapsedMs / 1000).toFixed(1)} s  ${p.ok} ok  ${p.failed} failed  ${
              Math.round((p.ok * 1000) / Math.max(1, p.elapsedMs))
            } req/s`,
          )),
      }
      : {}),
  });
  if (tty) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  const report = benchReport(result, { host, port, type, arg, mode });
  console.log(flags["json"] ? JSON.stringify(report) : reportText(report));
  if (result.ok === 0) {
    throw new ServiceError(`no request succeeded (${result.failed} failed)`, Status.BUSY);
  }
  return 0;
}
