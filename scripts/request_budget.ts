/**
 * The per-request budget: what each step of a request costs in the roles'
 * own code, in microseconds, measured in one process on a real shared-memory
 * segment with the modules the roles run (the socket work, the same in osps
 * and in the two-hop floor, is measured once, over loopback, as the floor
 * does it). `docs/PERFORMANCE.md` publishes its output.
 *
 * Usage: `deno run --allow-ffi --allow-read --allow-write=/tmp --allow-net=127.0.0.1 scripts/request_budget.ts
 * [--concurrency N] [--json]`.
 * @module
 */
import { parseArgs } from "node:util";
import { Quarantine } from "../mod/dispatch/quarantine.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { SlotTickets } from "../mod/link/slot_tickets.ts";
import { TicketLedger } from "../mod/link/ticket_ledger.ts";
import { newTicket } from "../mod/link/tickets.ts";
import { addrKey, Admission, hostOf } from "../mod/net/admission.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import {
  formatAssign,
  formatReply,
  greeting,
  parseDispatcherCommand,
  parseRunCommand,
  Status,
} from "../mod/net/protocol.ts";
import { lookupService } from "../mod/services/registry.ts";
import { systemClock } from "../mod/sys/clock.ts";

/** One measured step: its name, which role runs it, µs per request. */
export interface Step {
  readonly role: "dispatcher" | "worker" | "both (as the floor)";
  readonly step: string;
  readonly us: number;
}

/** µs per call of `fn`, the median of 5 rounds of `n` calls (after a warm-up round). */
function time(n: number, fn: (i: number) => unknown): number {
  const rounds: number[] = [];
  let sink = 0;
  for (let r = 0; r < 6; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) if (fn(i)) sink++;
    if (r > 0) rounds.push(((performance.now() - t0) * 1000) / n);
  }
  if (sink < 0) console.log(sink);
  return rounds.sort((a, b) => a - b)[2]!;
}

/** Async steps: µs per call, median of 5 rounds. */
async function timeAsync(n: number, fn: () => Promise<unknown>): Promise<number> {
  const rounds: number[] = [];
  for (let r = 0; r < 6; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await fn();
    if (r > 0) rounds.push(((performance.now() - t0) * 1000) / n);
  }
  return rounds.sort((a, b) => a - b)[2]!;
}

const LIMITS = {
  maxConns: 1024,
  maxConnsPerAddr: 100_000,
  ratePerSec: 0,
  rateBurst: 50_000,
  badTicketLimit: 20,
  badTicketWindowMs: 60_000,
};

/** Measures every step; `concurrency` is the worker's ticket entries. */
export async function measureBudget(concurrency: number): Promise<Step[]> {
  const name = `/osps-budget-${Deno.pid}`;
  Segment.unlink(name);
  using seg = Segment.create(name, 2, 1, 0, concurrency);
  try {
    const steps: Step[] = [];
    const clock = systemClock;
    const worker = new SlotTickets(seg.slot(1), clock);
    worker.open();
    const ledger = new TicketLedger(new SlotTickets(seg.slot(1), clock));
    const stats = seg.stats(1);
    const admission = new Admission(LIMITS);
    const quarantine = new Quarantine({
      quarantineKills: 3,
      quarantineWindowMs: 10_000,
      quarantineMs: 30_000,
    }, clock);
    const N = 20_000;
    const peer = "127.0.0.1:43210";

    // ---- dispatcher, per REQUEST on a kept connection ----
    steps.push({
      role: "dispatcher",
      step: "admission: per-address key, rate bucket",
      us: time(N, () => admission.request(addrKey(hostOf(peer)))),
    });
    steps.push({
      role: "dispatcher",
      step: "parse REQUEST",
      us: time(N, () => parseDispatcherCommand("REQUEST echo")),
    });
    steps.push({
      role: "dispatcher",
      step: "type check (registry, quarantine)",
      us: time(N, () => lookupService("echo") && quarantine.check("echo")),
    });
    // Issue, and take back at once so the entry is free again (a take-back is a single compare-and-swap).
    steps.push({
      role: "dispatcher",
      step: "ticket: draw, issue into shared memory, ledger (and a take-back)",
      us: time(N, () => {
        const t = ledger.issue({
          ticket: newTicket(),
          type: "echo",
          clientAddr: peer,
          owner: "loopback",
          expiresAt: clock.now() + 5_000,
        }, 1);
        return t && ledger.tickets.takeBack(t.issue);
      }),
    });
    steps.push({
      role: "dispatcher",
      step: "find a worker with room (per link)",
      us: time(N, () => ledger.tickets.hasFree()),
    });
    const assign = { host: "127.0.0.1", port: 2223, ticket: newTicket() };
    steps.push({ role: "dispatcher", step: "format ASSIGN", us: time(N, () => formatAssign(assign)) });
    steps.push({
      role: "dispatcher",
      step: "counters (hand-offs, tickets issued)",
      us: time(N, () => {
        seg.slot(0).add("served", 1);
        seg.stats(0).ticket("issued");
      }),
    });

    // ---- worker, per RUN connection ----
    steps.push({
      role: "worker",
      step: "admission: per-address key, admit, release",
      us: time(N, () => {
        const a = admission.admit(addrKey(hostOf(peer)));
        if (!Admission.refused(a)) a.release();
      }),
    });
    steps.push({ role: "worker", step: "greeting", us: time(N, () => greeting("worker", "1")) });
    const run = `RUN ${"ab".repeat(16)} echo bench`;
    steps.push({ role: "worker", step: "parse RUN", us: time(N, () => parseRunCommand(run)) });
    // A claim needs an issued ticket: issue them beforehand, claim and finish in the timed loop.
    const tickets: string[] = [];
    const claimAndFinish = (k: number) => {
      const c = worker.claim(tickets[k]!, "echo", "bench");
      if (typeof c === "string") throw new Error(`claim refused: ${c}`);
      worker.finish(c);
    };
    let claimUs = 0;
    {
      const rounds: number[] = [];
      for (let r = 0; r < 6; r++) {
        let total = 0, n = 0;
        for (let b = 0; b < 200; b++) {
          tickets.length = 0;
          // Keep every entry but one busy with another request, as under load.
          for (let e = 0; e < concurrency; e++) {
            const t = newTicket();
            ledger.issue({
              ticket: t,
              type: "echo",
              clientAddr: peer,
              owner: "x",
              expiresAt: clock.now() + 5_000,
            }, 1);
            tickets.push(t);
          }
          const t0 = performance.now();
          for (let k = 0; k < concurrency; k++) claimAndFinish(k);
          total += performance.now() - t0;
          n += concurrency;
        }
        if (r > 0) rounds.push((total * 1000) / n);
      }
      claimUs = rounds.sort((a, b) => a - b)[2]!;
    }
    steps.push({ role: "worker", step: "claim the ticket, then free its place", us: claimUs });
    const service = lookupService("echo");
    const ctx = { workerId: 1, pid: 1, uptimeMs: 0, served: 0 };
    steps.push({
      role: "worker",
      step: "service (echo) with its running mark",
      us: time(N, () => {
        worker.running({ entry: 0, gen: 0 });
        const r = service.run("bench", ctx);
        worker.running(null);
        return r;
      }),
    });
    steps.push({
      role: "worker",
      step: "format the answer",
      us: time(N, () => formatReply(Status.OK, "bench")),
    });
    steps.push({
      role: "worker",
      step: "counters (request, duration, ticket used)",
      us: time(N, () => {
        stats.ticket("used");
        stats.request("echo", 200, 0.0004);
      }),
    });

    // ---- sockets and framing, as the floor does them (for scale) ----
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const serving = (async () => {
      for await (const tcp of listener) {
        tcp.setNoDelay(true);
        const c = new LineConn(tcp);
        void (async () => {
          await c.writeLine("220 OSPS/1 worker 1");
          await c.readLine({ timeoutMs: 10_000 });
          await c.writeLine("200 bench");
          c.close();
        })();
      }
    })();
    const socketUs = await timeAsync(500, async () => {
      const c = await LineConn.connect("127.0.0.1", port);
      await c.writeLine(run);
      await c.readLine(10_000);
      await c.readLine(10_000);
      c.close();
    });
    listener.close();
    await serving.catch(() => {});
    steps.push({
      role: "both (as the floor)",
      step: "one connection's round trip over loopback, client and server in this process",
      us: socketUs,
    });
    return steps;
  } finally {
    Segment.unlink(name);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { concurrency: { type: "string", default: "1" }, json: { type: "boolean", default: false } },
  });
  const steps = await measureBudget(Number(values.concurrency));
  if (values.json) console.log(JSON.stringify(steps));
  else {
    for (const s of steps) console.log(`${s.role.padEnd(20)} ${s.us.toFixed(2).padStart(8)} µs  ${s.step}`);
    for (const role of ["dispatcher", "worker"] as const) {
      const sum = steps.filter((s) => s.role === role).reduce((t, s) => t + s.us, 0);
      console.log(`${role.padEnd(20)} ${sum.toFixed(2).padStart(8)} µs  total of its own steps`);
    }
  }
}
