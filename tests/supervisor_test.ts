/**
 * The supervision state machine and the supervisor that carries it out, on a
 * driven clock: time is advanced, not waited for. The child processes are
 * stand-ins that speak the control protocol (ready, pong) and die on the
 * signals a real process dies on; the real-process behaviour is covered by
 * supervision_test.ts.
 */
import assert from "node:assert/strict";
import { parseTimeoutsFor } from "../mod/cli/config.ts";
import { UsageError } from "../mod/errors.ts";
import { type Event, type State, transition, TRANSITIONS } from "../mod/supervise/child_states.ts";
import { ExitReason, exitReasonText, lostWorkText, requestCaused } from "../mod/supervise/exit_reason.ts";
import {
  backoffDelay,
  DEFAULT_POLICY,
  RestartBudget,
  type RestartPolicy,
} from "../mod/supervise/restart_policy.ts";
import type { ChildEvent } from "../mod/supervise/events.ts";
import { Heartbeat } from "../mod/supervise/heartbeat.ts";
import type { Spawned, Timing } from "../mod/supervise/child_spec.ts";
import { SupervisedChild } from "../mod/supervise/supervisor.ts";
import { ManualClock } from "../mod/sys/clock.ts";
import { Segment, SupState } from "../mod/ipc/shm.ts";
import { BLAMED, type Issue, SlotTickets, TicketState } from "../mod/link/slot_tickets.ts";
import { newTicket } from "../mod/link/tickets.ts";

Deno.test("every state is reachable from none, and only stopped is final (but for a spare slot's new start)", () => {
  const seen = new Set<State>(["none"]);
  const queue: State[] = ["none"];
  while (queue.length > 0) {
    for (const next of Object.values(TRANSITIONS[queue.shift()!])) {
      if (!seen.has(next.to)) {
        seen.add(next.to);
        queue.push(next.to);
      }
    }
  }
  assert.deepEqual([...seen].sort(), Object.keys(TRANSITIONS).sort());
  const final = (Object.keys(TRANSITIONS) as State[]).filter((s) =>
    Object.keys(TRANSITIONS[s]).every((e) => e === "spawn")
  );
  assert.deepEqual(final, ["stopped"]);
});

Deno.test("the table: a hung child can only die or be stopped; failed and backoff only wait; nothing gives up", () => {
  const events: Event[] = ["ready", "hang", "deadline", "wedged", "spawn"];
  for (const e of events) assert.equal(transition("hung", e), null, `hung --${e}-->`);
  assert.deepEqual(transition("hung", "exit"), { to: "backoff", action: "restart_later" });
  assert.deepEqual(transition("hung", "exit_request"), { to: "backoff", action: "restart_now" });
  assert.deepEqual(transition("ready", "exit_over_budget"), { to: "failed", action: "retry_later" });
  assert.deepEqual(transition("failed", "timer"), { to: "starting", action: "spawn" }, "failed is retried");
  assert.deepEqual(transition("starting", "timer"), { to: "hung", action: "kill" }, "boot timeout");
  assert.equal(transition("starting", "deadline"), null, "a booting worker has no request of its own yet");
  // No state leads anywhere but back to starting or to stopped: the supervisor never gives a child up.
  for (const s of Object.keys(TRANSITIONS) as State[]) {
    if (s === "stopped" || s === "stopping") continue;
    const reachable = new Set<State>([s]);
    const q: State[] = [s];
    while (q.length) {
      for (const [e, tr] of Object.entries(TRANSITIONS[q.shift()!])) {
        if (e === "stop" || e === "abort" || reachable.has(tr.to)) continue;
        reachable.add(tr.to);
        q.push(tr.to);
      }
    }
    assert.ok(reachable.has("ready"), `${s} can get back to ready`);
  }
});

Deno.test("RestartBudget allows `limit` restarts per sliding window; backoff doubles up to its cap", () => {
  const b = new RestartBudget(3, 1_000);
  for (const t of [0, 100, 200]) {
    assert.ok(b.allows(t));
    b.spend(t);
  }
  assert.equal(b.allows(900), false);
  assert.ok(b.allows(1_000), "the first restart left the window");
  const mid = () => 0.5; // jitter factor 1
  assert.deepEqual([1, 2, 3, 4, 9, 20].map((n) => backoffDelay(n, DEFAULT_POLICY, mid)), [
    0,
    50,
    100,
    200,
    5000,
    5000,
  ]);
});

Deno.test("Heartbeat: a pong answers its ping and every earlier one; silence is the oldest unanswered ping's wait", () => {
  const hb = new Heartbeat();
  assert.equal(hb.silentMs(5_000), 0, "nothing sent, nothing owed");
  const a = hb.sent(1_000), b = hb.sent(1_500);
  hb.sent(2_000);
  assert.equal(hb.silentMs(2_100), 1_100);
  hb.answered(b); // answers a too
  assert.equal(hb.provenAt, 1_500);
  assert.equal(hb.silentMs(2_100), 100);
  hb.answered(a); // a late, stale pong changes nothing
  assert.equal(hb.silentMs(2_100), 100);
  hb.resume(4_000); // the watchdog was stopped for 4 s
  assert.equal(hb.silentMs(6_100), 100, "the stopped time is given back");
  assert.equal(hb.provenAt, 1_500, "but what was proven stays when it was sent");
  hb.answered(NaN); // "ready": everything
  assert.equal(hb.silentMs(9_000), 0);
  assert.equal(hb.provenAt, 2_000);
});

Deno.test("exitReasonText and lostWorkText say what ended a child, and whose fault it was", () => {
  assert.equal(exitReasonText(-1), "-");
  assert.equal(exitReasonText(0), "exit 0");
  assert.equal(exitReasonText(100), "cannot boot (exit 100)");
  assert.equal(exitReasonText(1009), "signal 9");
  assert.equal(exitReasonText(ExitReason.HANG), "killed: hung (no heartbeat)");
  assert.equal(exitReasonText(ExitReason.HANG_IN_REQUEST), "killed: a request blocked it (no heartbeat)");
  assert.equal(exitReasonText(ExitReason.DEADLINE), "killed: request deadline");
  assert.equal(exitReasonText(ExitReason.WEDGED), "killed: pipe wedged (probe unanswered)");
  assert.equal(exitReasonText(ExitReason.RECYCLED), "recycled (max requests)");
  assert.ok(requestCaused(ExitReason.DEADLINE) && requestCaused(ExitReason.HANG_IN_REQUEST));
  assert.ok(!requestCaused(ExitReason.HANG) && !requestCaused(1009));
  assert.equal(
    lostWorkText("worker 1", "fib 45", ExitReason.HANG_IN_REQUEST, 3000),
    'worker 1 was killed: "fib 45" blocked it past the 3000 ms hang timeout',
  );
  assert.equal(
    lostWorkText("worker 2", "sleep 9000", ExitReason.DEADLINE, 500),
    'worker 2 was killed: "sleep 9000" ran past its 500 ms deadline',
  );
});

Deno.test("--request-timeout-for parses TYPE:MS pairs and refuses unknown types with a clear error", () => {
  assert.deepEqual(parseTimeoutsFor("sleep:40000, fib:2000"), { sleep: 40_000, fib: 2_000 });
  assert.deepEqual(parseTimeoutsFor(""), {});
  assert.throws(() => parseTimeoutsFor("sleep"), UsageError);
  assert.throws(() => parseTimeoutsFor("sleep:5"), /MS ≥ 10, got "sleep:5"/);
  assert.throws(() => parseTimeoutsFor("nap:100"), /unknown request type "nap"; known: chat, echo, fib/);
});

/** A stand-in process: speaks the control protocol when told to, dies on the signals a process dies on. */
class FakeProcess implements Spawned {
  static nextPid = 50_000;
  readonly pid = FakeProcess.nextPid++;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stdin: WritableStream<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly received: string[] = [];
  readonly signals: Deno.Signal[] = [];
  /** A stopped process (SIGSTOP) or one that ignores SIGTERM. */
  ignoresTerm = false;
  #out!: ReadableStreamDefaultController<Uint8Array>;
  #exit!: (s: Deno.CommandStatus) => void;
  #done = false;

  constructor() {
    this.status = new Promise((r) => (this.#exit = r));
    this.stdout = new ReadableStream({ start: (c) => void (this.#out = c) });
    this.stdin = new WritableStream({
      write: (chunk) => void this.received.push(new TextDecoder().decode(chunk)),
    });
  }

  say(line: string): void {
    this.#out.enqueue(new TextEncoder().encode(line + "\n"));
  }

  /** Answers the last ping received, as a live child's main loop does. */
  pong(): void {
    const ping = this.received.findLast((l) => l.startsWith("ping "));
    this.say(`pong ${ping ? ping.slice(5).trim() : ""}`);
  }

  kill(signal: Deno.Signal): void {
    if (this.#done) throw new TypeError("child already exited");
    this.signals.push(signal);
    if (signal === "SIGKILL" || (signal === "SIGTERM" && !this.ignoresTerm)) this.die({ signal });
  }

  die(how: { code?: number; signal?: Deno.Signal }): void {
    if (this.#done) return;
    this.#done = true;
    this.#out.close();
    const code = how.code ?? 128 + (how.signal === "SIGKILL" ? 9 : 15);
    this.#exit({ success: code === 0 && !how.signal, code, signal: how.signal ?? null });
  }
}

const TIMING: Timing = {
  hangTimeoutMs: 3_000,
  requestTimeoutMs: 60_000,
  requestTimeoutFor: {},
  bootTimeoutMs: 15_000,
};
const POLICY: RestartPolicy = { ...DEFAULT_POLICY, budget: 3, budgetWindowMs: 30_000, failedRetryMs: 30_000 };

/**
 * One supervised worker on a driven clock, its slot in a real segment, its processes stand-ins. `post`,
 * when given, stands for the watchdog's cycle: it gets each event and hands it to the child (or not).
 */
function fixture(policy = POLICY, post?: (child: SupervisedChild, e: ChildEvent) => void) {
  const name = `/osps-test-sup-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const segment = Segment.create(name, 2, 1);
  const clock = new ManualClock();
  const procs: FakeProcess[] = [];
  const child: SupervisedChild = new SupervisedChild(
    { name: "worker 1", slot: segment.slot(1), isWorker: true, command: () => ({ program: "x", args: [] }) },
    TIMING,
    policy,
    {
      clock,
      spawner: () => {
        const p = new FakeProcess();
        procs.push(p);
        return p;
      },
      isStopped: () => false,
      post: post && ((e) => post(child, e)),
    },
  );
  const settle = () => new Promise((r) => setTimeout(r, 0));
  // The worker's side of the ticket protocol, played by the test: a request runs as a real worker's would.
  const tickets = new SlotTickets(segment.slot(1), clock);
  return {
    child,
    clock,
    procs,
    slot: segment.slot(1),
    /** A client's `type arg` request now runs in the worker (issued and claimed through the ticket protocol). */
    run(type: string, arg = ""): Issue {
      tickets.open();
      const ticket = newTicket();
      assert.ok(tickets.issue({ ticket, type, clientAddr: "x:1", expiresAt: clock.now() + 1_000 }));
      const claim = tickets.claim(ticket, type, arg);
      assert.ok(typeof claim !== "string", `claimed: ${claim}`);
      return claim;
    },
    finish: (claim: Issue) => tickets.finish(claim),
    last: () => procs[procs.length - 1]!,
    settle,
    /** Lets the current process say ready, and the supervisor read it. */
    async ready() {
      procs[procs.length - 1]!.say("ready worker 1");
      await settle();
    },
    async [Symbol.asyncDispose]() {
      await child.abort();
      segment.close();
      Segment.unlink(name);
    },
  };
}

Deno.test("supervisor: a crash loop backs off 0, 50, 100 ms…, fails past its budget, and is retried forever", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  assert.equal(f.child.state, "ready");
  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    f.last().die({ code: 1 });
    await f.settle();
    assert.equal(f.child.state, "backoff");
    delays.push(f.slot.load("backoff_until") - f.clock.now());
    f.clock.advance(delays[i]!);
    assert.equal(f.child.state, "starting", `restarted after ${delays[i]} ms`);
    await f.ready();
  }
  assert.equal(delays[0], 0, "the first restart is immediate");
  assert.ok(delays[1]! >= 25 && delays[1]! <= 75 && delays[2]! >= 50 && delays[2]! <= 150, `${delays}`);
  f.last().die({ code: 1 }); // the fourth within the window: over the budget of 3
  await f.settle();
  assert.equal(f.child.state, "failed");
  assert.equal(f.slot.load("sup_state"), SupState.FAILED);
  f.clock.advance(POLICY.failedRetryMs - 1);
  assert.equal(f.child.state, "failed");
  f.clock.advance(1);
  assert.equal(f.child.state, "starting", "a failed child is tried again: the supervisor never gives up");
  await f.ready();
  assert.equal(f.child.state, "ready");
  assert.equal(f.procs.length, 5);
});

Deno.test("supervisor: kills caused by requests restart at once and spend no budget", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  for (let i = 0; i < 10; i++) { // far past the budget of 3
    const p = f.last();
    const claim = f.run("fib", "45");
    f.child.tick(); // a ping, never answered: the request blocks the event loop
    f.clock.advance(TIMING.hangTimeoutMs + 1);
    f.child.tick();
    assert.equal(f.child.state, "hung");
    assert.deepEqual(p.signals, ["SIGTERM"]);
    await f.settle();
    assert.equal(f.slot.load("last_exit"), ExitReason.HANG_IN_REQUEST);
    assert.equal(f.slot.load("death_pid"), p.pid, "the death record is about that process");
    assert.equal(f.slot.bytes("death_entries")[claim.entry], BLAMED, "and blames the request it held");
    assert.equal(f.slot.text("death_request"), "fib 45");
    assert.equal(f.slot.load("death_limit_ms"), TIMING.hangTimeoutMs);
    f.clock.advance(0);
    assert.equal(f.child.state, "starting", `kill ${i + 1} restarted at once`);
    await f.ready();
  }
  assert.equal(f.child.state, "ready");
});

Deno.test("supervisor: a request past its deadline is killed; SIGTERM ignored escalates to SIGKILL after the grace", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  const p = f.last();
  p.ignoresTerm = true;
  f.run("sleep", "30000");
  for (let t = 0; t <= TIMING.requestTimeoutMs; t += 500) {
    f.clock.advance(500);
    f.child.tick();
    p.pong(); // alive, answering heartbeats
    await f.settle();
  }
  assert.equal(f.child.state, "hung");
  assert.deepEqual(p.signals, ["SIGTERM"]);
  f.clock.advance(POLICY.killGraceMs);
  assert.deepEqual(p.signals, ["SIGTERM", "SIGKILL"]);
  await f.settle();
  assert.equal(f.slot.load("last_exit"), ExitReason.DEADLINE);
  assert.equal(f.slot.load("death_limit_ms"), TIMING.requestTimeoutMs);
});

Deno.test("supervisor: an idle child that stops answering is hung (its own fault: budget spent)", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  f.child.tick();
  f.clock.advance(TIMING.hangTimeoutMs + 1);
  f.child.tick();
  await f.settle();
  assert.equal(f.slot.load("last_exit"), ExitReason.HANG);
  assert.equal(f.slot.load("death_pid"), f.procs[0]!.pid);
  assert.ok(
    [...f.slot.bytes("death_entries")].every((s) => s === TicketState.OFFLINE),
    "it held no ticket",
  );
  assert.equal(f.child.state, "backoff");
});

Deno.test("supervisor: liveness counts pings sent: no ping for long is no silence, an unanswered one is", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  const p = f.last();
  f.clock.advance(10 * TIMING.hangTimeoutMs); // the watchdog sent nothing meanwhile: nothing went unanswered
  f.child.tick();
  assert.equal(f.child.state, "ready");
  p.pong();
  await f.settle();
  f.clock.advance(TIMING.hangTimeoutMs);
  f.child.tick(); // ping 2, answered below; ping 3 is not
  p.pong();
  await f.settle();
  f.clock.advance(TIMING.hangTimeoutMs);
  f.child.tick();
  assert.equal(f.child.state, "ready", "ping 3 has waited only since it was sent");
  f.clock.advance(TIMING.hangTimeoutMs + 1);
  f.child.tick();
  assert.equal(f.child.state, "hung", "ping 3 unanswered for longer than the hang timeout");
});

Deno.test("supervisor: time the watchdog itself did not run is given back to pings in flight and the deadline", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  const p = f.last();
  f.child.tick(); // a ping; the watchdog is then stopped for 5 s while the child answers it
  p.pong();
  f.clock.advance(5_000);
  f.child.resume(5_000 - 500); // the cycle saw it wake 4.5 s later than it should have
  f.child.tick(); // judged before the answer is read: it was sent "500 ms ago"
  assert.equal(f.child.state, "ready");
  await f.settle();
  f.clock.advance(500);
  f.child.tick();
  assert.equal(f.child.state, "ready");
  // A child that is itself stopped is still found hung, once the watchdog's own time runs.
  f.clock.advance(TIMING.hangTimeoutMs + 1);
  f.child.tick();
  assert.equal(f.child.state, "hung");
});

Deno.test("supervisor: a child's error line is its failure; a stray error handling an event does not stop the reading", async () => {
  let throwOnce = true;
  await using f = fixture(POLICY, (child, e) => {
    if (throwOnce && e.kind === "line") {
      throwOnce = false;
      throw new Error("a bug handling a line");
    }
    child.handle(e);
  });
  f.child.start();
  const p = f.last();
  p.say("garbage that meets the bug");
  p.say("ready worker 1");
  await f.settle();
  assert.equal(f.child.state, "ready", "lines after the failed one are still read");
  p.say("error worker 1 cannot listen on 127.0.0.1:2: address in use");
  p.die({ code: 100 });
  await f.settle();
  assert.equal(f.child.state, "failed");
  assert.equal(f.child.failure, "worker 1 cannot listen on 127.0.0.1:2: address in use");
});

Deno.test("supervisor: a child that never says ready is killed at the boot deadline", async () => {
  await using f = fixture();
  f.child.start();
  f.clock.advance(TIMING.bootTimeoutMs - 1);
  assert.equal(f.child.state, "starting");
  f.clock.advance(1);
  assert.equal(f.child.state, "hung");
  await f.settle();
  assert.equal(f.child.state, "backoff");
});

Deno.test("supervisor: a stop asks first, then SIGKILLs after the grace, and resolves once reaped", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  const p = f.last();
  p.ignoresTerm = true;
  let done = false;
  const stopping = f.child.stop(1_000).then(() => (done = true));
  await f.settle();
  assert.ok(p.received.includes("stop\n"));
  assert.equal(f.child.state, "stopping");
  f.clock.advance(999);
  await f.settle();
  assert.equal(done, false);
  f.clock.advance(1);
  await stopping;
  assert.deepEqual(p.signals, ["SIGKILL"]);
  assert.equal(f.child.state, "stopped");
  assert.equal(f.slot.load("pid"), 0);
});

Deno.test("supervisor: a worker retiring after --max-requests is replaced at once, not counted as a failure", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  for (let i = 0; i < 6; i++) {
    f.last().say("retiring after 100 requests");
    await f.settle();
    f.last().die({ code: 0 });
    await f.settle();
    assert.equal(f.slot.load("last_exit"), ExitReason.RECYCLED);
    f.clock.advance(0);
    assert.equal(f.child.state, "starting");
    await f.ready();
  }
});

Deno.test("supervisor: a replaced child drains, keeps its request deadline, and is never restarted", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  const p = f.last();
  const claim = f.run("sleep", "500");
  const finished = f.child.replaced(ExitReason.REPLACED, 10_000);
  await f.settle();
  assert.equal(f.child.state, "replaced");
  assert.ok(p.received.some((l) => l.startsWith("drain")), `drain ordered: ${p.received}`);
  assert.deepEqual(p.signals, [], "never killed for being replaced");
  // Still heartbeaten: it answers, so it stays; its request finishes and it exits 0.
  f.clock.advance(1_000);
  f.child.tick();
  p.pong();
  f.finish(claim);
  p.die({ code: 0 });
  await finished;
  assert.equal(f.child.state, "stopped");
  assert.equal(f.slot.load("last_exit"), ExitReason.REPLACED);
  assert.equal(exitReasonText(f.slot.load("last_exit")), "replaced (reload)");
  f.clock.advance(60_000);
  assert.equal(f.procs.length, 1, "nothing restarted in its place: its replacement runs elsewhere");
  // Started again later (a spare slot taking a worker's place): not counted as a restart.
  f.child.start();
  await f.ready();
  assert.equal(f.child.state, "ready");
  assert.equal(f.slot.load("restarts"), 0);
});

Deno.test("supervisor: a replaced child past its deadline is killed, and still not restarted", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  const p = f.last();
  f.run("sleep", "30000");
  const finished = f.child.replaced(ExitReason.REPLACED_RSS, 120_000);
  f.clock.advance(TIMING.requestTimeoutMs + 1);
  f.child.tick(); // nothing unanswered (no ping was in flight): only the request's deadline is past
  assert.deepEqual(p.signals, ["SIGTERM"], "the deadline holds while it finishes");
  await finished;
  assert.equal(f.child.state, "stopped");
  assert.equal(f.slot.load("last_exit"), ExitReason.DEADLINE);
  f.clock.advance(60_000);
  assert.equal(f.procs.length, 1);
});

Deno.test("supervisor: a replaced child still there after its grace is stopped (then SIGKILLed)", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  const p = f.last();
  p.ignoresTerm = true;
  const finished = f.child.replaced(ExitReason.REPLACED, 5_000);
  f.clock.advance(5_000);
  await f.settle();
  assert.equal(f.child.state, "stopping");
  assert.ok(p.received.some((l) => l.startsWith("stop")), `stop ordered: ${p.received}`);
  f.clock.advance(DEFAULT_POLICY.killGraceMs);
  assert.deepEqual(p.signals, ["SIGKILL"]);
  await finished;
  assert.equal(f.child.state, "stopped");
});

Deno.test("supervisor: replacing a child with no process just stops it", async () => {
  await using f = fixture();
  f.child.start();
  await f.ready();
  f.last().die({ code: 1 });
  await f.settle();
  assert.equal(f.child.state, "backoff");
  await f.child.replaced(ExitReason.REPLACED, 1_000);
  assert.equal(f.child.state, "stopped");
});
