/**
 * A reload or a replacement never costs capacity (issue 16, items 8 and 9):
 * a new worker that cannot serve stops the reload, says why to `osps reload`,
 * status, metrics and systemd, and the old workers serve on; a memory limit
 * below a fresh worker's size is refused instead of churning workers; a warm
 * spare takes over only with the configuration in force.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { freePorts, type Instance, osps, waitFor, waitForLog, withInstance } from "./harness.ts";
import { sqlitePath } from "../mod/chat/chat_config.ts";
import { processTable } from "../mod/sys/proc.ts";
import { withChat } from "./support/chat_instance.ts";
import { FakeSystemd } from "./support/fake_systemd.ts";
import { checkExposition, sampleValue } from "./support/prom_check.ts";

interface BenchJson {
  requests: { ok: number; failed: number };
  errors: Record<string, number>;
}

/** The serving (not spare) workers' pids and states. */
async function serving(inst: Instance) {
  const s = await inst.status();
  return { s, pids: s.workers.filter((w) => !w.spare).map((w) => w.pid) };
}

Deno.test("a reload whose new worker cannot boot (a newer chat schema) fails with its reason; the old workers serve on", async () => {
  using systemd = new FakeSystemd();
  const metricsPort = freePorts(1);
  await withChat({
    workers: 2,
    flags: [`--metrics-port=${metricsPort}`],
    env: { NOTIFY_SOCKET: systemd.path },
  }, async (inst, place) => {
    const before = await serving(inst);
    // As a downgrade or a broken migration would leave it: a schema newer than this osps.
    const db = new DatabaseSync(sqlitePath(place.dataDir, inst.port));
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA user_version = 99");
    db.close();
    const o = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(o.code, 1, `osps reload must fail: ${o.stdout}`);
    assert.match(
      o.stderr,
      /the reload of ".*" failed: worker 3 cannot serve: .*schema version 99, newer than/,
    );
    assert.match(o.stderr, /worker 1 and the workers not yet replaced serve on/);
    // Nothing else happens: the old workers keep their processes, none is drained or restarted.
    await new Promise((r) => setTimeout(r, 1_500));
    const after = await serving(inst);
    assert.deepEqual(after.pids, before.pids, "the old workers serve on");
    assert.ok(after.s.workers.every((w) => w.state === "ready" && w.restarts === 0), JSON.stringify(after.s));
    assert.equal(after.s.workers.length, 2, "the new worker was stopped, not left failing in the spare slot");
    assert.deepEqual(
      { done: after.s.reloads.done, failed: after.s.reloads.failed, ok: after.s.reloads.last?.ok },
      { done: 0, failed: 1, ok: false },
    );
    assert.match(after.s.reloads.last!.text, /schema version 99/);
    for (let i = 0; i < 4; i++) {
      assert.equal((await inst.client(["echo", `still ${i}`])).stdout.trim(), `still ${i}`);
    }
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const m = checkExposition(text);
    assert.equal(sampleValue(m, "osps_reloads_total", { result: "failed" }), 1);
    assert.equal(sampleValue(m, "osps_reloads_total", { result: "done" }), 0);
    assert.equal(sampleValue(m, "osps_reload_last_success", {}), 0);
    const table = await osps(["status", `--run-dir=${inst.runDir}`]);
    assert.match(table.stdout, /reloads: 0 done, 1 failed; last .* ago: worker 3 cannot serve/);
    assert.ok(
      systemd.drain().some((x) => /^READY=1\nSTATUS=reload failed: worker 3 cannot serve: .*schema/.test(x)),
      `STATUS= says why: ${systemd.messages}`,
    );
  });
});

Deno.test("a reload whose spare slot's port is taken fails with that reason, losing no request and no worker", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    // Another program holds the spare slot's port (port + workers + 1).
    using _blocker = Deno.listen({ hostname: "127.0.0.1", port: inst.port + 3 });
    const before = await serving(inst);
    const load = osps(["bench", `--port=${inst.port}`, "--clients=4", "--duration=3", "--json"]);
    await new Promise((r) => setTimeout(r, 500));
    const o = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(o.code, 1, o.stdout);
    assert.match(
      o.stderr,
      new RegExp(`worker 3 cannot serve: .*127\\.0\\.0\\.1:${inst.port + 3}: address already in use`),
    );
    const r = JSON.parse((await load).stdout) as BenchJson;
    assert.equal(r.requests.failed, 0, `failed during the reload: ${JSON.stringify(r.errors)}`);
    const after = await serving(inst);
    assert.deepEqual(after.pids, before.pids, "no worker was drained for a replacement that could not start");
    assert.doesNotMatch(inst.logs(), /in place/);
  });
});

Deno.test("--max-worker-rss-mb below a fresh worker's size is refused, not churned", async () => {
  await withInstance({ workers: 2, flags: ["--max-worker-rss-mb=8", "--heartbeat-ms=200"] }, async (inst) => {
    await waitForLog(inst, /--max-worker-rss-mb 8 is below what a fresh worker holds/);
    const before = await serving(inst);
    await new Promise((r) => setTimeout(r, 2_000)); // ten heartbeats, each of which would have replaced both
    const after = await serving(inst);
    assert.deepEqual(after.pids, before.pids, "no worker replaced for a limit no worker can meet");
    assert.equal(after.s.reloads.replaced_rss, 0);
    assert.match(after.s.reloads.rss_limit_refused ?? "", /below what a fresh worker holds/);
    assert.equal(inst.logs().match(/is below what a fresh worker holds/g)!.length, 1, "said once");
    assert.doesNotMatch(inst.logs(), /over --max-worker-rss-mb/);
  });
});

Deno.test("--warm-spare: a reload restarts the running spare with the new configuration before it takes over", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-warm-" });
  const config = `${dir}/osps.toml`;
  Deno.writeTextFileSync(config, '"max-line-bytes" = 4096\n');
  try {
    await withInstance({ workers: 2, flags: ["--warm-spare", `--config=${config}`] }, async (inst) => {
      await waitFor(
        "the warm spare",
        async () => (await inst.status()).workers.some((w) => w.spare && w.pid > 0),
      );
      Deno.writeTextFileSync(config, '"max-line-bytes" = 2048\n');
      const o = await osps(["reload", `--run-dir=${inst.runDir}`]);
      assert.equal(o.code, 0, o.stderr);
      const s = await waitFor("two workers and a warm spare", async () => {
        const s = await inst.status();
        return s.workers.length === 3 && s.workers.every((w) => w.state === "ready") && s;
      });
      const table = processTable();
      for (const w of s.workers) {
        const argv = table.get(w.pid)?.cmdline ?? [];
        assert.ok(
          argv.includes("--max-line-bytes=2048"),
          `${w.spare ? "the spare" : `worker ${w.id}`} runs the new configuration: ${argv.join(" ")}`,
        );
      }
      assert.match(inst.logs(), /runs an older configuration: restarting it before it takes over/);
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
