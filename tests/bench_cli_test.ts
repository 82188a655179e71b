/**
 * `osps bench` against a real instance: the JSON report's shape and that its
 * counts add up. Never asserts speed.
 */
import assert from "node:assert/strict";
import { osps, withInstance } from "./harness.ts";

Deno.test("osps bench --requests 50 --json reports every request once, with latency and histogram", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    for (const mode of [[], ["--session"]]) {
      const o = await osps([
        "bench",
        `--port=${inst.port}`,
        "--requests=50",
        "--clients=4",
        "--json",
        ...mode,
      ]);
      assert.equal(o.code, 0, o.stderr);
      assert.equal(o.stderr, "", "no progress output when stderr is not a terminal");
      const r = JSON.parse(o.stdout);
      assert.equal(r.mode, mode.length ? "session" : "oneshot");
      assert.equal(r.type, "echo");
      assert.equal(r.clients, 4);
      assert.equal(r.requests.sent, 50);
      const errors = Object.values(r.errors as Record<string, number>).reduce((a, b) => a + b, 0);
      assert.equal(r.requests.ok + r.requests.failed, 50);
      assert.equal(errors, r.requests.failed);
      assert.equal(r.latency_ms.count, r.requests.ok);
      assert.equal(r.histogram.reduce((n: number, b: { count: number }) => n + b.count, 0), r.requests.ok);
      const l = r.latency_ms;
      assert.ok(
        0 < l.min && l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max,
        JSON.stringify(l),
      );
      assert.ok(r.throughput_rps > 0);
      assert.ok(r.elapsed_s > 0);
    }
    const s = await inst.status();
    assert.equal(s.workers.reduce((n, w) => n + w.served, 0), 100);
  });
});

Deno.test("osps bench prints a text report with an error table, and fails clearly with no instance", async () => {
  const { port } = await withInstance({ workers: 2 }, async (inst) => {
    const o = await osps(["bench", `--port=${inst.port}`, "--requests=10", "-c", "2", "upper", "abc"]);
    assert.equal(o.code, 0, o.stderr);
    assert.match(o.stdout, /^osps bench: upper abc against 127\.0\.0\.1:\d+, 2 clients/);
    assert.match(o.stdout, /requests +10 sent, 10 ok, 0 failed/);
    assert.match(o.stdout, /latency +p50 .* p90 .* p99 .* max /);
    assert.match(o.stdout, /errors +none/);
    assert.match(o.stdout, /latency histogram\n +≤ /);
  });
  const gone = await osps(["bench", `--port=${port}`, "--requests=5"]);
  assert.equal(gone.code, 3);
  assert.match(gone.stderr, /cannot reach the dispatcher/);
  const bad = await osps(["bench", `--port=${port}`, "nope"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown request type "nope"/);
});
