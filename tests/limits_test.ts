/**
 * Limits: the admission rules on a driven clock, then each limit against a
 * live instance: the violator gets its status line and is closed, everyone
 * else keeps being served, and `osps status` shows the limits in force.
 */
import assert from "node:assert/strict";
import {
  addrKey,
  Admission,
  type AdmissionLimits,
  type Admitted,
  EVICTED,
  hostOf,
} from "../mod/net/admission.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import {
  checkGreeting,
  formatRun,
  parseAssign,
  parseReply,
  type Reply,
  Status,
} from "../mod/net/protocol.ts";
import { STAT_CODES } from "../mod/ipc/stats.ts";
import { type Instance, mapTable, waitFor, withInstance } from "./harness.ts";

const LOOSE: AdmissionLimits = {
  maxConns: 100,
  maxConnsPerAddr: 100,
  ratePerSec: 0,
  rateBurst: 1,
  badTicketLimit: 100,
  badTicketWindowMs: 1000,
};

function clock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000_000;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

Deno.test("Admission caps connections overall and per address, and releases them", () => {
  const a = new Admission({ ...LOOSE, maxConns: 3, maxConnsPerAddr: 2 });
  const x1 = a.admit("10.0.0.1"), x2 = a.admit("10.0.0.1");
  assert.ok(!Admission.refused(x1) && !Admission.refused(x2));
  const x3 = a.admit("10.0.0.1");
  assert.ok(Admission.refused(x3));
  assert.equal(x3.status, Status.TOO_MANY);
  assert.match(x3.reason, /from 10\.0\.0\.1 \(2\)/);
  assert.ok(!Admission.refused(a.admit("10.0.0.2")));
  const full = a.admit("10.0.0.3");
  assert.ok(Admission.refused(full) && /too many connections \(3\)/.test(full.reason));
  x1.release();
  x1.release(); // idempotent
  assert.equal(a.open, 2);
  assert.ok(!Admission.refused(a.admit("10.0.0.1")));
});

/** Admits from `addr`, recording evictions in `evicted` under `name`. */
function admitAs(a: Admission, addr: string, name: string, evicted: string[]) {
  return a.admit(addr, (r) => evicted.push(`${name} ${r.status}`));
}

Deno.test("Admission at an address's cap closes that address's oldest line-less connection, never one that spoke", () => {
  const a = new Admission({ ...LOOSE, maxConns: 100, maxConnsPerAddr: 3 });
  const evicted: string[] = [];
  const x = ["x1", "x2", "x3"].map((n) => admitAs(a, "10.0.0.1", n, evicted));
  const other = admitAs(a, "10.0.0.2", "other", evicted);
  assert.ok(x.every((c) => !Admission.refused(c)) && !Admission.refused(other));
  (x[0] as Admitted).spoke(); // x1 spoke: it stays
  const x4 = admitAs(a, "10.0.0.1", "x4", evicted);
  assert.ok(!Admission.refused(x4));
  assert.deepEqual(evicted, [`x2 ${EVICTED.status}`], "the oldest line-less one of its own address");
  assert.equal(a.open, 4);
  (x[1] as Admitted).release(); // the evicted one's session ends later: nothing is released twice
  assert.equal(a.open, 4);
  (x[2] as Admitted).spoke();
  x4.spoke();
  const x5 = admitAs(a, "10.0.0.1", "x5", evicted);
  assert.ok(Admission.refused(x5), "every connection of the address spoke: refused");
  assert.match(x5.reason, /too many connections from 10\.0\.0\.1 \(3\)/);
  assert.deepEqual(evicted, [`x2 ${EVICTED.status}`], "another address's line-less one is out of its reach");
  assert.equal(a.evictions, 1);
});

Deno.test("Admission at the overall cap closes the oldest line-less connection of any address", () => {
  const c = clock();
  const a = new Admission({ ...LOOSE, maxConns: 3, maxConnsPerAddr: 3, ratePerSec: 1, rateBurst: 2 }, c.now);
  const evicted: string[] = [];
  const p1 = admitAs(a, "10.0.0.1", "p1", evicted) as Admitted;
  admitAs(a, "10.0.0.2", "q1", evicted);
  admitAs(a, "10.0.0.3", "r1", evicted);
  p1.spoke();
  assert.ok(!Admission.refused(admitAs(a, "10.0.0.4", "s1", evicted)));
  assert.deepEqual(evicted, [`q1 ${EVICTED.status}`]);
  // A newcomer refused by its rate evicts nobody.
  admitAs(a, "10.0.0.5", "t1", evicted);
  admitAs(a, "10.0.0.5", "t2", evicted);
  const t3 = admitAs(a, "10.0.0.5", "t3", evicted);
  assert.ok(Admission.refused(t3) && /rate limit/.test(t3.reason));
  assert.deepEqual(evicted, [`q1 ${EVICTED.status}`, `r1 ${EVICTED.status}`, `s1 ${EVICTED.status}`]);
  assert.equal(a.open, 3);
  // A connection admitted without an eviction callback is never evicted.
  const b = new Admission({ ...LOOSE, maxConns: 1 });
  assert.ok(!Admission.refused(b.admit("10.0.0.1")));
  assert.ok(Admission.refused(b.admit("10.0.0.2", () => assert.fail("nothing to evict"))));
});

Deno.test("Admission rate-limits one address with a token bucket that refills over time", () => {
  const c = clock();
  const a = new Admission({ ...LOOSE, ratePerSec: 10, rateBurst: 5 }, c.now);
  for (let i = 0; i < 5; i++) assert.equal(a.request("h"), null, `request ${i} within the burst`);
  const r = a.request("h");
  assert.equal(r?.status, Status.TOO_MANY);
  assert.match(r!.reason, /rate limit for h \(10\/s\)/);
  assert.equal(a.request("other"), null, "another address has its own bucket");
  c.advance(100); // one token back
  assert.equal(a.request("h"), null);
  assert.notEqual(a.request("h"), null);
});

Deno.test("Admission refuses an address's bad tickets after too many, until the window passes; never its connections", () => {
  const c = clock();
  const a = new Admission({ ...LOOSE, badTicketLimit: 3, badTicketWindowMs: 10_000 }, c.now);
  assert.equal(a.badTicket("h"), null);
  c.advance(1000);
  assert.equal(a.badTicket("h"), null);
  const shut = a.badTicket("h");
  assert.ok(shut && /too many bad tickets; retry in 9 s/.test(shut.reason), JSON.stringify(shut));
  assert.ok(
    !Admission.refused(a.admit("h")),
    "its connections are still admitted (a valid ticket is served)",
  );
  assert.equal(a.badTicket("k"), null, "other addresses are not affected");
  c.advance(9_001);
  assert.equal(a.badTicket("h"), null, "the oldest bad ticket left the window");
});

Deno.test("addrKey: every loopback alias is one address, an IPv6 client is its /64", () => {
  assert.equal(addrKey("127.0.0.1"), "loopback");
  assert.equal(addrKey("127.3.2.1"), "loopback");
  assert.equal(addrKey("::1"), "loopback");
  assert.equal(addrKey("::ffff:127.0.0.9"), "loopback");
  assert.equal(addrKey("::ffff:192.0.2.7"), "192.0.2.7");
  assert.equal(addrKey("192.0.2.7"), "192.0.2.7");
  assert.equal(addrKey("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
  assert.equal(addrKey("2001:db8:1:2::99"), addrKey("2001:db8:1:2:ffff::1"));
  assert.notEqual(addrKey("2001:db8:1:2::1"), addrKey("2001:db8:1:3::1"));
});

Deno.test("Admission forgets idle addresses, so a flood of addresses cannot grow memory", () => {
  const c = clock();
  const a = new Admission({ ...LOOSE, ratePerSec: 1000, rateBurst: 10 }, c.now);
  for (let i = 0; i < 20_000; i++) {
    const x = a.admit(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    if (!Admission.refused(x)) x.release();
    c.advance(1);
  }
  assert.ok(a.tracked <= 4097, `tracks ${a.tracked} addresses`);
  assert.equal(a.open, 0);
});

Deno.test("hostOf strips the port, IPv6 included", () => {
  assert.equal(hostOf("127.0.0.1:4000"), "127.0.0.1");
  assert.equal(hostOf("::1:4000"), "::1");
});

/** Everything a server sends until it closes (bounded). */
async function drain(conn: LineConn): Promise<Reply[]> {
  const out: Reply[] = [];
  for (;;) {
    const line = await conn.readLine(10_000);
    if (line === null) return out;
    out.push(parseReply(line));
  }
}

async function raw(port: number, bytes: string, end = false): Promise<Reply[]> {
  const c = await LineConn.connect("127.0.0.1", port);
  try {
    await c.conn.write(new TextEncoder().encode(bytes));
    if (end) await c.conn.closeWrite();
    return await drain(c);
  } finally {
    c.close();
  }
}

const codes = (rs: Reply[]) => rs.map((r) => r.code);

async function served(inst: Instance): Promise<void> {
  const o = await inst.client(["echo", "still here"]);
  assert.equal(o.code, 0, o.stderr);
  assert.equal(o.stdout, "still here\n");
}

Deno.test("slowloris gets 408, an over-long line 413, one address past its connection cap 429", async () => {
  await withInstance({
    workers: 1,
    flags: [
      "--handshake-timeout-ms=300",
      "--idle-timeout-ms=400",
      "--max-line-bytes=128",
      "--max-conns-per-addr=4",
      "--rate-per-addr=0",
    ],
  }, async (inst) => {
    const worker = inst.port + 1;
    // Slowloris: a line that never ends, and a connection that never speaks, on both roles.
    assert.deepEqual(codes(await raw(inst.port, "REQUEST ec")), [220, 408]);
    assert.deepEqual(codes(await raw(inst.port, "")), [220, 408]);
    assert.deepEqual(codes(await raw(worker, "RUN 0123")), [220, 408]);
    // A drip of one byte every 50 ms does not stretch the deadline: the timeout covers the whole line.
    const drip = await LineConn.connect("127.0.0.1", inst.port);
    try {
      checkGreeting(parseReply((await drip.readLine(5_000))!));
      let closed = false;
      const dripping = (async () => {
        for (let i = 0; i < 200 && !closed; i++) {
          await drip.conn.write(new TextEncoder().encode("R")).catch(() => (closed = true));
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const cut = await drain(drip);
      closed = true;
      await dripping;
      assert.deepEqual(codes(cut), [408]);
    } finally {
      drip.close();
    }
    // Idle after a first good line.
    const idle = await raw(inst.port, "HELLO OSPS/1\n");
    assert.deepEqual(codes(idle), [220, 200, 408]);
    assert.match(idle[2]!.text, /no complete line within 400 ms/);
    // Too long, with and without LF, on both roles.
    const long = "REQUEST " + "e".repeat(200);
    const r = await raw(inst.port, long + "\n");
    assert.deepEqual(codes(r), [220, 413]);
    assert.equal(r[1]!.text, "line longer than 128 bytes");
    assert.deepEqual(codes(await raw(inst.port, long)), [220, 413], "no LF needed to trip the limit");
    assert.deepEqual(codes(await raw(worker, `RUN ${"0".repeat(300)}\n`)), [220, 413]);
    // Connections per address: with four that have spoken (line-less ones would make room), the fifth is
    // refused before its greeting, the others still work.
    const held = await Promise.all(Array.from({ length: 4 }, () => LineConn.connect("127.0.0.1", inst.port)));
    try {
      for (const h of held) {
        checkGreeting(parseReply((await h.readLine(5_000))!));
        await h.writeLine("HELLO OSPS/1");
        assert.equal(parseReply((await h.readLine(5_000))!).code, 200);
      }
      const refused = await raw(inst.port, "HELLO OSPS/1\n");
      assert.deepEqual(codes(refused), [429]);
      assert.match(refused[0]!.text, /too many connections from loopback \(4\)/);
      await held[0]!.writeLine("HELLO OSPS/1");
      assert.equal(parseReply((await held[0]!.readLine(5_000))!).code, 200, "held connections keep working");
    } finally {
      for (const h of held) h.close();
    }
    await served(inst); // and once they are gone, a normal client gets in again
    const s = await inst.status();
    assert.equal(s.limits["max-conns-per-addr"], 4);
    assert.equal(s.limits["max-line-bytes"], 128);
    assert.equal(s.limits["handshake-timeout-ms"], 300);
    assert.equal(s.limits["max-conns"], 1024);
    assert.ok(
      ["rate-per-addr", "bad-ticket-limit", "queue-size", "ticket-ttl-ms", "write-timeout-ms"].every((k) =>
        k in s.limits
      ),
    );
    assert.deepEqual((await inst.status()).workers.map((w) => w.restarts), [0]);
  });
});

Deno.test("a flood of lines from one address is cut off with 429; guessed tickets get the address throttled", async () => {
  await withInstance({
    workers: 2,
    flags: ["--rate-per-addr=20", "--rate-burst=20", "--bad-ticket-limit=3", "--ticket-ttl-ms=2000"],
  }, async (inst) => {
    // 40 pipelined lines: the first ones are answered, then one 429 and the connection is closed.
    const flood = await raw(inst.port, "HELLO OSPS/1\n".repeat(40));
    const c = codes(flood);
    assert.equal(c[0], 220);
    assert.equal(c.at(-1), 429, JSON.stringify(flood.slice(-2)));
    assert.ok(c.filter((x) => x === 200).length < 40 && c.filter((x) => x === 200).length >= 10, c.join());
    assert.match(flood.at(-1)!.text, /rate limit for loopback \(20\/s\)/);
    await new Promise((r) => setTimeout(r, 1_200)); // the bucket refills at 20/s
    await served(inst);

    // Three guessed tickets at worker 1, then its bad tickets get 429.
    const w1 = inst.port + 1;
    for (let i = 0; i < 3; i++) {
      const r = await raw(w1, formatRun("f".repeat(31) + i, "echo", "guess") + "\n");
      assert.deepEqual(codes(r), [220, i < 2 ? 401 : 429]);
    }
    const shut = await raw(w1, formatRun("0".repeat(31) + "1", "echo", "x") + "\n");
    assert.deepEqual(codes(shut), [220, 429]);
    assert.match(shut[1]!.text, /too many bad tickets; retry in \d+ s/);
    // The lockout never keeps this address's honest clients from that worker: a real ticket is served there.
    const d = await LineConn.connect("127.0.0.1", inst.port);
    try {
      checkGreeting(parseReply((await d.readLine(5_000))!));
      for (let tries = 0;; tries++) {
        assert.ok(tries < 4, "the dispatcher hands out worker 1 within a few requests");
        await d.writeLine("REQUEST echo");
        let reply = parseReply((await d.readLine(5_000))!);
        while (reply.code === Status.QUEUED) reply = parseReply((await d.readLine(5_000))!);
        const a = parseAssign(reply);
        const r = await raw(a.port, formatRun(a.ticket, "echo", "honest") + "\n");
        assert.deepEqual(r.map((x) => `${x.code} ${x.code === 200 ? x.text : ""}`), ["220 ", "200 honest"]);
        if (a.port === w1) break;
      }
    } finally {
      d.close();
    }
    const s = await inst.status();
    assert.deepEqual([s.dispatcher, ...s.workers].map((x) => x.restarts), [0, 0, 0]);
  });
});

Deno.test("a client pipelining REQUEST behind a refusal at the door reports the 429 and its reason", async () => {
  await withInstance({ workers: 1, flags: ["--max-conns-per-addr=1"] }, async (inst) => {
    const holder = await LineConn.connect("127.0.0.1", inst.port);
    try {
      checkGreeting(parseReply((await holder.readLine(5000))!));
      await holder.writeLine("HELLO OSPS/1"); // it has spoken: it is not closed to make room
      assert.equal(parseReply((await holder.readLine(5000))!).code, 200);
      for (let i = 0; i < 5; i++) {
        // osps client sends REQUEST before reading the greeting: the refusal must survive that.
        const o = await inst.client(["--no-retry", "echo", "x"]);
        assert.notEqual(o.code, 0);
        assert.match(o.stderr, /429 too many connections from loopback/, o.stderr);
      }
    } finally {
      holder.close();
    }
    assert.equal((await inst.client(["echo", "served again"])).stdout, "served again\n");
  });
});

Deno.test("hundreds of sockets that never send a line lock no client out, on the dispatcher or a worker", async () => {
  await withInstance({
    workers: 1,
    // Silent sockets are not timed out during the test: only making room can let the client in.
    flags: ["--handshake-timeout-ms=120000"],
  }, async (inst) => {
    const before = await inst.status();
    const silent: Deno.TcpConn[] = [];
    try {
      // 500 at the dispatcher and 300 at the worker: far past the 256 one address (loopback) may hold.
      for (const [port, n] of [[inst.port, 500], [inst.port + 1, 300]] as const) {
        for (let i = 0; i < n; i++) silent.push(await Deno.connect({ hostname: "127.0.0.1", port }));
      }
      const o = await inst.client(["--no-retry", "echo", "hi"]);
      assert.equal(o.code, 0, o.stderr);
      assert.equal(o.stdout, "hi\n");
      // The oldest silent ones were told why they were closed.
      const first = new LineConn(silent[0]!);
      assert.equal(parseReply((await first.readLine(5_000))!).code, Status.READY);
      const told = parseReply((await first.readLine(5_000))!);
      assert.equal(told.code, EVICTED.status);
      assert.match(told.text, /no complete line yet, and the server needed the room/);
    } finally {
      for (const c of silent) {
        try {
          c.close();
        } catch { /* closed above */ }
      }
    }
    const after = await inst.status();
    assert.deepEqual([after.dispatcher, ...after.workers].map((x) => [x.pid, x.restarts]), [
      [before.dispatcher.pid, 0],
      [before.workers[0]!.pid, 0],
    ]);
    assert.match(inst.logs(), /closed \d+ connection\(s\) that sent no line yet, oldest first, to make room/);
  });
});

Deno.test("413 comes as soon as a line is known to be too long, without waiting for more bytes, on both roles", async () => {
  // A long handshake timeout: the only way to an answer within the read's bound is the 413 itself.
  await withInstance(
    { workers: 1, flags: ["--max-line-bytes=1024", "--handshake-timeout-ms=120000"] },
    async (inst) => {
      for (const port of [inst.port, inst.port + 1]) {
        const c = await LineConn.connect("127.0.0.1", port);
        try {
          assert.equal(parseReply((await c.readLine(10_000))!).code, Status.READY);
          await c.conn.write(new TextEncoder().encode("x".repeat(1025))); // 1,025 bytes, the last not a CR
          const r = parseReply((await c.readLine(20_000))!);
          assert.deepEqual([r.code, r.text], [Status.TOO_LONG, "line longer than 1024 bytes"]);
        } finally {
          c.close();
        }
        // 1,024 bytes and a CR may still be a line of 1,024 bytes: nothing yet; with the LF, it is not too long.
        const d = await LineConn.connect("127.0.0.1", port);
        try {
          assert.equal(parseReply((await d.readLine(10_000))!).code, Status.READY);
          await d.conn.write(new TextEncoder().encode("x".repeat(1024) + "\r"));
          await new Promise((r) => setTimeout(r, 200));
          await d.conn.write(new TextEncoder().encode("\n"));
          const r = parseReply((await d.readLine(20_000))!);
          assert.equal(r.code, Status.BAD_REQUEST, `not too long, only not a command: ${r.code} ${r.text}`);
        } finally {
          d.close();
        }
      }
    },
  );
});

/** Refusals with status `code` the role in slot `slot` counted so far. */
function refusalsOf(inst: Instance, slot: number, code: number): number {
  const seg = mapTable(inst);
  try {
    return seg.stats(slot).read().refusals[STAT_CODES.indexOf(String(code))]!;
  } finally {
    seg.close();
  }
}

Deno.test("a client that never reads large answers costs its own connection: no kill, no quarantine, the worker free again", async () => {
  await withInstance({
    workers: 1,
    flags: [
      "--max-line-bytes=16777216",
      "--request-timeout-ms=2000", // a worker held busy past it would be killed, and 3 kills quarantine echo
      "--write-timeout-ms=1500",
      "--handshake-timeout-ms=60000",
    ],
  }, async (inst) => {
    const before = await inst.status();
    const text = "x".repeat(12 << 20); // 12 MiB: more than loopback's socket buffers hold
    const d = await LineConn.connect("127.0.0.1", inst.port);
    const readers: Deno.TcpConn[] = [];
    try {
      checkGreeting(parseReply((await d.readLine(5_000))!));
      for (let round = 0; round < 4; round++) {
        await d.writeLine("REQUEST echo"); // session mode: one dispatcher connection, many requests
        let reply = parseReply((await d.readLine(30_000))!);
        while (reply.code === Status.QUEUED) reply = parseReply((await d.readLine(30_000))!);
        const a = parseAssign(reply);
        const w = await Deno.connect({ hostname: "127.0.0.1", port: a.port });
        readers.push(w); // never read
        const line = new TextEncoder().encode(formatRun(a.ticket, "echo", text) + "\n");
        for (let off = 0; off < line.length;) off += await w.write(line.subarray(off));
        // The answer is handed over: the worker is idle again long before the request deadline.
        await waitFor("the worker idle again", async () => (await inst.status()).workers[0]!.work === "idle");
        const o = await inst.client(["--no-retry", "echo", `honest ${round}`]);
        assert.equal(o.code, 0, `round ${round}: ${o.stderr}`);
        assert.equal(o.stdout, `honest ${round}\n`);
      }
      await waitFor("the unread answers timed out", () => refusalsOf(inst, 1, Status.TIMEOUT) >= 4, 30_000);
    } finally {
      d.close();
      for (const w of readers) w.close();
    }
    const after = await inst.status();
    assert.deepEqual(after.workers.map((w) => [w.pid, w.restarts]), [[before.workers[0]!.pid, 0]], "no kill");
    assert.doesNotMatch(inst.logs(), /killed|quarantine/);
    const q = await inst.client(["--no-retry", "echo", "not quarantined"]);
    assert.equal(q.stdout, "not quarantined\n", q.stderr);
  });
});

Deno.test("a client that pipelines lines and never reads the answers loses its dispatcher session, nothing else", async () => {
  await withInstance(
    { workers: 1, flags: ["--rate-per-addr=0", "--write-timeout-ms=1500"] },
    async (inst) => {
      const before = refusalsOf(inst, 0, Status.TIMEOUT);
      const c = await Deno.connect({ hostname: "127.0.0.1", port: inst.port });
      // 400,000 short bad lines: 64 bytes of answer each, 25 MB in all, far more than the socket buffers hold.
      const flood = new TextEncoder().encode("X\n".repeat(400_000));
      const writing = (async () => {
        for (let off = 0; off < flood.length;) off += await c.write(flood.subarray(off));
      })().catch(() => {}); // the server may close first
      try {
        await waitFor("the session closed for not reading", () => {
          const seg = mapTable(inst);
          try {
            return seg.slot(0).load("conns") === 0 && refusalsOf(inst, 0, Status.TIMEOUT) > before;
          } finally {
            seg.close();
          }
        }, 30_000);
        await writing;
        assert.ok(refusalsOf(inst, 0, Status.TIMEOUT) > before, "counted as a timeout");
        const o = await inst.client(["--no-retry", "echo", "others served"]);
        assert.equal(o.stdout, "others served\n", o.stderr);
        const s = await inst.status();
        assert.deepEqual([s.dispatcher.restarts, s.workers[0]!.restarts], [0, 0]);
      } finally {
        c.close();
      }
    },
  );
});
