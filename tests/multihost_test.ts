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
import { cluster, LINK, PORT } from "./support/cluster.ts";
import type { Host } from "./support/netns.ts";

const usable = await namespacesUsable();
if (!usable.ok) console.log(`multihost tests skipped: ${usable.why}`);

const remote = (s: StatusJson, addr: string) => s.workers.filter((w) => w.host === addr);

const STRANGER = new URL("./support/link_stranger.ts", import.meta.url).pathname;

/** tests/support/link_stranger.ts run on `host`; its stdout lines are collected in `lines`. */
function stranger(host: Host, args: string[]) {
  const [program, ...prefix] = host.wrap;
  const child = new Deno.Command(program!, {
    args: [
      ...prefix,
      Deno.execPath(),
      "run",
      "--no-prompt",
      "--allow-net",
      "--allow-ffi", // the secret file is read and checked as the roles read it
      STRANGER,
      ...args,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines: string[] = [];
  const done = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      lines.push(...chunk.split("\n").filter(Boolean));
    }
  })();
  return {
    lines,
    /** The last `opened <n> closed <n>` report of a flood. */
    opened: () => Number(/opened (\d+)/.exec(lines.findLast((l) => l.startsWith("opened")) ?? "")?.[1] ?? 0),
    async stop() {
      await child.stdin.close().catch(() => {});
      await child.status;
      await done;
    },
  };
}

Deno.test({
  name: "an idle remote worker echoes the dispatcher's probes over the link: never judged wedged",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster({ extra: ["--probe-ms=100"] });
    // Forty probe rounds; one unanswered is a wedge after the hang timeout (3 s).
    await new Promise((r) => setTimeout(r, 4_000));
    assert.doesNotMatch(c.main.logs(), /probe unanswered/);
    const far = remote(await c.status("main"), c.b.addr);
    assert.equal(far.length, 2);
    assert.ok(far.every((w) => !w.wedged && w.link === "attached"), JSON.stringify(far));
    assert.equal((await c.client(["echo", "still served"])).stdout.trim(), "still served");
  },
});

Deno.test({
  name:
    "clients are served by workers on another host; the main host's status shows every worker with its host",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    console.log(
      `joined host ready (its 2 workers attached) ${Math.round(c.joinedReadyMs)} ms after it started`,
    );
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
    "sixteen clients at once through a remote worker are all served: a client that outran its ticket waits for that very ticket, none is left unused",
  ignore: !usable.ok,
  async fn() {
    // A dispatcher with no worker of its own: every ticket crosses the link, and at a burst of clients some
    // reach the worker before their ASSIGN while it holds other tickets. Each round starts with such a burst.
    await using c = await cluster({ mainWorkers: 0, joinedWorkers: 1 });
    for (let round = 0; round < 3; round++) {
      const o = await osps(
        ["bench", `--host=${c.a.addr}`, `--port=${PORT}`, "--clients=16", "--requests=400", "--json"],
        { net: [c.a.addr, c.b.addr] },
      );
      assert.equal(o.code, 0, o.stderr);
      const r = JSON.parse(o.stdout);
      assert.deepEqual(r.errors, {}, `round ${round}: every request served`);
      assert.equal(r.requests.ok, 400);
    }
    // A refused client's ticket would sit unused on the worker (and count against its address) until it expired.
    const far = remote(await c.status("main"), c.b.addr);
    assert.equal(far.length, 1);
    assert.equal(far[0]!.work, "idle", "no ticket left assigned and unused");
    assert.doesNotMatch(c.joined.logs(), /refusing bad tickets/);
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

Deno.test({
  name:
    "osps reload on a joined host under 16 clients, every ticket crossing the link: no request fails, none is refused",
  ignore: !usable.ok,
  async fn() {
    // A dispatcher with no worker of its own: every ticket is for a remote worker, so a ticket issued just before
    // its worker said it drains (the STATE still on the wire) reaches a worker that is leaving; 16 clients make
    // that moment likely on every replacement, and three reloads give six.
    await using c = await cluster({ mainWorkers: 0 });
    const load = osps(
      ["bench", `--host=${c.a.addr}`, `--port=${PORT}`, "--clients=16", "--duration=6", "--json"],
      { net: [c.a.addr, c.b.addr] },
    );
    await new Promise((r) => setTimeout(r, 500));
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) {
      const o = await osps(["reload", `--run-dir=${c.joined.runDir}`], {
        wrap: inNamespacesOf(c.joined.pid),
      });
      assert.equal(o.code, 0, o.stderr);
      assert.match(o.stdout, /2 workers replaced/);
    }
    const reloadsMs = Math.round(performance.now() - t0);
    const b = await load;
    assert.equal(b.code, 0, b.stderr);
    const r = JSON.parse(b.stdout);
    assert.deepEqual(r.errors, {}, `failed during three remote reloads (${r.requests.ok} served)`);
    assert.ok(r.requests.ok > 100, `${r.requests.ok} served`);
    assert.doesNotMatch(c.joined.logs(), /refusing bad tickets/);
    console.log(
      `${r.requests.ok} requests, 0 failed, across three reloads of the joined host's 2 workers ` +
        `(${reloadsMs} ms of the load's 6 s)`,
    );
  },
});

Deno.test({
  name: "a stranger host flooding the link door with silent connections does not keep a joining host out",
  ignore: !usable.ok,
  async fn() {
    let flood: ReturnType<typeof stranger> | undefined;
    try {
      await using c = await cluster({
        strangers: 1,
        beforeJoin: async ({ a, strangers: [s] }) => {
          // 20 connections a second that never send a byte (the door used to hold 16 for 5 s each).
          flood = stranger(s!, ["flood", a.addr, String(LINK), "20"]);
          await waitFor("the stranger to fill the door", () => flood!.opened() >= 40, 10_000);
        },
      });
      const during = flood!.opened();
      console.log(
        `joined host ready (its 2 workers attached) ${Math.round(c.joinedReadyMs)} ms after it started, ` +
          `while a stranger held the door (${during} connections opened)`,
      );
      await waitFor("the flood to go on", () => flood!.opened() > during, 5_000);
      const far = remote(await c.status("main"), c.b.addr);
      assert.ok(far.length === 2 && far.every((w) => w.link === "attached"), JSON.stringify(far));
      const hosts = new Set<string>();
      for (let i = 0; i < 6; i++) {
        hosts.add(JSON.parse((await c.client(["--json", "echo", "x"])).stdout).worker_host);
      }
      assert.ok(hosts.has(c.b.addr), "the joined host serves");
      // The stranger's refusals are counted and logged, never one line per connection.
      const lines = c.main.logs().split("\n").filter((l) =>
        l.includes(`link attempt from ${c.strangers[0]!.addr}`)
      );
      assert.ok(lines.length > 0 && lines.length < flood!.opened() / 4, `${lines.length} log lines`);
    } finally {
      await flood?.stop();
    }
  },
});

Deno.test({
  name:
    "a host holding the secret cannot take another host's worker slot: a claim of its identity is refused, its own is welcome",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster({ strangers: 1 });
    const before = remote(await c.status("main"), c.b.addr);
    const victim = before.find((w) => w.port === 2223)!;
    const claim = async (host: string) => {
      const who = { host, port: 2223, id: 1, pid: 4242, watchdogPid: 4243, served: 0, state: "idle" };
      const s = stranger(c.strangers[0]!, ["claim", c.a.addr, String(LINK), c.secret, JSON.stringify(who)]);
      await s.stop();
      return s.lines;
    };
    const theirs = await claim(c.b.addr);
    assert.match(
      theirs[0] ?? "",
      /^REFUSED claims to serve on .*:2223 but connects from /,
      theirs.join(" | "),
    );
    const after = remote(await c.status("main"), c.b.addr);
    assert.ok(
      after.some((w) => w.port === 2223 && w.pid === victim.pid && w.link === "attached"),
      `the real worker keeps its slot: ${JSON.stringify(after)}`,
    );
    // What it can still do with the secret: attach under its own address.
    const own = await claim(c.strangers[0]!.addr);
    assert.deepEqual(own, ["WELCOME", "kept"]);
  },
});
