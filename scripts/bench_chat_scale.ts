/**
 * The `chat-scale` part of the benchmark suite: one channel holding every
 * client (2,000, then 10,000), on osps and on Debian's ngircd in the same
 * run, driven by one load process (`chat_load.ts`) while a probe
 * (`chat_probe.ts`) times PING round trips on every server process:
 *
 * - registration and join time (every JOIN reaches every member: N²/2 lines);
 * - resident memory per connected client: the server processes' RSS with
 *   everyone joined, less their RSS before the first connection, over N;
 * - fan-out: a message to the channel, done when every member has read it
 *   (completion p50/p99 over the rounds);
 * - event-loop lag: the probe's round-trip p99 during the joins and the
 *   fan-out (and, on osps, during the mass QUIT);
 * - on osps, a worker killed with its half of the channel: every survivor
 *   must read every QUIT, and no other worker may be restarted (a kill
 *   cascade would show as restarts);
 * - then every client still connected closes at once: the time until the
 *   server's NAMES of the channel is empty, and the lag meanwhile.
 * @module
 */
import { freePorts, type Instance, startInstance } from "../tests/harness.ts";
import { type Figure, figure, rssKiB } from "./bench_util.ts";
import { startNgircd } from "./bench_chat.ts";

/** What one server did with `n` clients in one channel. */
export interface ScaleRun {
  readonly server: "osps" | "ngircd";
  readonly clients: number;
  readonly register_ms?: number;
  readonly join_ms?: number;
  /** The joins were not all answered by the deadline: when it passed, and how many had been. */
  readonly join_unfinished?: { readonly after_ms: number; readonly joined: number };
  /** Connections the server closed during the joins (too slow a reader, it judged). */
  readonly join_dropped?: number;
  readonly rss_idle_kib?: number;
  readonly rss_registered_kib?: number;
  readonly rss_joined_kib?: number;
  readonly rss_per_client_kib?: number;
  /** After the fan-out rounds (seconds after the joins: whether the storm's headroom was given back). */
  readonly rss_fanout_kib?: number;
  /** After {@link SETTLE_MS} more with nothing sent: what the server holds once calm. */
  readonly rss_settled_kib?: number;
  readonly rss_settled_per_client_kib?: number;
  /** osps: each worker's memory (`STATS z`, KiB by kind) at each phase's end (idle, registered, joined…). */
  readonly memory?: Record<string, Record<string, number>[]>;
  readonly fanout?: Record<string, number>;
  readonly lag_join?: Record<string, number>;
  readonly lag_fanout?: Record<string, number>;
  readonly lag_settled?: Record<string, number>;
  readonly quits?: Record<string, number | string>;
  readonly lag_quits?: Record<string, number>;
  /** Every connection still open ended at once: how long until the server's NAMES of the channel was empty. */
  readonly disconnect?: Record<string, number>;
  readonly lag_disconnect?: Record<string, number>;
  readonly restarts?: number;
  readonly error?: string;
}

const PERMS = ["--allow-net=127.0.0.1"];
/**
 * How long a server gets to answer every JOIN: 2 minutes, 24 ms a client
 * past 5,000 (4 minutes at 10,000). ngircd at 10,000 does not finish (its
 * run is then reported as "did not finish joining"), and the suite must.
 */
function joinDeadlineMs(n: number): number {
  return Math.max(120_000, n * 24);
}

/** How long the clients stay quiet after the fan-out before the settled memory is read. */
const SETTLE_MS = 10_000;

/** Reads JSON lines a helper prints, one per call. */
function lines(h: { readonly pid: number }, stdout: ReadableStream<Uint8Array>) {
  const reader = stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  return async (timeoutMs: number): Promise<Record<string, unknown>> => {
    const deadline = Date.now() + timeoutMs;
    while (!text.includes("\n")) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const r = await Promise.race([
        reader.read(),
        new Promise<"timeout">((res) =>
          timer = setTimeout(() => res("timeout"), Math.max(0, deadline - Date.now()))
        ),
      ]);
      clearTimeout(timer);
      if (r === "timeout") throw new Error(`helper ${h.pid}: no answer in ${timeoutMs} ms`);
      if (r.done) throw new Error(`helper ${h.pid} exited`);
      text += r.value;
    }
    const line = text.slice(0, text.indexOf("\n"));
    text = text.slice(text.indexOf("\n") + 1);
    return JSON.parse(line) as Record<string, unknown>;
  };
}

/** Starts `scripts/<name>` as a child whose stdin and stdout are this process's to drive. */
function child(name: string, args: string[], nice = 0, perms: string[] = []) {
  const argv = [
    "run",
    "--no-prompt",
    ...PERMS,
    ...perms,
    new URL(`./${name}`, import.meta.url).pathname,
    ...args,
  ];
  const proc = new Deno.Command(nice ? "nice" : Deno.execPath(), {
    args: nice ? ["-n", String(nice), Deno.execPath(), ...argv] : argv,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = proc.stdin.getWriter();
  return {
    pid: proc.pid,
    next: lines(proc, proc.stdout),
    say: (line: string) => writer.write(new TextEncoder().encode(`${line}\n`)),
    stop: async () => {
      await writer.close().catch(() => {});
      try {
        proc.kill("SIGKILL");
      } catch { /* gone */ }
      await proc.status;
    },
  };
}

/** Drives one server through the phases; `kill` (osps) kills a worker for the mass QUIT. */
async function drive(
  server: ScaleRun["server"],
  port: number,
  n: number,
  rounds: number,
  pids: () => Promise<number[]>,
  kill?: () => Promise<void>,
): Promise<Omit<ScaleRun, "server" | "clients" | "restarts">> {
  const rss = async () => (await pids()).reduce((sum, pid) => sum + (rssKiB(pid) ?? 0), 0);
  const rssIdle = await rss();
  // The probe runs before everyone else (root may raise its priority): starved of a CPU, it would time its
  // own waiting, not the server's.
  const probe = child("chat_probe.ts", [String(port), server === "osps" ? "2" : "1"], -5);
  // The load client drives its sockets through libc's epoll (see chat_load.ts).
  const load = child(
    "chat_load.ts",
    [String(port), String(n), String(rounds), String(joinDeadlineMs(n))],
    0,
    [
      "--allow-ffi",
    ],
  );
  const memory: Record<string, unknown> = {};
  const out: Record<string, unknown> = { rss_idle_kib: rssIdle, memory };
  try {
    // The probe's round trips since the last mark; each osps worker's memory (STATS z) goes to `memory[phase]`.
    const lag = async (phase: string) => {
      await probe.say("mark");
      const said = await probe.next(10_000);
      if (said["memory"]) memory[phase] = said["memory"];
      delete said["memory"];
      return said as Record<string, number>;
    };
    await probe.next(30_000); // ready
    await lag("idle");
    await load.next(30_000); // ready
    await load.say("go");
    const registered = await load.next(600_000);
    if (registered["error"]) throw new Error(String(registered["error"]));
    out["register_ms"] = registered["ms"];
    out["rss_registered_kib"] = await rss();
    await lag("registered");
    await load.say("go");
    const joinPhase = await load.next(joinDeadlineMs(n) + 60_000);
    out["join_dropped"] = joinPhase["dropped"];
    out["lag_join"] = await lag("joined");
    const joined = await rss();
    out["rss_joined_kib"] = joined;
    if (Number(joinPhase["unfinished"]) > 0) { // the server did not finish: what it holds as it stands, no more
      out["join_unfinished"] = { after_ms: joinPhase["ms"], joined: joinPhase["joins"] };
      await load.say("done");
      return out as Omit<ScaleRun, "server" | "clients" | "restarts">;
    }
    out["join_ms"] = joinPhase["ms"];
    out["rss_per_client_kib"] = Math.round((joined - rssIdle) / n * 10) / 10;
    await load.say("go");
    const fanout = await load.next(600_000);
    delete fanout["phase"];
    out["fanout"] = fanout;
    out["lag_fanout"] = await lag("fanout");
    out["rss_fanout_kib"] = await rss();
    // Then nothing for a while: what a server holds once calm after the storm, not only at its peak.
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    out["lag_settled"] = await lag("settled");
    const settled = await rss();
    out["rss_settled_kib"] = settled;
    out["rss_settled_per_client_kib"] = Math.round((settled - rssIdle) / n * 10) / 10;
    if (kill) {
      await load.say("kill");
      await load.next(10_000);
      await kill();
      await load.say("killed");
      const quits = await load.next(Math.max(300_000, n * 40));
      delete quits["phase"];
      out["quits"] = quits;
      out["lag_quits"] = await lag("quits");
    }
    // Then every client still connected at once (its own phase: the probe's window holds nothing else).
    await load.say("disconnect");
    const gone = await load.next(Math.max(300_000, n * 40));
    delete gone["phase"];
    out["disconnect"] = gone;
    out["lag_disconnect"] = await lag("disconnect");
  } catch (err) {
    out["error"] = String(err);
  } finally {
    await load.stop();
    await probe.stop();
  }
  return out as Omit<ScaleRun, "server" | "clients" | "restarts">;
}

/** `OSPS_SCALE_LOG=FILE`: the osps instance logs there (needs `--allow-env=OSPS_SCALE_LOG`). */
function scaleLog(): string | undefined {
  try {
    return Deno.env.get("OSPS_SCALE_LOG");
  } catch {
    return undefined;
  }
}

async function runOsps(n: number, rounds: number): Promise<ScaleRun> {
  const logFile = scaleLog();
  // One free block for the instance's ports (dispatcher, two workers, spare slot) and the IRC port after them:
  // a port picked apart could be one of theirs, and the watchdog refuses that.
  const port = freePorts(5);
  const ircPort = port + 4;
  const dataDir = Deno.makeTempDirSync({ prefix: "osps-bench-scale-" });
  let inst: Instance | undefined;
  try {
    inst = await startInstance({
      workers: 2,
      port,
      flags: [
        `--irc-port=${ircPort}`,
        `--data-dir=${dataDir}`,
        "--irc-flood-rate=0",
        "--irc-max-clients=40000",
        "--irc-max-clients-per-addr=40000",
        "--irc-ping-ms=600000",
        "--log-level=warning",
        // The hang detector keeps its default (3 s): a worker it kills while busy at this size is a finding.
        ...(logFile ? [`--log-file=${logFile}`] : []),
      ],
    });
    const i = inst;
    const workers = async () => (await i.status()).workers.filter((w) => w.pid > 0);
    const before = await workers();
    const r = await drive(
      "osps",
      ircPort,
      n,
      rounds,
      async () => (await workers()).map((w) => w.pid),
      () => Promise.resolve(Deno.kill(before[0]!.pid, "SIGKILL")),
    );
    const after = await workers();
    // The killed worker is replaced once; any other restart is a worker killed as hung.
    const restarts = after.reduce((s, w) => s + w.restarts, 0) - before.reduce((s, w) => s + w.restarts, 0) -
      1;
    return { server: "osps", clients: n, ...r, restarts };
  } catch (err) {
    return { server: "osps", clients: n, error: String(err) };
  } finally {
    await inst?.stop().catch(() => {});
    Deno.removeSync(dataDir, { recursive: true });
  }
}

async function runNgircd(n: number, rounds: number): Promise<ScaleRun | null> {
  const ng = await startNgircd();
  if (!ng) return null;
  try {
    const r = await drive("ngircd", ng.port, n, rounds, () => Promise.resolve([ng.pid]));
    return { server: "ngircd", clients: n, ...r };
  } finally {
    await ng.stop();
  }
}

/** "did not finish joining in N s: k of n joined" for a run whose joins ran past the deadline. */
function unfinished(r: ScaleRun | undefined): string | undefined {
  const u = r?.join_unfinished;
  if (!r || !u) return undefined;
  const count = (x: number) => x.toLocaleString("en-US");
  return `did not finish joining in ${Math.round(u.after_ms / 1000)} s: ${count(u.joined)} of ${
    count(r.clients)
  } joined`;
}

const mib = (kib: number | undefined) => kib === undefined ? "?" : String(Math.round(kib / 1024));

/** Runs the part: osps and ngircd at each size. */
export async function benchChatScale(
  opts: { sizes: number[]; rounds: number; servers?: string[]; say?: (line: string) => void },
): Promise<{ figures: Figure[]; runs: ScaleRun[] }> {
  const runs: ScaleRun[] = [];
  for (const n of opts.sizes) {
    const servers = opts.servers ?? ["osps", "ngircd"];
    if (servers.includes("osps")) {
      opts.say?.(`chat-scale: ${n} clients in one channel on osps`);
      runs.push(await runOsps(n, opts.rounds));
    }
    if (servers.includes("ngircd")) {
      opts.say?.(`chat-scale: ${n} clients in one channel on ngircd`);
      const ng = await runNgircd(n, opts.rounds);
      if (ng) runs.push(ng);
    }
  }
  const figures: Figure[] = [];
  for (const n of opts.sizes) {
    const o = runs.find((r) => r.server === "osps" && r.clients === n);
    if (!o) continue;
    const g = runs.find((r) => r.server === "ngircd" && r.clients === n);
    const gUnfinished = unfinished(g);
    // ngircd's figure beside osps's; what it did instead when it did not finish joining (it was not measured).
    const ref = (v: number | undefined, measuredAnyway = false) =>
      gUnfinished && !measuredAnyway
        ? { reference: { name: "ngircd", value: Number.NaN, missing: gUnfinished } }
        : v === undefined || !Number.isFinite(v)
        ? {}
        : { reference: { name: "ngircd", value: v } };
    const num = (x: unknown) => typeof x === "number" ? x : Number.NaN;
    const worst = (...xs: number[]) => {
      const measured = xs.filter((x) => Number.isFinite(x));
      return measured.length ? Math.max(...measured) : Number.NaN;
    };
    const part = "Chat at scale";
    const failed = o.error ?? unfinished(o);
    figures.push(
      figure({
        part,
        name: `${n} in one channel: all joined`,
        value: num(o.join_ms) / 1000,
        unit: "s",
        ...ref(num(g?.join_ms) / 1000),
        note: failed ?? g?.error ??
          `registered in ${num(o.register_ms) / 1000} s (ngircd ${num(g?.register_ms) / 1000} s)`,
      }),
      figure({
        part,
        name: `${n} in one channel: fan-out completion p99`,
        value: num(o.fanout?.["completion_p99_ms"]),
        unit: "ms",
        ...ref(num(g?.fanout?.["completion_p99_ms"])),
        target: { on: "value", op: "<=", limit: n <= 2_000 ? 100 : 250 },
        note: failed ?? `p50 ${o.fanout?.["completion_p50_ms"]} ms` +
            (g?.fanout ? ` (ngircd ${g.fanout["completion_p50_ms"]} ms)` : "") +
            `; lost ${o.fanout?.["lost"]}`,
      }),
      figure({
        part,
        name: `${n} in one channel: resident memory per client, settled`,
        value: num(o.rss_settled_per_client_kib),
        unit: "KiB",
        ...ref(num(g?.rss_settled_per_client_kib)),
        target: { on: "value", op: "<=", limit: 30 },
        note: failed ??
          `${SETTLE_MS / 1000} s after the fan-out: workers ${mib(o.rss_settled_kib)} MiB ` +
            `(idle ${mib(o.rss_idle_kib)} MiB); right after the joins ${o.rss_per_client_kib} KiB a client` +
            (g?.rss_per_client_kib === undefined ? "" : ` (ngircd ${g.rss_per_client_kib})`),
      }),
      figure({
        part,
        name: `${n} in one channel: event-loop lag p99 (PING round trip)`,
        value: worst(num(o.lag_join?.["p99_ms"]), num(o.lag_fanout?.["p99_ms"])),
        unit: "ms",
        // ngircd's joins were timed up to the deadline: its lag is measured even when it did not finish.
        ...ref(worst(num(g?.lag_join?.["p99_ms"]), num(g?.lag_fanout?.["p99_ms"])), true),
        note: `max ${worst(num(o.lag_join?.["max_ms"]), num(o.lag_fanout?.["max_ms"]))} ms` +
          (gUnfinished ? ` (ngircd: during its joins, until the deadline)` : ""),
      }),
      figure({
        part,
        name: `${n} in one channel: worker killed, every QUIT read by every survivor`,
        value: num(o.quits?.["ms"]) / 1000,
        unit: "s",
        target: { on: "value", op: "<=", limit: 60 },
        note: failed ??
          `${o.quits?.["gone"]} QUITs to ${o.quits?.["live"]} members, ${o.quits?.["missing"]} missing; ` +
            `lag p99 ${o.lag_quits?.["p99_ms"]} ms, max ${o.lag_quits?.["max_ms"]} ms; ` +
            `other workers restarted: ${o.restarts}`,
      }),
      figure({
        part,
        name: `${n} in one channel: every client still connected gone at once, channel empty`,
        value: num(o.disconnect?.["ms"]) / 1000,
        unit: "s",
        ...ref(num(g?.disconnect?.["ms"]) / 1000),
        note: failed ??
          `${o.disconnect?.["closed"]} connections closed, ${o.disconnect?.["left"]} left in NAMES; ` +
            `lag p99 ${o.lag_disconnect?.["p99_ms"]} ms, max ${o.lag_disconnect?.["max_ms"]} ms` +
            (g?.lag_disconnect ? ` (ngircd ${g.lag_disconnect["p99_ms"]} ms)` : ""),
      }),
    );
  }
  return { figures, runs };
}

if (import.meta.main) {
  const sizes = (Deno.args[0] ?? "2000").split(",").map(Number);
  const servers = (Deno.args[2] ?? "osps,ngircd").split(",");
  const r = await benchChatScale({
    sizes,
    rounds: Number(Deno.args[1] ?? 30),
    servers,
    say: (l) => console.error(l),
  });
  console.log(JSON.stringify(r.runs, null, 2));
}
