/**
 * What operators read stays true (issue 20, item 5): the status after a
 * worker was killed mid-request, the dispatcher's account of it across a
 * reload, the ready line and the dispatcher's first line, the names of remote
 * workers, and what `osps status` says when it finds no instance.
 */
import assert from "node:assert/strict";
import { freePorts, osps, waitFor, waitForLog, withInstance } from "./harness.ts";
import { LinkState, Segment } from "../mod/ipc/shm.ts";
import { segmentStatus, statusTable } from "../mod/ops/instance_status.ts";

Deno.test("a worker killed mid-request: its replacement holds no connection, and a reload does not report the death again", async () => {
  await withInstance({ workers: 2, flags: ["--heartbeat-ms=100", "--hang-timeout-ms=800"] }, async (inst) => {
    const before = await inst.status();
    const r = await inst.client(["fib", "45"]);
    assert.notEqual(r.code, 0);
    const s = await waitFor("the killed worker replaced and ready", async () => {
      const now = await inst.status();
      const fresh = now.workers.filter((w) => !before.workers.some((b) => b.pid === w.pid));
      return fresh.length === 1 && now.workers.every((w) => w.state === "ready") && now;
    });
    assert.deepEqual(s.workers.map((w) => w.conns), [0, 0], "no connection is open anywhere now");
    const lost = /worker \d was killed: "fib 45" blocked it past the 800 ms hang timeout/g;
    assert.equal(inst.logs().match(lost)?.length, 1, "the dispatcher tells the loss once");
    const o = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(o.code, 0, o.stderr);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(
      inst.logs().match(lost)?.length,
      1,
      "a worker that exited cleanly is not reported dead again",
    );
  });
});

Deno.test("the ready line and the dispatcher's first line say what holds: worker count, the ports workers use", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    const p = inst.port;
    assert.match(
      inst.readyLine,
      new RegExp(`^ready dispatcher=127\\.0\\.0\\.1:${p} workers=2 worker-ports=${p + 1}-${p + 3} `),
    );
    // The dispatcher's log line and its ready line go out on different pipes: either may reach the watchdog first.
    await waitForLog(inst, /dispatcher serving on 127\.0\.0\.1:\d+ for 2 local workers and their spare slot/);
    for (let i = 0; i < 2; i++) assert.equal((await osps(["reload", `--run-dir=${inst.runDir}`])).code, 0);
    const s = await inst.status();
    for (const w of s.workers) assert.ok(w.port >= p + 1 && w.port <= p + 3, `worker ${w.id} on ${w.port}`);
  });
});

Deno.test("osps status with no instance there says how to name one", async () => {
  const o = await osps(["status", `--port=${freePorts(1)}`]);
  assert.equal(o.code, 1);
  assert.match(o.stderr, /no osps instance is running in ".*"; for another instance pass --run-dir DIR/);
});

Deno.test("status names a remote worker by its address, the same on both hosts, and shows each watchdog's pid", () => {
  const name = `/osps-test-view-${Deno.pid}`;
  const seg = Segment.create(name, 1 + 3 + 1, 7, 2222); // the dispatcher, 2 workers and the spare, 1 remote slot
  try {
    for (const i of [1, 2]) {
      seg.slot(i).store("pid", 100 + i);
      seg.slot(i).store("port", 2222 + i);
    }
    seg.slot(3).store("spare", 1);
    const remote = seg.slot(4);
    remote.store("link_state", LinkState.ATTACHED);
    remote.store("pid", 4321);
    remote.store("port", 2223);
    remote.setText("host", "10.0.0.2");
    remote.store("remote_watchdog_pid", 777);
    const s = segmentStatus(
      seg,
      { runDir: "/r", shm: name, host: "10.0.0.1", workers: 2, linkPort: 2300 },
      0,
    );
    assert.deepEqual(s.workers.map((w) => w.name), ["worker 1", "worker 2", "worker 10.0.0.2:2223"]);
    const table = statusTable(s);
    assert.match(table, /\bWATCHDOG\b/);
    assert.match(table, /^worker 10\.0\.0\.2:2223 +4321 +10\.0\.0\.2 +2223 .* 777$/m);
  } finally {
    seg.close();
    Segment.unlink(name);
  }
});
