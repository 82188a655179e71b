/**
 * `deno task soak [--duration S] [--clients N] [--kill-every S]`: runs an
 * instance with its default flags under load for minutes, the way capacity
 * leaks are found. Phases rotate through 8 and 64 clients, one-shot and
 * session (or N clients of each mode with `--clients`), and a random worker is
 * SIGKILLed now and then. Every second it reads the shared-memory table.
 *
 * Phases last `--phase` seconds and repeat in cycles, so that memory is
 * compared under the same load: the first cycle is the warm-up.
 *
 * It fails (exit 1) when
 * - a ready worker's `served` stops growing for `--window` seconds while the
 *   others grow (a worker silently out of rotation),
 * - a worker holds a ticket past its expiry,
 * - a request fails (one cut by a kill is retried, as the idempotent `echo`
 *   may be; failing three times, or any other error, is a failure),
 * - a role's RSS grows more than 10 % from the end of the first cycle it lived
 *   through whole to the end of the last (same process, same phase of the
 *   cycle; a worker restarted mid-cycle warms up in its first whole cycle).
 *
 * It prints a per-worker served table over time.
 * @module
 */
import { parseArgs } from "node:util";
import { Session, WorkerLost } from "../mod/client/session.ts";
import { ServiceError } from "../mod/errors.ts";
import { SupState } from "../mod/ipc/shm.ts";
import { mapTable, startInstance } from "../tests/harness.ts";
import { rssKiB } from "./bench_util.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "600" },
    clients: { type: "string" },
    "kill-every": { type: "string", default: "10" },
    window: { type: "string", default: "5" },
    phase: { type: "string", default: "15" },
    workers: { type: "string", default: "2" },
  },
});
const DURATION_S = Number(opts.duration);
const KILL_EVERY_S = Number(opts["kill-every"]);
const WINDOW_S = Number(opts.window);
const WORKERS = Number(opts.workers);
const PHASE_S = Number(opts.phase);
const FIXED_CLIENTS = opts.clients === undefined ? undefined : Number(opts.clients);
if (![DURATION_S, KILL_EVERY_S, WINDOW_S, WORKERS, PHASE_S].every((n) => n > 0) || FIXED_CLIENTS === 0) {
  console.error(
    "usage: soak.ts [--duration S] [--clients N] [--kill-every S] [--window S] [--workers N] [--phase S]",
  );
  Deno.exit(2);
}

interface Phase {
  clients: number;
  session: boolean;
}
const PHASES: Phase[] = FIXED_CLIENTS !== undefined
  ? [{ clients: FIXED_CLIENTS, session: false }, { clients: FIXED_CLIENTS, session: true }]
  : [{ clients: 8, session: false }, { clients: 8, session: true }, { clients: 64, session: false }, {
    clients: 64,
    session: true,
  }];

const problems: string[] = [];
const problem = (p: string) => {
  if (!problems.includes(p)) problems.push(p);
  console.log(`PROBLEM ${p}`);
};

const inst = await startInstance({ workers: WORKERS });
const table = mapTable(inst);
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
let ok = 0, retried = 0, failed = 0;
const errorKinds = new Map<string, number>();

/** One virtual client: requests until `until`, retrying a request its worker was killed under. */
async function client(id: number, session: boolean, until: number): Promise<void> {
  let s: Session | undefined;
  for (let n = 0; elapsed() < until; n++) {
    const text = `soak ${id} ${n}`;
    for (let attempt = 1;; attempt++) {
      try {
        s ??= await Session.open("127.0.0.1", inst.port, { timeoutMs: 30_000 });
        const a = await s.request("echo", text);
        if (a.text !== text) {
          throw new Error(`wrong answer ${JSON.stringify(a.text)} for ${JSON.stringify(text)}`);
        }
        ok++;
        if (attempt > 1) retried++;
        break;
      } catch (err) {
        s?.abort();
        s = undefined;
        const kind = err instanceof Error ? err.message.replace(/\d+/g, "N") : String(err);
        errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1);
        // Cut by a kill: the worker died under it, or before it could be reached. Anything else is a failure.
        const cutByKill = err instanceof WorkerLost ||
          (err instanceof ServiceError && /cannot reach worker/.test(err.message));
        if (!cutByKill || attempt >= 3) {
          failed++;
          problem(`a request failed: ${err instanceof Error ? err.message : String(err)}`);
          break;
        }
      }
    }
    if (!session) {
      await s?.close().catch(() => {});
      s = undefined;
    }
  }
  await s?.close().catch(() => {});
}

// Samples: per second, served per worker and RSS per role.
interface Sample {
  t: number;
  served: number[];
  pids: number[];
  rss: (number | null)[];
}
const samples: Sample[] = [];
const lastKill = new Map<number, number>();
let kills = 0;
const workerIds = Array.from({ length: WORKERS }, (_, i) => i + 1);
const sampler = setInterval(() => {
  const t = elapsed();
  const served = workerIds.map((i) => table.slot(i).load("served"));
  const pids = [inst.pid, ...[0, ...workerIds].map((i) => table.slot(i).load("pid"))];
  samples.push({ t, served, pids, rss: pids.map((p) => (p > 0 ? rssKiB(p) : null)) });
  checkStalls(t);
}, 1_000);

async function checkOverdue(): Promise<void> {
  const s = await inst.status() as unknown as { workers: { id: number; ticket_overdue_ms: number | null }[] };
  for (const w of s.workers) {
    if ((w.ticket_overdue_ms ?? 0) > 1_000) {
      problem(`worker ${w.id} holds a ticket ${w.ticket_overdue_ms} ms past its expiry`);
    }
  }
}

function checkStalls(t: number): void {
  const then = samples.findLast((s) => s.t <= t - WINDOW_S);
  const now = samples.at(-1);
  if (!then || !now || t < 10) return;
  const grew = workerIds.map((i) => now.served[i - 1]! - then.served[i - 1]!);
  if (!grew.some((g) => g > 0)) return; // nobody grew (a phase change, say): nothing to compare
  for (const i of workerIds) {
    const killedRecently = (lastKill.get(i) ?? -Infinity) > t - WINDOW_S - 5;
    const ready = table.slot(i).load("sup_state") === SupState.READY;
    if (grew[i - 1] === 0 && ready && !killedRecently) {
      problem(
        `worker ${i} served nothing for ${WINDOW_S} s while the others served ${grew.join("/")} (at ${
          Math.round(t)
        } s)`,
      );
    }
  }
}

const killer = setInterval(() => {
  const id = workerIds[Math.floor(Math.random() * WORKERS)]!;
  const pid = table.slot(id).load("pid");
  if (pid > 0) {
    lastKill.set(id, elapsed());
    kills++;
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* already gone */ }
  }
}, KILL_EVERY_S * 1_000);

const overdue = setInterval(() => void checkOverdue().catch(() => {}), 2_000);

// Phases, each with its own clients, in cycles.
const cycleS = PHASE_S * PHASES.length;
const cycles = Math.max(1, Math.round(DURATION_S / cycleS));
const phaseS = DURATION_S / (cycles * PHASES.length);
console.log(
  `soak: ${DURATION_S} s, ${WORKERS} workers, default flags, a random worker killed every ${KILL_EVERY_S} s; ` +
    `phases of ${Math.round(phaseS)} s: ${
      PHASES.map((p) => `${p.clients} ${p.session ? "session" : "one-shot"}`).join(", ")
    }`,
);
const header = `${"t (s)".padStart(6)}  ${"phase".padEnd(14)}  ${
  workerIds.map((i) => `worker ${i}`.padStart(10)).join("  ")
}  ${"req/s".padStart(7)}`;
console.log(header);
console.log("(* = the worker is not ready at that moment: restarting, or failing after too many kills)");
let printedAt = 0, printedServed = workerIds.map(() => 0);
const printer = setInterval(() => {
  const s = samples.at(-1);
  if (!s) return;
  const phase = PHASES[Math.floor(s.t / phaseS) % PHASES.length]!;
  const rate = (s.served.reduce((a, b) => a + b, 0) - printedServed.reduce((a, b) => a + b, 0)) /
    (s.t - printedAt);
  console.log(
    `${String(Math.round(s.t)).padStart(6)}  ${
      `${phase.clients} ${phase.session ? "session" : "one-shot"}`.padEnd(14)
    }  ${
      s.served.map((v, i) =>
        `${table.slot(i + 1).load("sup_state") === SupState.READY ? "" : "*"}${v}`.padStart(10)
      )
        .join("  ")
    }  ${String(Math.round(rate)).padStart(7)}`,
  );
  printedAt = s.t;
  printedServed = s.served;
}, 10_000);

try {
  for (let k = 0; k < cycles * PHASES.length; k++) {
    const phase = PHASES[k % PHASES.length]!;
    const until = (k + 1) * phaseS;
    await Promise.all(
      Array.from({ length: phase.clients }, (_, i) => client(k * 1000 + i, phase.session, until)),
    );
  }
} finally {
  clearInterval(sampler);
  clearInterval(killer);
  clearInterval(printer);
  clearInterval(overdue);
}

// RSS: the same process, at the same point of the cycle (its last phase's last seconds): the end of the first cycle
// it lived through whole (its warm-up: a worker restarted mid-cycle has not yet met every phase's load, and its heap
// grows to that load's size in its first cycle) against the end of the last.
const roleNames = ["watchdog", "dispatcher", ...workerIds.map((i) => `worker ${i}`)];
const rssLines: string[] = [];
const cycleLen = PHASES.length * phaseS;
const tail = (cycle: number) => {
  const end = (cycle + 1) * cycleLen;
  return samples.filter((s) => s.t >= end - Math.min(5, phaseS / 2) && s.t < end);
};
roleNames.forEach((name, r) => {
  if (cycles < 2) return void rssLines.push(`${name}: one cycle only (not compared)`);
  const pid = samples.at(-1)?.pids[r];
  const last = tail(cycles - 1);
  // The first sample of the process that ends the run; the first cycle that starts after it is its warm-up.
  const since = samples.findLastIndex((s) => s.pids[r] !== pid) + 1;
  const warmUp = since === 0 ? 0 : Math.ceil((samples[since]?.t ?? Infinity) / cycleLen);
  if (!pid || warmUp >= cycles - 1 || last.length === 0 || !last.every((s) => s.pids[r] === pid)) {
    return void rssLines.push(
      `${name}: replaced during the run, no whole cycle before the last (not compared)`,
    );
  }
  const first = tail(warmUp);
  const avg = (xs: Sample[]) => xs.reduce((a, s) => a + (s.rss[r] ?? 0), 0) / xs.length;
  const a = avg(first), b = avg(last);
  const growth = (b - a) / a;
  rssLines.push(
    `${name}: ${(a / 1024).toFixed(1)} → ${(b / 1024).toFixed(1)} MiB (${(growth * 100).toFixed(1)} %)` +
      (warmUp > 0 ? ` from cycle ${warmUp + 1}` : ""),
  );
  if (growth > 0.1) {
    problem(`${name} RSS grew ${(growth * 100).toFixed(1)} % from its first whole cycle to the last`);
  }
});

const code = await inst.stop();
table.close();
console.log(`requests: ${ok} ok (${retried} after a retry), ${failed} failed; ${kills} workers killed`);
console.log(`errors seen (each retried or counted): ${JSON.stringify(Object.fromEntries(errorKinds))}`);
console.log(`RSS, end of the first whole cycle → end of the last: ${rssLines.join("; ")}`);
if (code !== 0) problem(`the watchdog exited ${code} on stop`);
console.log(problems.length ? `soak FAILED: ${problems.length} problem(s)` : "soak passed");
Deno.exit(problems.length ? 1 : 0);
