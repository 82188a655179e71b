/**
 * Workers that serve several clients at once (`--worker-concurrency N`), as
 * their clients see them: a request that blocks its worker is still caught,
 * each client on the killed worker is told exactly what happened to its own
 * request (never started, killed because of another request, killed for its
 * own), quarantine counts only the request to blame, a deadline blames the
 * request that ran past it, and status shows busy/N.
 */
import assert from "node:assert/strict";
import { Session } from "../mod/client/session.ts";
import { ServiceError } from "../mod/errors.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import { checkGreeting, parseReply, Status } from "../mod/net/protocol.ts";
import { type Instance, osps, waitFor, waitReplaced, withInstance } from "./harness.ts";
import { cluster, PORT } from "./support/cluster.ts";
import { namespacesUsable } from "./support/netns.ts";

/** `osps client --json …`, parsed: the answer, or the error the client was told. */
async function request(inst: Instance, ...args: string[]): Promise<{ code: number; text: string }> {
  const o = await inst.client(["--json", ...args]);
  const r = JSON.parse(o.stdout.trim().split("\n").pop()!);
  return o.code === 0 ? { code: 200, text: r.result } : { code: r.code, text: r.error };
}

/** A dispatcher connection holding an unused ticket: its OUTCOME is asked later. */
async function unusedTicket(inst: Instance): Promise<{ conn: LineConn; ticket: string }> {
  const conn = await LineConn.connect("127.0.0.1", inst.port);
  checkGreeting(parseReply((await conn.readLine(5_000))!));
  await conn.writeLine("REQUEST echo");
  const assign = parseReply((await conn.readLine(5_000))!);
  assert.equal(assign.code, Status.OK, assign.text);
  return { conn, ticket: assign.text.split(" ").pop()! };
}

Deno.test("N tickets per worker: a blocking request kills its worker; each client is told what became of its own request; then its type runs alone, and quarantine counts only the culprit", async () => {
  const flags = [
    "--worker-concurrency=4",
    "--heartbeat-ms=100",
    "--hang-timeout-ms=800",
    "--quarantine-kills=2",
    "--ticket-ttl-ms=20000",
  ];
  await withInstance({ workers: 1, flags }, async (inst) => {
    let victim = (await inst.status()).workers[0]!.pid;
    // Two requests run, a third ticket waits unused, then a fourth request blocks the worker's event loop.
    const sleeps = [request(inst, "sleep", "5000"), request(inst, "sleep", "5000")];
    await waitFor("both sleeps running", async () => (await inst.status()).workers[0]!.busy === 2);
    const held = await unusedTicket(inst);
    assert.equal((await inst.status()).workers[0]!.work, "busy 2/4 +1 assigned");
    const culprit = await request(inst, "fib", "45");
    assert.equal(culprit.code, Status.WORKER_LOST);
    assert.match(culprit.text, /worker 1 was killed: "fib 45" blocked it past the 800 ms hang timeout/);
    for (const s of await Promise.all(sleeps)) {
      assert.equal(s.code, Status.WORKER_LOST);
      assert.match(
        s.text,
        /worker 1 was killed while running "sleep 5000": another request \("fib 45"\) blocked it past the 800 ms hang timeout/,
      );
    }
    await held.conn.writeLine(`OUTCOME ${held.ticket}`);
    const outcome = parseReply((await held.conn.readLine(5_000))!);
    assert.equal(outcome.code, Status.WORKER_LOST);
    assert.match(outcome.text, /worker 1 ended before your request reached it \(.*\); nothing ran/);
    held.conn.close();
    victim = (await waitReplaced(inst, 1, victim)).workers[0]!.pid;

    // fib has killed a worker: its next request waits for a worker of its own, so that it takes nobody with it.
    const more = [request(inst, "sleep", "1500"), request(inst, "sleep", "1500")];
    await waitFor("both sleeps running", async () => (await inst.status()).workers[0]!.busy === 2);
    const again = await request(inst, "fib", "45");
    assert.equal(again.code, Status.WORKER_LOST);
    assert.match(again.text, /worker 1 was killed: "fib 45" blocked it past the 800 ms hang timeout/);
    for (const s of await Promise.all(more)) assert.deepEqual(s, { code: 200, text: "slept 1500" });
    await waitReplaced(inst, 1, victim);
    // Two kills, both fib's: fib is refused; sleep, whose requests died once as bystanders, is served.
    const fib = await request(inst, "fib", "10");
    assert.equal(fib.code, Status.BUSY);
    assert.match(fib.text, /fib is refused for \d+ s: it cost 2 workers/);
    assert.deepEqual(await request(inst, "sleep", "10"), { code: 200, text: "slept 10" });
  });
});

/** A request made in this process (no process start to wait for), answered or told what became of it. */
async function inProcess(inst: Instance, type: string, arg: string): Promise<{ code: number; text: string }> {
  const s = await Session.open("127.0.0.1", inst.port, { timeoutMs: 30_000 });
  try {
    return { code: 200, text: (await s.request(type, arg)).text };
  } catch (err) {
    if (err instanceof ServiceError) return { code: err.status, text: err.message };
    throw err;
  } finally {
    await s.close().catch(() => {});
  }
}

Deno.test("N tickets per worker: a request past its deadline is blamed alone; the one beside it is told why it died", async () => {
  const flags = ["--worker-concurrency=4", "--heartbeat-ms=100", "--request-timeout-for=sleep:3000"];
  await withInstance({ workers: 1, flags }, async (inst) => {
    const late = inProcess(inst, "sleep", "10000");
    await waitFor("the long sleep running", async () => (await inst.status()).workers[0]!.busy === 1);
    await new Promise((r) => setTimeout(r, 1_500));
    // Within its own deadline, and still running when the long one is killed, 1.5 s later.
    const beside = inProcess(inst, "sleep", "2900");
    const [l, b] = await Promise.all([late, beside]);
    assert.equal(l.code, Status.WORKER_LOST, l.text);
    assert.match(l.text, /worker 1 was killed: "sleep 10000" ran past its 3000 ms deadline/);
    assert.equal(b.code, Status.WORKER_LOST, b.text);
    assert.match(
      b.text,
      /worker 1 was killed while running "sleep 2900": another request \("sleep 10000"\) ran past its 3000 ms deadline/,
    );
  });
});

Deno.test("N tickets per worker: clients up to N at once share one worker; status shows busy/N; one more waits", async () => {
  await withInstance({ workers: 1, flags: ["--worker-concurrency=3"] }, async (inst) => {
    const running = [1, 2, 3].map(() => request(inst, "sleep", "1500"));
    const s = await waitFor("three requests on the one worker", async () => {
      const st = await inst.status();
      return st.workers[0]!.busy === 3 ? st : null;
    });
    assert.equal(s.workers[0]!.work, "busy 3/3");
    assert.equal(s.workers[0]!.capacity, 3);
    // A fourth client waits for a place (202 QUEUED after 20 ms), and is served when one frees.
    const conn = await LineConn.connect("127.0.0.1", inst.port);
    checkGreeting(parseReply((await conn.readLine(5_000))!));
    await conn.writeLine("REQUEST echo");
    assert.equal(parseReply((await conn.readLine(5_000))!).code, Status.QUEUED);
    assert.equal(parseReply((await conn.readLine(5_000))!).code, Status.OK, "an ASSIGN once a place frees");
    conn.close();
    for (const r of await Promise.all(running)) assert.deepEqual(r, { code: 200, text: "slept 1500" });
  });
});

const usable = await namespacesUsable();

Deno.test({
  name:
    "N tickets per worker: a worker on another host holds N tickets at once too (the TCP link carries them)",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster({ mainWorkers: 1, joinedWorkers: 2, extra: ["--worker-concurrency=4"] });
    const load = osps(
      [
        "bench",
        `--host=${c.a.addr}`,
        `--port=${PORT}`,
        "--clients=10",
        "--requests=10",
        "--json",
        "sleep",
        "2500",
      ],
      { net: [c.a.addr, c.b.addr] },
    );
    const s = await waitFor("ten sleeps at once on three workers", async () => {
      const st = await c.status("main");
      return st.workers.reduce((t, w) => t + w.busy, 0) === 10 ? st : null;
    });
    const remote = s.workers.filter((w) => w.host === c.b.addr);
    assert.ok(
      remote.some((w) => w.busy > 1) && remote.every((w) => w.capacity === 4),
      `the remote workers hold several: ${JSON.stringify(remote.map((w) => w.work))}`,
    );
    const done = await load;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(JSON.parse(done.stdout).requests.ok, 10);
  },
});

Deno.test("N = 1, the seeds' model: fib 45 holds the only place, a second client waits in the queue; the kill blames fib, and the waiting client is served by the replacement", async () => {
  const flags = ["--worker-concurrency=1", "--heartbeat-ms=100", "--hang-timeout-ms=800"];
  await withInstance({ workers: 1, flags }, async (inst) => {
    const victim = (await inst.status()).workers[0]!.pid;
    const fib = inProcess(inst, "fib", "45");
    await waitFor("fib running", async () => (await inst.status()).workers[0]!.work === "busy");
    const waiting = inProcess(inst, "echo", "after the kill");
    const killed = await fib;
    assert.equal(killed.code, Status.WORKER_LOST);
    assert.match(killed.text, /worker 1 was killed: "fib 45" blocked it past the 800 ms hang timeout/);
    assert.deepEqual(
      await waiting,
      { code: 200, text: "after the kill" },
      "served once a worker was free again",
    );
    const s = await waitReplaced(inst, 1, victim);
    assert.equal(s.workers[0]!.capacity, 1);
    assert.equal(s.workers[0]!.last_exit, "killed: a request blocked it (no heartbeat)");
  });
});
