/**
 * Roles on separate hosts, for real: each host is a network namespace the test
 * makes (a joined host also gets a /dev/shm of its own), with its own
 * watchdog and run dir; clients connect from the root namespace over a bridge.
 * Kills, a cut cable, a wrong secret. Skipped, saying why, where namespaces
 * cannot be made (not root); CI runs as root.
 */
import assert from "node:assert/strict";
import { osps, startInstance, type StatusJson, waitFor } from "./harness.ts";
import { secretFile } from "./support/secret_file.ts";
import { inNamespacesOf, namespacesUsable } from "./support/netns.ts";
import { cluster, LINK } from "./support/cluster.ts";

const usable = await namespacesUsable();
if (!usable.ok) console.log(`multihost tests skipped: ${usable.why}`);

const remote = (s: StatusJson, addr: string) => s.workers.filter((w) => w.host === addr);

Deno.test({
  name:
    "clients are served by workers on another host; the main host's status shows every worker with its host",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    assert.match(c.joined.readyLine, new RegExp(`^ready joined=${c.a.addr.replaceAll(".", "\\.")}:${LINK} `));
    const hosts = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const o = await c.client(["--json", "echo", `hi ${i}`]);
      assert.equal(o.code, 0, o.stderr);
      const r = JSON.parse(o.stdout);
      assert.equal(r.result, `hi ${i}`);
      hosts.add(r.worker_host);
    }
    assert.deepEqual([...hosts].sort(), [c.a.addr, c.b.addr].sort(), "local and remote workers both serve");
    const s = await c.status("main");
    const far = remote(s, c.b.addr);
    assert.equal(far.length, 2);
    assert.ok(far.every((w) => w.link === "attached" && w.state === "ready"), JSON.stringify(far));
    assert.ok(s.workers.every((w) => w.watchdog_pid > 0));
    assert.ok(far.every((w) => w.watchdog_pid === c.joined.pid), "the remote watchdog's pid");
    const j = await c.status("joined");
    assert.equal(j.workers.length, 2);
    assert.ok(j.workers.every((w) => w.link === "attached"));
  },
});

Deno.test({
  name:
    "kill -9 on the remote host: a worker is replaced by its own watchdog and attaches again; its watchdog's death drops its workers at once",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    const victim = (await c.status("joined")).workers[0]!.pid;
    Deno.kill(victim, "SIGKILL"); // pids are global: a network namespace is not a pid namespace
    await waitFor("a new remote worker attached", async () => {
      const far = remote(await c.status("main"), c.b.addr);
      return far.length === 2 && far.every((w) => w.link === "attached" && w.pid !== victim) ? far : null;
    }, 15_000);
    // Now the remote watchdog itself: its workers die with it (PDEATHSIG), and the dispatcher sees the links close.
    const t0 = performance.now();
    Deno.kill(c.joined.pid, "SIGKILL");
    await waitFor("the remote workers dropped", async () => {
      const far = remote(await c.status("main"), c.b.addr);
      return far.every((w) => w.link === "lost") ? far : null;
    }, 10_000);
    console.log(
      `remote watchdog killed → its workers dropped by the dispatcher in ${
        Math.round(performance.now() - t0)
      } ms`,
    );
    const o = await c.client(["--json", "echo", "still here"]);
    assert.equal(JSON.parse(o.stdout).worker_host, c.a.addr, "the local worker serves on");
  },
});

Deno.test({
  name: "kill -9 of the dispatcher: the remote workers attach to its successor by themselves",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    const before = await c.status("main");
    Deno.kill(before.dispatcher.pid, "SIGKILL");
    const t0 = performance.now();
    await waitFor("remote workers attached to the new dispatcher", async () => {
      const s = await c.status("main");
      return s.dispatcher.pid !== before.dispatcher.pid && s.dispatcher.state === "ready" &&
          remote(s, c.b.addr).filter((w) => w.link === "attached").length === 2
        ? s
        : null;
    }, 15_000);
    console.log(
      `dispatcher killed → both remote workers attached again in ${Math.round(performance.now() - t0)} ms`,
    );
    const hosts = new Set<string>();
    for (let i = 0; i < 6; i++) {
      hosts.add(JSON.parse((await c.client(["--json", "echo", "x"])).stdout).worker_host);
    }
    assert.ok(hosts.has(c.b.addr), "remote workers serve again");
  },
});

Deno.test({
  name:
    "a cut cable is a lost link within --link-timeout-ms; the workers attach again when it is plugged back",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    const t0 = performance.now();
    await c.cable(false);
    await waitFor("links declared lost", async () => {
      return remote(await c.status("main"), c.b.addr).every((w) => w.link === "lost") || null;
    }, 10_000);
    const lostMs = Math.round(performance.now() - t0);
    // Meanwhile nothing is routed to them: the local worker serves.
    for (let i = 0; i < 4; i++) {
      assert.equal(JSON.parse((await c.client(["--json", "echo", "x"])).stdout).worker_host, c.a.addr);
    }
    await new Promise((r) => setTimeout(r, 2_000));
    const t1 = performance.now();
    await c.cable(true);
    await waitFor("links back", async () => {
      return remote(await c.status("main"), c.b.addr).every((w) => w.link === "attached") || null;
    }, 15_000);
    console.log(
      `cable cut → lost in ${lostMs} ms (timeout 1000 ms); plugged back → attached again in ${
        Math.round(performance.now() - t1)
      } ms`,
    );
    assert.ok(lostMs < 5_000, `lost after ${lostMs} ms`);
  },
});

Deno.test({
  name: "a joiner with the wrong secret is refused, and both sides say so",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    const wrong = secretFile("not the secret of this instance, but long enough");
    const rogue = await startInstance({
      workers: 1,
      port: 2400,
      wrap: c.b.wrap,
      flags: [`--host=${c.b.addr}`, `--join=${c.a.addr}:${LINK}`, `--secret-file=${wrong}`],
      expectFailure: true,
      timeoutMs: 4_000,
    });
    try {
      assert.equal(rogue.readyLine, "", "never ready: it is never attached");
      assert.match(rogue.logs(), /cannot attach to the dispatcher at .*: refused: authentication failed/);
      await waitFor(
        "the dispatcher's log",
        () => /link attempt from .* refused: authentication failed/.test(c.main.logs()),
      );
      assert.equal(remote(await c.status("main"), c.b.addr).length, 2, "no worker was let in");
    } finally {
      Deno.removeSync(wrong);
    }
  },
});

Deno.test({
  name:
    "osps reload on a joined host: its workers are replaced one by one, attached before the old ones leave",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    const before = (await c.status("joined")).workers.map((w) => w.pid);
    const load = (async () => {
      let ok = 0;
      const failed: string[] = [];
      for (let i = 0; i < 40; i++) {
        const o = await c.client(["--json", "echo", `during ${i}`]);
        if (o.code === 0) ok++;
        else failed.push(o.stderr);
      }
      return { ok, failed };
    })();
    const o = await osps(["reload", `--run-dir=${c.joined.runDir}`], { wrap: inNamespacesOf(c.joined.pid) });
    assert.equal(o.code, 0, o.stderr);
    assert.match(o.stdout, /2 workers replaced/);
    const r = await load;
    assert.deepEqual(r.failed, [], "no request failed during the remote reload");
    const j = await c.status("joined");
    assert.equal(j.workers.length, 2);
    assert.ok(
      j.workers.every((w) => !before.includes(w.pid) && w.link === "attached"),
      JSON.stringify(j.workers),
    );
    const far = remote(await c.status("main"), c.b.addr);
    assert.deepEqual(
      far.map((w) => w.pid).sort(),
      j.workers.map((w) => w.pid).sort(),
      "the new ones, not the left",
    );
    assert.ok(far.every((w) => w.link === "attached"), JSON.stringify(far));
    assert.match(c.main.logs(), /remote worker .* drained and left/);
  },
});
