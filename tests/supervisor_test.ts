/** The supervision state machine and restart budget, without processes. */
import assert from "node:assert/strict";
import { parseTimeoutsFor } from "../mod/cli/config.ts";
import { UsageError } from "../mod/errors.ts";
import {
  type Event,
  exitReasonText,
  type State,
  transition,
  TRANSITIONS,
} from "../mod/supervise/child_states.ts";
import { RestartBudget } from "../mod/supervise/restart_policy.ts";

Deno.test("every state is reachable from none, and only stopped is final", () => {
  const seen = new Set<State>(["none"]);
  const queue: State[] = ["none"];
  while (queue.length > 0) {
    for (const next of Object.values(TRANSITIONS[queue.shift()!])) {
      if (!seen.has(next)) {
        seen.add(next);
        queue.push(next);
      }
    }
  }
  assert.deepEqual([...seen].sort(), Object.keys(TRANSITIONS).sort());
  const final = (Object.keys(TRANSITIONS) as State[]).filter((s) => Object.keys(TRANSITIONS[s]).length === 0);
  assert.deepEqual(final, ["stopped"]);
});

Deno.test("a hung child can only exit or be stopped; a failed one is retried, never restarted in a loop", () => {
  const events: Event[] = ["ready", "hang", "deadline", "wedged", "restart", "retry", "cannot_boot"];
  for (const e of events) assert.equal(transition("hung", e), null, `hung --${e}-->`);
  assert.equal(transition("hung", "exit"), "backoff");
  assert.equal(transition("failed", "restart"), null);
  assert.equal(transition("failed", "retry"), "starting");
  assert.equal(transition("backoff", "over_budget"), "failed");
  assert.equal(transition("ready", "wedged"), "hung");
  assert.equal(transition("starting", "deadline"), null, "a booting worker has no request of its own yet");
});

Deno.test("RestartBudget allows `limit` restarts per sliding window", () => {
  const b = new RestartBudget(3, 1_000);
  for (const t of [0, 100, 200]) {
    assert.ok(b.allows(t));
    b.spend(t);
  }
  assert.equal(b.allows(900), false);
  assert.equal(b.used(900), 3);
  assert.ok(b.allows(1_000), "the first restart left the window");
  assert.equal(b.used(1_250), 0);
});

Deno.test("exitReasonText names every way a child ends", () => {
  assert.equal(exitReasonText(-1), "-");
  assert.equal(exitReasonText(0), "exit 0");
  assert.equal(exitReasonText(100), "cannot boot (exit 100)");
  assert.equal(exitReasonText(1009), "signal 9");
  assert.equal(exitReasonText(2000), "killed: hung (no heartbeat)");
  assert.equal(exitReasonText(2001), "killed: request deadline");
  assert.equal(exitReasonText(2002), "killed: pipe wedged (probe unanswered)");
  assert.equal(exitReasonText(2003), "recycled (max requests)");
});

Deno.test("--request-timeout-for parses TYPE:MS pairs and refuses unknown types with a clear error", () => {
  assert.deepEqual(parseTimeoutsFor("sleep:40000, fib:2000"), { sleep: 40_000, fib: 2_000 });
  assert.deepEqual(parseTimeoutsFor(""), {});
  assert.throws(() => parseTimeoutsFor("sleep"), UsageError);
  assert.throws(() => parseTimeoutsFor("sleep:5"), /MS ≥ 10, got "sleep:5"/);
  assert.throws(() => parseTimeoutsFor("nap:100"), /unknown request type "nap"; known: echo, fib/);
});
