/** Building blocks of the operators' endpoint: the text-format writer, readiness, traffic history. */
import assert from "node:assert/strict";
import { MetricNameError, PromWriter } from "../mod/ops/prom_text.ts";
import { readiness } from "../mod/ops/readiness.ts";
import { bucketQuantile, TrafficHistory } from "../mod/ops/history.ts";
import type { ChildStatus, InstanceStatus } from "../mod/ops/instance_status.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { DURATION_BUCKETS, sumCounts } from "../mod/ipc/stats.ts";
import { checkExposition, sampleValue } from "./support/prom_check.ts";

Deno.test("PromWriter output passes the strict checker, label values escaped", () => {
  const w = new PromWriter()
    .counter("osps_x_total", "Help with \\ and\nnewline.", [{ labels: { a: 'q"uo\\te\nx' }, value: 3 }])
    .gauge("osps_g", "A gauge.", [{ value: Infinity }, { labels: { k: "v" }, value: NaN }])
    .histogram("osps_h_seconds", "A histogram.", [
      { labels: { type: "echo" }, bounds: [0.1, 1], counts: [2, 1, 4], sum: 9.5 },
    ]);
  const text = w.text();
  const f = checkExposition(text);
  assert.equal(f.get("osps_x_total")!.samples[0]!.labels["a"], 'q"uo\\te\nx');
  assert.equal(sampleValue(f, "osps_h_seconds_bucket", { le: "1" }), 3);
  assert.equal(sampleValue(f, "osps_h_seconds_bucket", { le: "+Inf" }), 7);
  assert.equal(sampleValue(f, "osps_h_seconds_count"), 7);
  assert.match(text, /^osps_g \+Inf$/m);
});

Deno.test("PromWriter refuses what the format forbids", () => {
  assert.throws(() => new PromWriter().counter("osps_requests", "x", []), MetricNameError);
  assert.throws(() => new PromWriter().gauge("osps-bad", "x", []), MetricNameError);
  assert.throws(
    () => new PromWriter().gauge("g", "x", [{ labels: { "1x": "v" }, value: 1 }]),
    MetricNameError,
  );
  assert.throws(() => new PromWriter().gauge("g", "x", []).gauge("g", "x", []), /written twice/);
});

Deno.test("the strict checker rejects broken expositions", () => {
  assert.throws(() => checkExposition("a 1"), /line feed/);
  assert.throws(() => checkExposition("# TYPE a counter\na 1\n"), /must end in _total/);
  assert.throws(() => checkExposition('a_total 1\nb 2\na_total{x="1"} 3\n'), /not contiguous/);
  assert.throws(() => checkExposition('a{x="\\q"} 1\n'), /bad escape/);
  assert.throws(() => checkExposition("a 1\na 2\n"), /repeated/);
  assert.throws(() => checkExposition("a one\n"), /bad value/);
  assert.throws(
    () =>
      checkExposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'),
    /decrease/,
  );
  assert.throws(
    () => checkExposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_sum 1\nh_count 2\n'),
    /\+Inf/,
  );
});

function child(over: Partial<ChildStatus>): ChildStatus {
  return {
    id: 0,
    name: "dispatcher",
    role: "dispatcher",
    pid: 10,
    port: 1,
    state: "ready",
    work: "-",
    busy: 0,
    capacity: 0,
    restarts: 0,
    served: 0,
    heartbeat_age_ms: 100,
    uptime_ms: 1000,
    request: null,
    request_age_ms: null,
    backoff_ms: 0,
    last_exit: "-",
    wedged: false,
    conns: 0,
    ticket_overdue_ms: null,
    host: "127.0.0.1",
    link: "local",
    watchdog_pid: 1,
    rss_bytes: 30 << 20,
    spare: false,
    ...over,
  };
}

function instance(dispatcher: Partial<ChildStatus>, workers: Partial<ChildStatus>[]): InstanceStatus {
  return {
    watchdog: { pid: 1, run_dir: "/r", shm: "/s", state: "running", ready_for_ms: 5 },
    limits: {},
    dispatcher: child(dispatcher),
    workers: workers.map((w, i) =>
      child({ id: i + 1, name: `worker ${i + 1}`, role: "worker", work: "idle", ...w })
    ),
    queue_depth: 0,
    quarantine: [],
    reloads: {
      asked: 0,
      done: 0,
      failed: 0,
      last_ms_ago: null,
      last: null,
      replaced_rss: 0,
      rss_limit_refused: null,
    },
    chat: null,
  };
}

Deno.test("readiness: the dispatcher and one worker must run and answer within two heartbeats", () => {
  assert.equal(readiness(instance({}, [{}, {}]), 500).ready, true);
  assert.equal(
    readiness(instance({}, [{ state: "backoff", pid: 0 }, {}]), 500).reason,
    "ready: the dispatcher and 1 of 2 workers can serve",
  );
  assert.match(
    readiness(instance({ pid: 0, state: "backoff" }, [{}]), 500).reason,
    /the dispatcher is not running \(backoff\)/,
  );
  assert.match(
    readiness(instance({ heartbeat_age_ms: 1001 }, [{}]), 500).reason,
    /the dispatcher has not answered heartbeats for 1001 ms \(limit 1000 ms\)/,
  );
  assert.equal(readiness(instance({ heartbeat_age_ms: 1000 }, [{}]), 500).ready, true);
  assert.match(
    readiness(instance({}, [{ wedged: true }, { state: "failed", pid: 0 }]), 500).reason,
    /^no worker can serve: worker 1's pipes are wedged; worker 2 is not running \(failed\)$/,
  );
  assert.match(readiness(null, 500).reason, /no instance is running/);
});

Deno.test("readiness of a joined host: no dispatcher of its own, one worker attached to the remote one", () => {
  const joined = (workers: Partial<ChildStatus>[]): InstanceStatus => {
    const s = instance({ state: "remote", link: "remote", pid: 0 }, workers);
    return { ...s, watchdog: { ...s.watchdog, joined: "10.0.0.1:2300" } };
  };
  assert.equal(
    readiness(joined([{ link: "attached" }, { link: "connecting" }]), 500).reason,
    "ready: 1 of 2 workers attached to the dispatcher at 10.0.0.1:2300",
  );
  assert.match(
    readiness(joined([{ link: "lost" }]), 500).reason,
    /^no worker can serve: worker 1 is not attached to the dispatcher \(lost\)$/,
  );
});

Deno.test("bucketQuantile interpolates within the bucket holding the rank", () => {
  const counts = Array(DURATION_BUCKETS.length + 1).fill(0);
  counts[1] = 10; // all between 0.5 ms and 1 ms
  assert.equal(bucketQuantile(0.5, counts), 0.00075);
  assert.equal(bucketQuantile(0.5, counts.map(() => 0)), null);
});

Deno.test("TrafficHistory turns cumulative counters from shm into rates", () => {
  const name = `/osps-test-${Deno.pid}-hist`;
  using seg = Segment.create(name, 2, 1);
  try {
    const h = new TrafficHistory({ everyMs: 1000, spanMs: 60_000 });
    const total = () => sumCounts([seg.stats(0).read(), seg.stats(1).read()]);
    h.record(0, total());
    for (let i = 0; i < 50; i++) seg.stats(1).request("echo", 200, 0.0008);
    h.record(500, total()); // not due yet
    h.record(2000, total());
    const [p] = h.points(2000);
    assert.equal(p!.rate, 25);
    assert.equal(p!.t, 0);
    assert.ok(p!.p50Ms! > 0.5 && p!.p50Ms! <= 1);
  } finally {
    Segment.unlink(name);
  }
});
