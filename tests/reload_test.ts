/**
 * Zero-downtime reload (`osps reload`, SIGHUP) and graceful memory recycling
 * (`--max-worker-rss-mb`), as their users meet them: real instances under
 * real load, real signals, the config file really re-read.
 */
import assert from "node:assert/strict";
import { freePorts, mapTable, osps, pollFast, waitFor, withInstance } from "./harness.ts";
import { SupState } from "../mod/ipc/shm.ts";
import { checkExposition, sampleValue } from "./support/prom_check.ts";

interface BenchJson {
  requests: { ok: number; failed: number };
  errors: Record<string, number>;
}

function withConfig(text: string): { path: string; write(t: string): void; [Symbol.dispose](): void } {
  const dir = Deno.makeTempDirSync({ prefix: "osps-reload-" });
  const path = `${dir}/osps.toml`;
  Deno.writeTextFileSync(path, text);
  return {
    path,
    write: (t) => Deno.writeTextFileSync(path, t),
    [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }),
  };
}

Deno.test("osps reload under 16 clients: every worker replaced, no request failed, a long request finished", async () => {
  await withInstance({ workers: 3 }, async (inst) => {
    const before = await inst.status();
    const load = osps(["bench", `--port=${inst.port}`, "--clients=16", "--duration=8", "--json"]);
    // A request that outlives the reload: its worker must finish it before it leaves.
    const long = inst.client(["--json", "sleep", "2500"]);
    await new Promise((r) => setTimeout(r, 1_500));
    const t0 = performance.now();
    const first = await osps(["reload", `--run-dir=${inst.runDir}`]);
    const took = performance.now() - t0;
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^reloaded the osps instance in .*: 3 workers replaced in \d+ ms \(pids /);
    const mid = await inst.status();
    // A second reload in the same run (the spare slot moves on each replacement).
    const second = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(second.code, 0, second.stderr);
    const r = JSON.parse((await load).stdout) as BenchJson;
    assert.equal(r.requests.failed, 0, `failed during reloads: ${JSON.stringify(r.errors)}`);
    assert.ok(r.requests.ok > 100, `${r.requests.ok} served`);
    const l = await long;
    assert.equal(l.code, 0, l.stderr);
    assert.equal(JSON.parse(l.stdout).result, "slept 2500");
    const after = await inst.status();
    const pids = (s: typeof before) => s.workers.map((w) => w.pid);
    assert.equal(after.workers.length, 3);
    for (const p of pids(before)) {
      assert.ok(!pids(mid).includes(p), `worker pid ${p} survived the first reload`);
    }
    for (const p of pids(mid)) {
      assert.ok(!pids(after).includes(p), `worker pid ${p} survived the second reload`);
    }
    assert.ok(after.workers.every((w) => w.state === "ready" && !w.spare), JSON.stringify(after.workers));
    assert.deepEqual(
      [after.dispatcher, ...after.workers].map((c) => c.restarts),
      [0, 0, 0, 0],
      "not restarts",
    );
    assert.equal(after.dispatcher.pid, before.dispatcher.pid, "the dispatcher keeps running");
    assert.deepEqual(after.reloads, { ...after.reloads, asked: 2, done: 2, failed: 0 });
    assert.match(inst.logs(), /worker \d \(pid \d+\) serves in place of worker \d/);
    assert.doesNotMatch(inst.logs(), /in place \(the spare could not start\)|killing/);
    console.log(
      `${r.requests.ok} requests, 0 failed, across two reloads of 3 workers (first ${Math.round(took)} ms)`,
    );
  });
});

Deno.test("a reload re-reads the config file: live settings apply, others wait for a restart, a bad file changes nothing", async () => {
  using file = withConfig('"request-timeout-for" = "sleep:20000"\n');
  await withInstance({ workers: 2, flags: [`--config=${file.path}`] }, async (inst) => {
    assert.equal((await inst.client(["sleep", "600"])).stdout.trim(), "slept 600");
    file.write('"request-timeout-for" = "sleep:300"\n"queue-size" = 10\n"probe-ms" = 500\n');
    const o = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(o.code, 0, o.stderr);
    assert.match(inst.logs(), /reload: applied now: --request-timeout-for/);
    // What needs a restart is said where the operator looks: osps reload's own output (and the status).
    assert.match(
      o.stdout,
      /2 workers replaced .*; not applied until a restart \(osps stop, then start\): --probe-ms 1000 → 500, --queue-size 64 → 10$/m,
    );
    // The new deadline holds at once: a 3 s sleep is now far past it.
    const killed = await inst.client(["sleep", "3000"]);
    assert.notEqual(killed.code, 0);
    assert.match(killed.stderr, /ran past its 300 ms deadline/);
    // A broken file: the reload reports it, and nothing changes.
    const settled = async () => {
      const s = await inst.status();
      return s.workers.every((w) => w.state === "ready") && s;
    };
    const pids = (await waitFor("the killed worker's replacement", settled)).workers.map((w) => w.pid);
    file.write('"request-timeout-for" = = "sleep:20000"\n');
    const bad = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(bad.code, 1, bad.stdout);
    // The reason itself, not "see the log".
    assert.match(
      bad.stderr,
      /the reload of ".*" failed: config file ".*" is not valid TOML: .*nothing changed/,
    );
    assert.match(inst.logs(), /reload: config file .* is not valid TOML.*nothing changed/);
    const now = await inst.status();
    assert.deepEqual(now.workers.map((w) => w.pid), pids, "a failed reload replaces no worker");
    assert.deepEqual([now.reloads.done, now.reloads.failed], [1, 1], "a failed reload is not counted done");
    assert.match(
      (await inst.client(["sleep", "3000"])).stderr,
      /ran past its 300 ms deadline/,
      "old values kept",
    );
  });
});

Deno.test("SIGHUP reloads like osps reload", async () => {
  await withInstance({ workers: 1 }, async (inst) => {
    const before = (await inst.status()).workers[0]!.pid;
    Deno.kill(inst.pid, "SIGHUP");
    const after = await waitFor("the worker replaced", async () => {
      const s = await inst.status();
      return s.reloads.done === 1 && s.workers.length === 1 && s.workers[0]!.state === "ready" &&
        s.workers[0]!;
    });
    assert.notEqual(after.pid, before);
    assert.equal((await inst.client(["echo", "after SIGHUP"])).stdout.trim(), "after SIGHUP");
  });
});

Deno.test("--max-worker-rss-mb: a worker that grew past it is replaced, finishing its request first", async () => {
  const metricsPort = freePorts(1);
  const flags = ["--max-worker-rss-mb=160", `--metrics-port=${metricsPort}`];
  await withInstance({ workers: 1, flags }, async (inst) => {
    const run = async (...args: string[]) => {
      const o = await inst.client(["--json", ...args]);
      assert.equal(o.code, 0, o.stderr);
      return JSON.parse(o.stdout) as { result: string; worker_port: number };
    };
    const first = await run("hold", "64");
    const old = (await inst.status()).workers[0]!;
    assert.ok(
      old.rss_bytes! < 160 << 20,
      `a fresh worker holding 64 MiB is under the limit: ${old.rss_bytes}`,
    );
    // Freeze the watchdog so that the next request is surely on this worker when it notices the growth.
    Deno.kill(inst.pid, "SIGSTOP");
    let long: Promise<{ result: string; worker_port: number }>;
    try {
      await run("hold", "64"); // now well over 160 MiB resident
      long = run("sleep", "2000");
      await waitFor("the sleep to run", async () => (await inst.status()).workers[0]!.busy > 0);
    } finally {
      Deno.kill(inst.pid, "SIGCONT");
    }
    const done = await long;
    assert.equal(done.result, "slept 2000", "never killed mid-request");
    assert.equal(done.worker_port, first.worker_port, "the request ran on the worker being replaced");
    const now = await waitFor("the replacement to serve alone", async () => {
      const s = await inst.status();
      return s.workers.length === 1 && s.workers[0]!.pid !== old.pid && s.workers[0]!.state === "ready" && s;
    });
    assert.equal(now.reloads.replaced_rss, 1);
    assert.ok(now.workers[0]!.rss_bytes! < 160 << 20);
    assert.match(inst.logs(), /worker 1 \(pid \d+\) is resident \d+ MiB, over --max-worker-rss-mb 160/);
    assert.match(inst.logs(), /worker 1 exited after \d+ ms \(replaced \(over --max-worker-rss-mb\)\)/);
    assert.equal(now.workers[0]!.restarts, 0);
    assert.equal((await run("hold", "64")).result, "holding 64 MiB", "the new process starts afresh");
    const m = checkExposition(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    assert.equal(sampleValue(m, "osps_worker_restarts_total", { worker: "1", reason: "rss" }), 1);
    assert.ok(sampleValue(m, "osps_process_resident_memory_bytes", { role: "worker" }) > 0);
  });
});

Deno.test("--warm-spare: a killed worker's place is taken at once by the running spare; it comes back as the spare", async () => {
  await withInstance({ workers: 2, flags: ["--warm-spare"] }, async (inst) => {
    const table = mapTable(inst);
    try {
      const spareReady = () => {
        const s = table.slot(3);
        return s.load("spare") === 1 && s.load("pid") > 0 && s.load("sup_state") === SupState.READY;
      };
      await pollFast("the warm spare ready", spareReady, 15_000);
      const serving = () =>
        [1, 2, 3].filter((i) => {
          const s = table.slot(i);
          return s.load("spare") === 0 && s.load("pid") > 0 && s.load("sup_state") === SupState.READY;
        });
      assert.deepEqual(serving(), [1, 2]);
      const spare = table.slot(3).load("pid");
      // The spare serves nothing while it is the spare.
      for (let i = 0; i < 10; i++) {
        assert.notEqual(
          JSON.parse((await inst.client(["--json", "time"])).stdout).worker_port,
          inst.port + 3,
        );
      }
      const victim = table.slot(1).load("pid");
      const t0 = performance.now();
      Deno.kill(victim, "SIGKILL");
      await pollFast(
        "two workers serving again",
        () => serving().length === 2 && serving().includes(3),
        5_000,
        1,
      );
      const back = performance.now() - t0;
      assert.equal(table.slot(3).load("pid"), spare, "the spare's own process took over");
      // The dead slot restarts and becomes the spare.
      await pollFast("slot 1 back as the spare", () => {
        const s = table.slot(1);
        return s.load("spare") === 1 && s.load("pid") > 0 && s.load("pid") !== victim &&
          s.load("sup_state") === SupState.READY;
      }, 15_000);
      const s = await inst.status();
      assert.deepEqual(s.workers.filter((w) => !w.spare).map((w) => w.id).sort(), [2, 3]);
      assert.match(inst.logs(), /worker 3 \(pid \d+, the warm spare\) serves in place of worker 1/);
      for (let i = 0; i < 10; i++) assert.equal((await inst.client(["echo", `after ${i}`])).code, 0);
      console.log(`kill -9 → two workers serving again in ${back.toFixed(1)} ms (the warm spare took over)`);
    } finally {
      table.close();
    }
  });
});

Deno.test("--warm-spare: a reload swaps each worker with the running spare, loses nothing, and keeps a spare warm", async () => {
  await withInstance({ workers: 2, flags: ["--warm-spare"] }, async (inst) => {
    await waitFor(
      "the warm spare",
      async () => (await inst.status()).workers.some((w) => w.spare && w.state === "ready"),
    );
    const before = (await inst.status()).workers.filter((w) => !w.spare).map((w) => w.pid);
    const load = osps(["bench", `--port=${inst.port}`, "--clients=8", "--duration=4", "--json"]);
    await new Promise((r) => setTimeout(r, 500));
    const o = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(o.code, 0, o.stderr);
    const r = JSON.parse((await load).stdout) as BenchJson;
    assert.equal(r.requests.failed, 0, JSON.stringify(r.errors));
    const after = await waitFor("two workers and a warm spare", async () => {
      const s = await inst.status();
      return s.workers.length === 3 && s.workers.every((w) => w.state === "ready") && s;
    });
    const serving = after.workers.filter((w) => !w.spare).map((w) => w.pid);
    assert.equal(serving.length, 2);
    for (const p of before) assert.ok(!serving.includes(p), `worker pid ${p} still serves after the reload`);
  });
});
