/**
 * The watchdog's operators' endpoint on a live instance: /metrics parses as
 * strict Prometheus text and moves when requests are served, refused and
 * workers restart; /healthz answers while the watchdog runs; /readyz goes 503
 * when the dispatcher is killed or stopped, and back to 200 when it serves
 * again; metrics keep answering while the dispatcher is down (they come from
 * shared memory).
 */
import assert from "node:assert/strict";
import { checkExposition, type PromFamily, sampleValue } from "./support/prom_check.ts";
import { freePorts, type Instance, osps, waitFor, waitReplaced, withInstance } from "./harness.ts";

async function get(url: string): Promise<{ status: number; body: string; type: string }> {
  const r = await fetch(url);
  return { status: r.status, body: await r.text(), type: r.headers.get("content-type") ?? "" };
}

/** Scrapes until `check` holds (a scrape may be up to 200 ms old); returns that scrape. */
function scrapeUntil(
  base: string,
  what: string,
  check: (m: Map<string, PromFamily>) => boolean,
): Promise<Map<string, PromFamily>> {
  return waitFor(what, async () => {
    const m = await scrape(base);
    return check(m) ? m : null;
  });
}

/** Polls /readyz every few ms (readiness windows can be short) until it answers `status`; returns the body. */
async function readyzUntil(base: string, status: number, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await get(`${base}/readyz`);
    if (r.status === status) return r.body;
    if (Date.now() > deadline) {
      throw new Error(`/readyz never answered ${status} (last: ${r.status} ${r.body})`);
    }
    await new Promise((res) => setTimeout(res, 5));
  }
}

async function scrape(base: string): Promise<Map<string, PromFamily>> {
  const r = await get(`${base}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.type, /^text\/plain; version=0\.0\.4/);
  return checkExposition(r.body);
}

function start(workers: number, body: (inst: Instance, base: string) => Promise<void>, flags: string[] = []) {
  const port = freePorts(workers + 2);
  const metricsPort = freePorts(1);
  return withInstance(
    { workers, port, flags: [`--metrics-port=${metricsPort}`, ...flags] },
    (inst) => body(inst, `http://127.0.0.1:${metricsPort}`),
  );
}

Deno.test("/metrics is strict Prometheus text and moves with requests, refusals and restarts", async () => {
  await start(2, async (inst, base) => {
    const before = await scrape(base);
    for (const name of ["osps_requests_total", "osps_refusals_total", "osps_worker_restarts_total"]) {
      assert.equal(before.get(name)?.type, "counter", name);
    }
    assert.equal(before.get("osps_request_duration_seconds")?.type, "histogram");
    for (
      const name of ["osps_workers", "osps_queue_depth", "osps_heartbeat_age_seconds", "osps_connections"]
    ) {
      assert.equal(before.get(name)?.type, "gauge", name);
    }
    assert.ok(before.has("process_resident_memory_bytes") && before.has("process_cpu_seconds_total"));
    assert.equal(sampleValue(before, "osps_workers", { state: "ready" }), 2);
    assert.equal(sampleValue(before, "osps_ready"), 1);
    assert.ok(sampleValue(before, "osps_heartbeat_age_seconds", { role: "dispatcher" }) < 5);

    assert.equal((await inst.client(["--repeat", "5", "echo", "hi"])).code, 0);
    assert.equal((await inst.client(["sha256", "x"])).code, 0);
    assert.notEqual((await inst.client(["fib", "99"])).code, 0); // out of range: 400 from the worker
    const after = await scrapeUntil(
      base,
      "7 tickets used",
      (m) => sampleValue(m, "osps_tickets_total", { outcome: "used" }) === 7,
    );
    const served = (type: string, code = "200") =>
      sampleValue(after, "osps_requests_total", { type, code }) -
      sampleValue(before, "osps_requests_total", { type, code });
    assert.equal(served("echo"), 5);
    assert.equal(served("sha256"), 1);
    assert.equal(served("fib", "400"), 1);
    assert.equal(sampleValue(after, "osps_request_duration_seconds_count", { type: "echo" }), 5);
    assert.ok(sampleValue(after, "osps_request_duration_seconds_sum", { type: "echo" }) > 0);
    assert.equal(sampleValue(after, "osps_tickets_total", { outcome: "issued" }), 7);
    assert.equal(sampleValue(after, "osps_tickets_total", { outcome: "used" }), 7);

    // A raw line the dispatcher cannot parse is refused with 400 and counted.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: inst.port });
    await conn.write(new TextEncoder().encode("BOGUS\r\nQUIT\r\n"));
    for await (const _ of conn.readable) { /* until the dispatcher closes */ }
    await scrapeUntil(
      base,
      "the refusal counted",
      (m) => sampleValue(m, "osps_refusals_total", { code: "400" }) === 1,
    );

    const pid = (await inst.status()).workers[0]!.pid;
    Deno.kill(pid, "SIGKILL");
    await waitReplaced(inst, 1, pid);
    const restarted = await scrapeUntil(
      base,
      "the restart counted",
      (m) => sampleValue(m, "osps_worker_restarts_total", { worker: "1" }) > 0,
    );
    assert.equal(sampleValue(restarted, "osps_worker_restarts_total", { worker: "1", reason: "signal" }), 1);
    assert.equal(sampleValue(restarted, "osps_worker_restarts_total", { worker: "2" }), 0);
  });
});

Deno.test("/healthz is 200, /readyz 503 while the dispatcher is killed or stopped, then 200 again", async () => {
  await start(1, async (inst, base) => {
    assert.equal((await get(`${base}/healthz`)).status, 200);
    const ready = await get(`${base}/readyz`);
    assert.equal(ready.status, 200, ready.body);
    assert.match(ready.body, /ready: the dispatcher and 1 of 1 workers can serve/);

    // SIGKILL: the dispatcher is not running until its replacement is ready.
    let pid = (await inst.status()).dispatcher.pid;
    Deno.kill(pid, "SIGKILL");
    const killed = await readyzUntil(base, 503);
    assert.match(killed, /dispatcher (is not running|has not answered)/);
    await readyzUntil(base, 200);

    // SIGSTOP: it still exists but answers no heartbeat; past two intervals it cannot serve.
    pid = (await inst.status()).dispatcher.pid;
    Deno.kill(pid, "SIGSTOP");
    try {
      const stopped = await readyzUntil(base, 503);
      assert.match(stopped, /dispatcher has not answered heartbeats for \d+ ms|dispatcher is not running/);
      // Metrics come from shared memory: they answer while no dispatcher serves.
      const m = await scrape(base);
      assert.equal(sampleValue(m, "osps_ready"), 0);
      assert.equal(sampleValue(m, "osps_workers", { state: "ready" }), 1);
      // Still stopped past the hang timeout: the watchdog kills it and starts another.
      await waitFor(
        "the stopped dispatcher replaced",
        async () => (await inst.status()).dispatcher.pid !== pid,
      );
    } finally {
      try {
        Deno.kill(pid, "SIGCONT"); // when the test failed before the watchdog killed it
      } catch { /* already gone */ }
    }
    await readyzUntil(base, 200);
    assert.equal((await inst.client(["echo", "back"])).stdout.trim(), "back");
    const m = await scrapeUntil(
      base,
      "two dispatcher restarts",
      (m) => sampleValue(m, "osps_dispatcher_restarts_total") === 2,
    );
    assert.equal(sampleValue(m, "osps_dispatcher_restarts_total", { reason: "signal" }), 1);
    assert.equal(sampleValue(m, "osps_dispatcher_restarts_total", { reason: "hang" }), 1);
  }, ["--hang-timeout-ms=1500"]);
});

Deno.test("the endpoint is read-only and says what it has", async () => {
  await start(1, async (inst, base) => {
    assert.equal(
      await fetch(`${base}/metrics`, { method: "POST", body: "x" }).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      }),
      405,
    );
    const missing = await get(`${base}/nothing`);
    assert.equal(missing.status, 404);
    assert.match(missing.body, /\/metrics/);
    // /status.json is what `osps status --json` shows (the same object, request arguments left out).
    const sleeping = osps(["client", `--port=${inst.port}`, "sleep", "1500"]);
    await waitFor("the sleep running", async () => (await inst.status()).workers[0]!.busy > 0);
    const json = JSON.parse((await get(`${base}/status.json`)).body);
    const cli = JSON.parse((await osps(["status", `--run-dir=${inst.runDir}`, "--json"])).stdout);
    assert.deepEqual(Object.keys(json).sort(), Object.keys(cli).sort());
    assert.deepEqual(Object.keys(json.workers[0]).sort(), Object.keys(cli.workers[0]).sort());
    assert.equal(json.workers.length, 1);
    assert.equal(cli.workers[0].request.split(" ")[0], "sleep");
    assert.equal(json.workers[0].request, "sleep", "no argument");
    await sleeping;
  });
});
