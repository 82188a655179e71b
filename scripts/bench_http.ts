/**
 * The benchmark suite's HTTP part. `POST /v1/requests/echo` at 1, 16 and 64
 * keep-alive clients against what a Deno user would pick instead, in the
 * same run, interleaved round by round: `deno serve --parallel` with as many
 * workers answering the same text, and a plain `Deno.serve` in one process.
 * Load from Debian's `wrk` (C, keeps its connections); where it is missing,
 * from `scripts/http_load.ts` (the same measure, in Deno). Then the chat:
 * a message posted over HTTP until an event stream reader and an IRC client
 * have it (latency p50/p99), and what `Deno.serve`'s own parser does with
 * hostile input (why osps reads HTTP itself).
 * @module
 */
import { startInstance } from "../tests/harness.ts";
import { type Figure, figure, listening, ROOT, sleep, spawnHelper } from "./bench_util.ts";
import { benchHttpChat, probeDenoServe } from "./bench_http_chat.ts";

/** Sizes of the part. */
export interface HttpPlan {
  readonly clients: readonly number[];
  readonly seconds: number;
  readonly rounds: number;
  /** Chat messages timed (one at a time). */
  readonly messages: number;
  /** How long a hostile connection to Deno.serve is watched for an answer. */
  readonly probeWatchMs: number;
}

/** One load run: throughput and latency percentiles, ms. */
export interface LoadRun {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
}

const BODY = "hello";

function wrkPath(): string | null {
  for (const p of ["/usr/bin/wrk", "/usr/local/bin/wrk"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return null;
}

function ms(text: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === "us" ? v / 1000 : m[2] === "s" ? v * 1000 : v;
}

/** Runs wrk (or the Deno load client) against `url` with `clients` connections for `seconds`. */
export async function load(url: string, clients: number, seconds: number): Promise<LoadRun> {
  const wrk = wrkPath();
  if (wrk) {
    const script = await Deno.makeTempFile({ suffix: ".lua" });
    await Deno.writeTextFile(
      script,
      `wrk.method = "POST"\nwrk.body = "${BODY}"\nwrk.headers["Content-Type"] = "text/plain"\n`,
    );
    try {
      const out = await new Deno.Command(wrk, {
        args: ["-t1", `-c${clients}`, `-d${seconds}s`, "--latency", "-s", script, url],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      const pct = (p: string) => ms(new RegExp(`^\\s*${p}%\\s+(\\S+)`, "m").exec(text)?.[1] ?? "");
      const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0) +
        [...text.matchAll(/(connect|read|write|timeout) (\d+)/g)].reduce((n, m) => n + Number(m[2]), 0);
      return {
        rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? 0),
        p50: pct("50"),
        p99: pct("99"),
        errors,
      };
    } finally {
      await Deno.remove(script);
    }
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-net=127.0.0.1",
      `${ROOT}scripts/http_load.ts`,
      url,
      String(clients),
      String(seconds),
      BODY,
    ],
    stdout: "piped",
  }).output();
  return JSON.parse(new TextDecoder().decode(out.stdout)) as LoadRun;
}

function medianRun(runs: readonly LoadRun[]): LoadRun {
  const mid = <K extends keyof LoadRun>(k: K) => {
    const xs = runs.map((r) => r[k]).sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)]!;
  };
  return {
    rps: mid("rps"),
    p50: mid("p50"),
    p99: mid("p99"),
    errors: runs.reduce((n, r) => n + r.errors, 0),
  };
}

/** The part: figures and raw runs. */
export async function benchHttp(p: HttpPlan): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  const workers = 2;
  const dataDir = Deno.makeTempDirSync({ prefix: "osps-bench-http-" });
  const [httpPort, ircPort] = [freePort(), freePort()];
  const inst = await startInstance({
    workers,
    flags: [
      `--http-port=${httpPort}`,
      `--irc-port=${ircPort}`,
      `--data-dir=${dataDir}`,
      "--irc-flood-rate=0",
      "--rate-per-addr=0",
      "--max-conns-per-addr=100000",
      "--log-level=warning",
    ],
  });
  const parallel = await spawnServe(["serve", "--parallel"], workers);
  const single = await spawnHelper("http_floor.ts", ["0"], ["--allow-net=127.0.0.1"]);
  const figures: Figure[] = [];
  const raw: Record<string, unknown> = { load_client: wrkPath() ? "wrk" : "scripts/http_load.ts" };
  try {
    const urls = {
      osps: `http://127.0.0.1:${httpPort}/v1/requests/echo`,
      parallel: `http://127.0.0.1:${parallel.port}/v1/requests/echo`,
      single: `http://127.0.0.1:${single.firstLine.split(" ")[1]}/v1/requests/echo`,
    };
    for (const url of Object.values(urls)) await load(url, 4, 1); // warm up: JIT, connections
    for (const clients of p.clients) {
      const runs: Record<keyof typeof urls, LoadRun[]> = { osps: [], parallel: [], single: [] };
      for (let r = 0; r < p.rounds; r++) {
        for (const k of Object.keys(urls) as Array<keyof typeof urls>) {
          runs[k].push(await load(urls[k], clients, p.seconds));
        }
      }
      const [o, d, s] = [medianRun(runs.osps), medianRun(runs.parallel), medianRun(runs.single)];
      raw[`c${clients}`] = { osps: runs.osps, deno_serve_parallel: runs.parallel, deno_serve: runs.single };
      const note = `median of ${p.rounds} interleaved runs of ${p.seconds} s; errors osps ${o.errors}, ` +
        `deno serve ${d.errors}`;
      figures.push(
        figure({
          part: "HTTP",
          name: `POST /v1/requests/echo, ${clients} keep-alive client${clients > 1 ? "s" : ""}: throughput`,
          value: Math.round(o.rps),
          unit: "req/s",
          reference: { name: `deno serve --parallel (${workers} workers)`, value: Math.round(d.rps) },
          target: { on: "ratio", op: ">=", limit: 0.7 },
          note,
        }),
        figure({
          part: "HTTP",
          name: `POST /v1/requests/echo, ${clients} client${clients > 1 ? "s" : ""}: p50`,
          value: round3(o.p50),
          unit: "ms",
          reference: { name: "deno serve --parallel p50", value: round3(d.p50) },
          target: { on: "ratio", op: "<=", limit: 1.5 },
        }),
        figure({
          part: "HTTP",
          name: `POST /v1/requests/echo, ${clients} client${clients > 1 ? "s" : ""}: p99`,
          value: round3(o.p99),
          unit: "ms",
          reference: { name: "deno serve --parallel p99", value: round3(d.p99) },
        }),
        figure({
          part: "HTTP",
          name: `plain Deno.serve in one process, ${clients} client${clients > 1 ? "s" : ""}: throughput`,
          value: Math.round(s.rps),
          unit: "req/s",
          reference: { name: `deno serve --parallel (${workers} workers)`, value: Math.round(d.rps) },
          note: "for scale",
        }),
      );
    }
    const chat = await benchHttpChat(`http://127.0.0.1:${httpPort}`, ircPort, p.messages);
    figures.push(...chat.figures);
    raw["chat"] = chat.raw;
    raw["deno_serve_hostile"] = await probeDenoServe(p.probeWatchMs);
  } finally {
    await single.stop();
    await parallel.stop();
    await inst.stop();
    Deno.removeSync(dataDir, { recursive: true });
  }
  return { figures, raw };
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** `deno serve --parallel` of `scripts/http_floor_serve.ts` with `workers` workers, on a free port. */
async function spawnServe(args: string[], workers: number): Promise<{ port: number; stop(): Promise<void> }> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...args,
      "--no-prompt",
      "--allow-net=127.0.0.1",
      "--host=127.0.0.1",
      `--port=${port}`,
      `${ROOT}scripts/http_floor_serve.ts`,
    ],
    env: { DENO_JOBS: String(workers) },
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 200 && !(await listening(port)); i++) await sleep(25);
  return {
    port,
    stop: async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await child.status;
    },
  };
}
