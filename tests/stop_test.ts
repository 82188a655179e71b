/**
 * Stopping and refusing, as clients see them: a graceful stop lets work in
 * flight finish and tells queued clients why they are turned away; a full
 * queue is a 503 status line on a connection that stays usable; a worker that
 * cannot run is never routed to.
 */
import assert from "node:assert/strict";
import { LineConn } from "../mod/net/line_conn.ts";
import { checkGreeting, parseReply, type Reply, VERSION_TOKEN } from "../mod/net/protocol.ts";
import {
  assertNothingLeft,
  killUntilFailed,
  mapTable,
  osps,
  pollFast,
  startInstance,
  withInstance,
} from "./harness.ts";
import { requestsInProgress } from "../mod/link/ticket_reports.ts";

async function dispatcher(port: number): Promise<LineConn> {
  const c = await LineConn.connect("127.0.0.1", port);
  checkGreeting(parseReply((await c.readLine({ timeoutMs: 5_000 }))!));
  return c;
}

async function reply(c: LineConn): Promise<Reply> {
  return parseReply((await c.readLine({ timeoutMs: 10_000 }))!);
}

Deno.test("osps stop: the request in flight finishes, a queued client gets 503 'stopping', and nothing is left", async () => {
  const inst = await startInstance({ workers: 1, flags: ["--worker-concurrency=1"] }); // a second client waits
  const inFlight = inst.client(["sleep", "1500"]);
  const table = mapTable(inst);
  try {
    await pollFast("the sleep running", () => requestsInProgress(table.slot(1)).length > 0, 10_000, 5);
  } finally {
    table.close();
  }
  const queued = await dispatcher(inst.port);
  await queued.writeLine("REQUEST echo");
  assert.deepEqual(await reply(queued), { code: 202, text: "QUEUED 1" });
  const stopped = await osps(["stop", `--run-dir=${inst.runDir}`]);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(
    stopped.stdout,
    /^stopped the osps instance in .+: watchdog pid \d+, dispatcher on 127\.0\.0\.1:\d+, 1 worker \(\d+ ms\)$/m,
  );
  assert.deepEqual(await reply(queued), { code: 503, text: "server is stopping; retry later" });
  queued.close();
  const r = await inFlight;
  assert.equal(r.stdout, "slept 1500\n", r.stderr);
  assert.equal(await inst.exited(), 0);
  await assertNothingLeft(inst);
});

Deno.test("osps stop with an idle client connected: the dispatcher exits on its own, not by SIGKILL", async () => {
  const inst = await startInstance({ workers: 1 });
  // A session between two requests: greeted, then idle (as `osps client` interactive is between lines).
  const idle = await dispatcher(inst.port);
  await idle.writeLine(`HELLO ${VERSION_TOKEN}`);
  assert.equal((await reply(idle)).code, 200);
  const stopped = await osps(["stop", `--run-dir=${inst.runDir}`]);
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal(await inst.exited(), 0);
  assert.match(inst.logs(), /watchdog\[\d+\] dispatcher stopped \(exit 0\)/, "it ended by itself");
  assert.equal(
    await idle.readLine({ timeoutMs: 5_000 }).catch(() => null),
    null,
    "the idle session was closed",
  );
  idle.close();
  await assertNothingLeft(inst);
});

Deno.test("a full queue is a 503 status line; the connection stays usable", async () => {
  await withInstance({ workers: 1, flags: ["--queue-size=1", "--worker-concurrency=1"] }, async (inst) => {
    const busy = inst.client(["sleep", "1500"]);
    const table = mapTable(inst);
    try {
      await pollFast("the worker busy", () => requestsInProgress(table.slot(1)).length > 0, 10_000, 5);
    } finally {
      table.close();
    }
    const waiting = await dispatcher(inst.port);
    await waiting.writeLine("REQUEST echo");
    assert.deepEqual(await reply(waiting), { code: 202, text: "QUEUED 1" });
    const refused = await dispatcher(inst.port);
    await refused.writeLine("REQUEST echo");
    assert.deepEqual(await reply(refused), {
      code: 503,
      text: "all workers busy and 1 clients waiting; retry later",
    });
    await refused.writeLine("QUIT");
    assert.deepEqual(await reply(refused), { code: 221, text: "bye" });
    refused.close();
    assert.equal((await reply(waiting)).code, 200, "the queued client is served when the worker frees");
    await waiting.writeLine("QUIT");
    waiting.close();
    assert.equal((await busy).stdout, "slept 1500\n");
  });
});

Deno.test("a worker that cannot run is never routed to: every client goes to the one that can", async () => {
  await withInstance({
    workers: 2,
    flags: ["--restart-budget=1", "--restart-window-ms=60000", "--failed-retry-ms=60000"],
  }, async (inst) => {
    const table = mapTable(inst);
    try {
      const slot = table.slot(2);
      await killUntilFailed(table, [2], 20_000);
      const servedBefore = slot.load("served");
      const ports = new Set<number>();
      for (let i = 0; i < 20; i++) {
        const o = await inst.client(["--json", "echo", `${i}`]);
        assert.equal(o.code, 0, o.stderr);
        ports.add(JSON.parse(o.stdout).worker_port);
      }
      assert.deepEqual([...ports], [inst.port + 1]);
      assert.equal(slot.load("served"), servedBefore);
    } finally {
      table.close();
    }
  });
});

Deno.test("client --json reports an error as JSON on stdout too", async () => {
  await withInstance({ workers: 1 }, async (inst) => {
    const o = await inst.client(["--json", "fib", "-5"]);
    assert.equal(o.code, 3);
    assert.deepEqual(JSON.parse(o.stdout), {
      code: 400,
      error: 'worker: 400 fib takes a whole number from 0 to 78, got "-5"',
    });
    assert.match(o.stderr, /fib takes a whole number/);
  });
});
