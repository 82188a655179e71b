/**
 * The whole seed flow on one host, through the command-line contract: a real
 * watchdog with 3 workers, real clients, real kill -9, real stop.
 */
import assert from "node:assert/strict";
import {
  assertNothingLeft,
  type Instance,
  startInstance,
  waitFor,
  withInstance,
  zombiesOf,
} from "./harness.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import { checkGreeting, formatRun, parseAssign, parseReply, Status } from "../mod/net/protocol.ts";

async function assign(inst: Instance, type: string): Promise<{ host: string; port: number; ticket: string }> {
  const d = await LineConn.connect("127.0.0.1", inst.port);
  try {
    checkGreeting(parseReply((await d.readLine(5000))!));
    await d.writeLine(`REQUEST ${type}`);
    for (;;) {
      const reply = parseReply((await d.readLine(5000))!);
      if (reply.code !== Status.QUEUED) return parseAssign(reply);
    }
  } finally {
    await d.writeLine("QUIT");
    d.close();
  }
}

async function presentTicket(port: number, line: string): Promise<{ code: number; text: string }> {
  const w = await LineConn.connect("127.0.0.1", port);
  try {
    await w.writeLine(line);
    checkGreeting(parseReply((await w.readLine(5000))!));
    const reply = await w.readLine(5000);
    assert.ok(reply !== null, "worker must answer, not close silently");
    return parseReply(reply);
  } finally {
    w.close();
  }
}

Deno.test("24 parallel clients are all served correctly by 3 workers", async () => {
  await withInstance({ workers: 3 }, async (inst) => {
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) => inst.client(["echo", `client-${i}`])),
    );
    results.forEach((r, i) => {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `client-${i}\n`);
    });
    const s = await inst.status();
    assert.equal(s.workers.length, 3);
    assert.equal(s.workers.reduce((n, w) => n + w.served, 0), 24);
    assert.equal(s.dispatcher.served, 24);
    assert.ok(s.workers.every((w) => w.state === "ready" && w.pid > 0));
  });
});

Deno.test("every request type answers through the full flow; bad input gets a clear error", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    const cases: Array<[string[], RegExp]> = [
      [["echo", "hello", "world"], /^hello world\n$/],
      [["upper", "abc"], /^ABC\n$/],
      [["time"], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n$/],
      [["sha256", "abc"], /^ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n$/],
      [["sleep", "20"], /^slept 20\n$/],
      [["fib", "20"], /^6765\n$/],
      [["stats"], /^\{"worker":\d,"pid":\d+,"served":\d+,"uptime_ms":\d+\}\n$/],
    ];
    for (const [args, expected] of cases) {
      const r = await inst.client(args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stdout, expected);
    }
    const unknown = await inst.client(["nope"]);
    assert.notEqual(unknown.code, 0);
    assert.match(
      unknown.stderr,
      /unknown request type "nope"; known: chat, echo, fib, hold, sha256, sleep, stats, time, upper/,
    );
    const negative = await inst.client(["sleep", "-5"]);
    assert.equal(negative.code, 3);
    assert.match(negative.stderr, /400 sleep takes a whole number from 0 to 30000/);
    const huge = await inst.client(["fib", "100000"]);
    assert.match(huge.stderr, /400 fib takes a whole number from 0 to 78/);
    const chat = await inst.client(["chat", "nick"]);
    assert.equal(chat.code, 3);
    assert.match(chat.stderr, /503 chat is not enabled on this instance/);
    // A bad request cost nothing: the pool still serves.
    assert.equal((await inst.client(["echo", "still here"])).stdout, "still here\n");
  });
});

Deno.test("--repeat sends N requests on one dispatcher connection; --json prints one object each", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    const r = await inst.client(["--repeat=5", "--json", "upper", "x"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 5);
    for (const l of lines) {
      assert.equal(l.code, 200);
      assert.equal(l.result, "X");
      assert.ok(l.worker_port > inst.port && l.worker_port <= inst.port + 2);
    }
    const s = await inst.status();
    assert.equal(s.dispatcher.served, 5);
  });
});

Deno.test("interactive client reads one request per line and keeps going after an error", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    const r = await inst.client([], { stdin: "echo one\nbogus\nupper two\nquit\necho never\n" });
    assert.equal(r.stdout, "one\nTWO\n");
    assert.match(r.stderr, /unknown request type "bogus"/);
    assert.equal(r.code, 3);
  });
});

Deno.test("a worker serves only a valid, unused ticket issued for it", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    // A guessed ticket.
    const guess = await presentTicket(inst.port + 1, formatRun("0".repeat(32), "echo", "x"));
    assert.equal(guess.code, Status.BAD_TICKET);
    // Not a ticket at all.
    const junk = await presentTicket(inst.port + 1, "RUN nope echo x");
    assert.equal(junk.code, Status.BAD_TICKET);
    // A real ticket, used once, then replayed.
    const a = await assign(inst, "echo");
    const ok = await presentTicket(a.port, formatRun(a.ticket, "echo", "first"));
    assert.deepEqual(ok, { code: 200, text: "first" });
    const replay = await presentTicket(a.port, formatRun(a.ticket, "echo", "again"));
    assert.equal(replay.code, Status.BAD_TICKET);
    // A ticket taken to the other worker.
    const b = await assign(inst, "echo");
    const other = b.port === inst.port + 1 ? inst.port + 2 : inst.port + 1;
    assert.equal((await presentTicket(other, formatRun(b.ticket, "echo", "x"))).code, Status.BAD_TICKET);
    // A ticket for another request type.
    assert.equal((await presentTicket(b.port, formatRun(b.ticket, "upper", "x"))).code, Status.BAD_TICKET);
    // Still valid for its own worker and type after those attempts.
    assert.deepEqual(await presentTicket(b.port, formatRun(b.ticket, "echo", "mine")), {
      code: 200,
      text: "mine",
    });
  });
});

Deno.test("an unused ticket expires and its worker is handed out again", async () => {
  await withInstance({ workers: 1, flags: ["--ticket-ttl-ms=300"] }, async (inst) => {
    const a = await assign(inst, "echo");
    await new Promise((r) => setTimeout(r, 600));
    const late = await presentTicket(a.port, formatRun(a.ticket, "echo", "late"));
    assert.equal(late.code, Status.BAD_TICKET);
    const r = await inst.client(["echo", "next"]);
    assert.equal(r.stdout, "next\n", r.stderr);
  });
});

Deno.test("kill -9 of a worker: it is reaped and replaced, the pool keeps serving", async () => {
  await withInstance({ workers: 3 }, async (inst) => {
    const before = await inst.status();
    const victim = before.workers[1]!;
    Deno.kill(victim.pid, "SIGKILL");
    const after = await waitFor("worker 2 replaced", async () => {
      const s = await inst.status();
      const w = s.workers[1]!;
      return w.pid > 0 && w.pid !== victim.pid && w.state === "ready" && w.work === "idle" ? s : null;
    });
    assert.equal(after.workers[1]!.restarts, 1);
    assert.equal(after.workers[1]!.last_exit, "signal 9");
    assert.equal(
      after.dispatcher.pid,
      before.dispatcher.pid,
      "a worker restart must not restart the dispatcher",
    );
    assert.equal(after.workers[0]!.pid, before.workers[0]!.pid, "other workers untouched");
    assert.deepEqual(zombiesOf(inst.pid), []);
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => inst.client(["echo", `${i}`])));
    assert.ok(results.every((r, i) => r.code === 0 && r.stdout === `${i}\n`), JSON.stringify(results));
  });
});

Deno.test("--exit-after N stops the instance cleanly after N requests", async () => {
  const inst = await startInstance({
    workers: 2,
    flags: ["--exit-after=3", "--heartbeat-ms=50", "--hang-timeout-ms=3000"],
  });
  for (let i = 0; i < 3; i++) assert.equal((await inst.client(["echo", "x"])).code, 0);
  assert.equal(await inst.exited(), 0);
  await assertNothingLeft(inst);
});

Deno.test("--log-format json: every role logs one JSON object per line with its role and pid", async () => {
  const stopped = await withInstance({ workers: 2, flags: ["--log-format=json"] }, async (inst) => {
    assert.equal((await inst.client(["echo", "x"])).code, 0);
  });
  const lines = stopped.logs().trim().split("\n");
  const roles = new Set<string>();
  for (const line of lines) {
    const rec = JSON.parse(line);
    assert.equal(typeof rec.pid, "number");
    assert.equal(typeof rec.msg, "string");
    assert.match(rec.level, /^(trace|debug|info|warning|error|fatal)$/);
    roles.add(rec.role);
  }
  assert.deepEqual([...roles].sort(), ["dispatcher", "watchdog", "worker 1", "worker 2"]);
});

Deno.test("a client that leaves the queue gives up its place: the next one is served without waiting for a ticket to expire", async () => {
  // One client per worker (the seeds' model): a second client waits in the queue.
  await withInstance(
    { workers: 1, flags: ["--ticket-ttl-ms=20000", "--worker-concurrency=1"] },
    async (inst) => {
      const busy = inst.client(["sleep", "1500"]);
      await waitFor(
        "the only worker to be busy",
        async () => (await inst.status()).workers[0]!.busy > 0,
      );
      // One client queues, then leaves once told so; another leaves at once, before any QUEUED line.
      const quitter = await LineConn.connect("127.0.0.1", inst.port);
      await quitter.writeLine("REQUEST echo");
      checkGreeting(parseReply((await quitter.readLine(5000))!));
      assert.equal(parseReply((await quitter.readLine(5000))!).code, Status.QUEUED);
      quitter.close();
      const hasty = await LineConn.connect("127.0.0.1", inst.port);
      await hasty.writeLine("REQUEST echo");
      checkGreeting(parseReply((await hasty.readLine(5000))!)); // all read: its close is a clean FIN, not a reset
      hasty.close();
      // The next client queues behind it and must get the worker as soon as it frees.
      const t0 = Date.now();
      const next = await inst.client(["echo", "mine"]);
      const waited = Date.now() - t0;
      assert.equal(next.stdout, "mine\n", next.stderr);
      assert.ok(waited < 15_000, `served after ${waited} ms: it waited for an abandoned ticket to expire`);
      assert.equal((await busy).stdout, "slept 1500\n");
    },
  );
});
