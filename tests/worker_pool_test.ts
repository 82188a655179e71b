/**
 * The pool and the local link on a driven clock: both ends of each worker's
 * link live in this process over a real segment and real FIFOs, and time
 * moves only when the test says so.
 */
import assert from "node:assert/strict";
import { instancePaths, type PoolConfig } from "../mod/cli/config.ts";
import { POLL_MS, type PoolHooks, QUEUED_NOTICE_MS, WorkerPool } from "../mod/dispatch/worker_pool.ts";
import { ensureFifo, FifoPoller } from "../mod/ipc/fifo.ts";
import { Segment, type SlotView } from "../mod/ipc/shm.ts";
import { TicketState, ticketWord } from "../mod/link/slot_tickets.ts";
import { workSummary } from "../mod/link/ticket_reports.ts";
import type { Claim, DispatcherLink } from "../mod/link/worker_link.ts";
import { LocalDispatcherLink, LocalWorkerLink } from "../mod/link/local_link.ts";
import { Status } from "../mod/net/protocol.ts";
import { ManualClock } from "../mod/sys/clock.ts";
import { newTicket } from "../mod/link/tickets.ts";
import { waitFor } from "./harness.ts";

const CFG: PoolConfig = {
  queueSize: 8,
  queueTimeoutMs: 10_000,
  ticketTtlMs: 5_000,
  graceMs: 0,
  maxTicketsPerAddr: 0,
};

async function fixture(
  workers: number,
  cfg: PoolConfig = CFG,
  hooks: PoolHooks = {},
  onWorkerMessage?: (m: Uint8Array) => void,
  publish = false,
  tickets = 1,
) {
  const dir = Deno.makeTempDirSync({ prefix: "osps-pool-" });
  const paths = instancePaths(dir);
  for (let i = 1; i <= workers; i++) {
    ensureFifo(paths.dwtube(i));
    ensureFifo(paths.wdtube(i));
  }
  const segment = Segment.create(paths.shm, workers + 1, 7, 0, tickets);
  const clock = new ManualClock();
  const poller = new FifoPoller();
  const links = Array.from({ length: workers }, (_, i) => {
    segment.slot(i + 1).store("pid", Deno.pid);
    segment.slot(i + 1).store("port", 40_000 + i);
    return new LocalWorkerLink(segment.slot(i + 1), paths, "127.0.0.1", poller, clock);
  });
  // With `publish`, the pool publishes its queue depth and polling in slot 0, where workers read them, as the
  // dispatcher does.
  const d = segment.slot(0);
  const sides = links.map((_, i) =>
    new LocalDispatcherLink(segment.slot(i + 1), paths, poller, clock, publish ? d : undefined)
  );
  const pool = new WorkerPool(links, cfg, clock, {
    ...hooks,
    ...(publish
      ? {
        onQueueDepth: (n: number) => d.store("queue_depth", n),
        onPolling: (on: boolean) => d.store("polling", on ? 1 : 0),
      }
      : {}),
  });
  pool.start();
  for (const s of sides) {
    s.start({ onAssigned() {}, onConnected() {}, onDisconnected() {}, onMessage: onWorkerMessage });
    s.ready();
  }
  poller.start();
  await waitFor("every link up", () => links.every((l) => l.available()), 5_000);
  return {
    clock,
    pool,
    links,
    sides,
    segment,
    /** A client from network address `key` (null: a local client, on loopback). */
    who: (key: string | null, peer = "127.0.0.1:1") => ({
      peer,
      owner: key ?? "loopback",
      capped: key !== null,
    }),
    async [Symbol.asyncDispose]() {
      pool.close();
      for (const s of sides) s.close();
      await poller.stop();
      segment.close();
      Segment.unlink(paths.shm);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

const noQueue = () => Promise.resolve();

/** The worker side shows `ticket` for `type`: it must be accepted. */
function use(side: DispatcherLink, ticket: string, type = "echo", arg = ""): Claim {
  const claim = side.claim(ticket, type, arg);
  assert.ok(typeof claim !== "string", `ticket refused: ${claim}`);
  return claim;
}

/** What a worker slot's tickets say (idle, assigned, busy…). */
const work = (slot: SlotView) => workSummary(slot, 0).text;

Deno.test("pool: an unused ticket is swept at its expiry from shm, however the doorbells arrived", async () => {
  await using f = await fixture(1);
  const a = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in a));
  f.sides[0]!.done(use(f.sides[0]!, a.ticket, "echo", "x")); // free again; its "done" doorbell is still in the pipe
  const b = await f.pool.acquire("echo", f.who(null), noQueue); // assigned before that doorbell is read
  assert.ok(!("refused" in b));
  await new Promise((r) => setTimeout(r, 50)); // the stale "done" arrives now: it must not disturb b
  f.clock.advance(CFG.ticketTtlMs - 1);
  f.pool.sweep();
  assert.equal(work(f.segment.slot(1)), "assigned", "not yet expired");
  f.clock.advance(2);
  f.pool.sweep();
  assert.equal(work(f.segment.slot(1)), "idle", "expired: the worker is free again");
  assert.equal(f.pool.fate(b.ticket).state, "expired");
  assert.equal(
    f.sides[0]!.claim(b.ticket, "echo", ""),
    "expired",
    "a late client is told its ticket expired",
  );
});

Deno.test("link: an expired ticket shown to the worker is refused and frees it at once", async () => {
  await using f = await fixture(1);
  const a = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in a));
  f.clock.advance(CFG.ticketTtlMs + 1);
  assert.equal(f.sides[0]!.claim(a.ticket, "echo", ""), "expired");
  assert.equal(work(f.segment.slot(1)), "idle");
});

Deno.test("link: the all-zero ticket is never valid, even while a slot's ticket field is zero", async () => {
  await using f = await fixture(1);
  const entry = f.segment.slot(1).tickets[0]!;
  entry.bytes("ticket").fill(0);
  entry.setText("request_type", "echo");
  entry.store("expires_at", f.clock.now() + 10_000);
  // As if caught between publication steps (a test may write a word: nothing else races it here).
  entry.store("word", ticketWord(TicketState.ASSIGNED, 99));
  assert.equal(f.sides[0]!.claim("0".repeat(32), "echo", ""), "mismatch");
  assert.equal(work(f.segment.slot(1)), "assigned");
  for (let i = 0; i < 1000; i++) assert.notEqual(newTicket(), "0".repeat(32));
});

Deno.test("link: a ticket is used once, for its type only", async () => {
  await using f = await fixture(1);
  const a = await f.pool.acquire("fib", f.who(null), noQueue);
  assert.ok(!("refused" in a));
  assert.equal(f.sides[0]!.claim(a.ticket, "echo", ""), "wrong-type");
  assert.equal(f.sides[0]!.claim(newTicket(), "fib", ""), "mismatch");
  use(f.sides[0]!, a.ticket, "fib", "10");
  assert.equal(f.sides[0]!.claim(a.ticket, "fib", "10"), "no-ticket");
  assert.equal(f.segment.slot(1).tickets[0]!.text("request_arg"), "10");
});

Deno.test("pool: the queue is served in order; a client that leaves gives up its place; the wait is bounded", async () => {
  await using f = await fixture(1, { ...CFG, queueTimeoutMs: 1_000 });
  const first = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in first));
  const positions: number[] = [];
  const leaves = new AbortController();
  const w1 = f.pool.acquire(
    "echo",
    f.who(null, "a:1"),
    (p) => Promise.resolve(positions.push(p)),
    (leave) => leaves.signal.addEventListener("abort", leave),
  );
  const w2 = f.pool.acquire("echo", f.who(null, "b:1"), (p) => Promise.resolve(positions.push(p)));
  await Promise.resolve();
  assert.deepEqual(positions, [], "a short wait is not worth a line");
  f.clock.advance(QUEUED_NOTICE_MS);
  assert.deepEqual(positions, [1, 2], "a longer one is told its place");
  leaves.abort();
  assert.deepEqual(await w1, { refused: "client left the queue", status: Status.BUSY });
  assert.equal(f.pool.queued, 1);
  f.clock.advance(1_000 - QUEUED_NOTICE_MS);
  const r2 = await w2;
  assert.ok("refused" in r2 && /no worker free within 1000 ms/.test(r2.refused));
});

/** Settles pending promise callbacks (the pool resolves waiters synchronously, their `then`s run after). */
const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("fair shares: one address alone holds all places but one, used or not; a newcomer gets that one at once", async () => {
  await using f = await fixture(3);
  const hog = f.who("203.0.113.9");
  const t1 = await f.pool.acquire("sleep", hog, noQueue);
  const t2 = await f.pool.acquire("sleep", hog, noQueue);
  assert.ok(!("refused" in t1) && !("refused" in t2));
  // Its requests run (the tickets are in use, not pinned unused): they still count.
  const sideOf = (t: { port: number }) => f.sides[f.links.findIndex((l) => l.port === t.port)]!;
  const c1 = use(sideOf(t1), t1.ticket, "sleep", "30000");
  use(sideOf(t2), t2.ticket, "sleep", "30000");
  let third: unknown;
  void f.pool.acquire("sleep", hog, noQueue).then((r) => third = r);
  await tick();
  assert.equal(third, undefined, "a third ticket would leave nothing for anyone else: it waits");
  const other = await f.pool.acquire("echo", f.who("198.51.100.7"), noQueue);
  assert.ok(!("refused" in other), "another address gets the place left at once");
  assert.equal(f.pool.fairShare("203.0.113.9"), 1, "two addresses, three places: one each (and one spare)");
  // One of the hog's requests ends: it holds one now, its share; the freed place is not its.
  sideOf(t1).done(c1);
  f.clock.advance(POLL_MS);
  await tick();
  assert.equal(third, undefined, "at its share: it keeps waiting");
  const late = await f.pool.acquire("echo", f.who("192.0.2.44"), noQueue);
  assert.ok(!("refused" in late), "a third address is served past the hog's waiting request");
});

Deno.test("fair shares: a full queue of one address's waiters gives a place to another; a free place goes to whoever may take it", async () => {
  await using f = await fixture(2, { ...CFG, queueSize: 4 });
  const hog = f.who("203.0.113.9");
  const held = await f.pool.acquire("sleep", hog, noQueue); // its share alone: 2 places − 1
  assert.ok(!("refused" in held));
  const waits: Array<Promise<unknown>> = [];
  for (let i = 0; i < 4; i++) waits.push(f.pool.acquire("sleep", hog, noQueue));
  assert.equal(f.pool.queued, 4, "alone, it may fill the queue");
  const overflow = await f.pool.acquire("sleep", hog, noQueue);
  assert.ok("refused" in overflow && /4 clients waiting/.test(overflow.refused), "beyond it, 503");
  // Every waiter is held back by its share while a place is free: a newcomer takes that place at once.
  const visitor = await f.pool.acquire("echo", f.who("198.51.100.7"), noQueue);
  assert.ok(!("refused" in visitor), "the free place goes to an address that may take it");
  // Now nothing is free and the queue is full of the hog's: the next newcomer takes the hog's newest place.
  let queuedGuest: unknown;
  void f.pool.acquire("echo", f.who("192.0.2.44"), noQueue).then((r) => queuedGuest = r);
  await tick();
  assert.equal(f.pool.queued, 4, "still four waiting");
  const evicted = await waits[3]!;
  assert.ok(
    typeof evicted === "object" && evicted !== null && "refused" in evicted &&
      /more than its share/.test(String(evicted.refused)),
    `the hog's newest waiter is told why: ${JSON.stringify(evicted)}`,
  );
  assert.equal(queuedGuest, undefined, "the guest waits for a place like everyone");
  // The visitor's request ends: that place goes to the guest (the hog is at its share), not to the hog.
  const vside = f.sides[f.links.findIndex((l) => l.port === visitor.port)]!;
  vside.done(use(vside, visitor.ticket));
  f.clock.advance(POLL_MS);
  await tick();
  assert.ok(queuedGuest && !("refused" in (queuedGuest as object)), "the guest is served first");
});

Deno.test("fair shares: --max-tickets-per-addr lowers an address's share; loopback is not held to one", async () => {
  await using f = await fixture(3, { ...CFG, maxTicketsPerAddr: 1 });
  assert.ok(!("refused" in await f.pool.acquire("echo", f.who("203.0.113.9"), noQueue)));
  let second: unknown;
  void f.pool.acquire("echo", f.who("203.0.113.9"), noQueue).then((r) => second = r);
  await tick();
  assert.equal(second, undefined, "one ticket, then it waits");
  // Local clients share one address; their limit is one unused ticket per connection (the session's), not this.
  for (let i = 0; i < 2; i++) assert.ok(!("refused" in await f.pool.acquire("echo", f.who(null), noQueue)));
  f.pool.drain();
});

Deno.test("pool: N tickets per worker; a request to run alone waits for an empty worker and keeps it to itself", async () => {
  await using f = await fixture(1, CFG, {}, undefined, false, 3);
  const a = await f.pool.acquire("sleep", f.who(null), noQueue);
  const b = await f.pool.acquire("sleep", f.who(null), noQueue);
  assert.ok(!("refused" in a) && !("refused" in b), "two tickets on the one worker");
  let alone: unknown;
  void f.pool.acquire("fib", f.who(null), noQueue, undefined, true).then((r) => alone = r);
  await tick();
  assert.equal(alone, undefined, "a request to run alone waits while the worker holds others");
  const c = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in c), "others are served past it meanwhile");
  for (const t of [a, b, c]) f.sides[0]!.done(use(f.sides[0]!, t.ticket, t === c ? "echo" : "sleep"));
  f.clock.advance(POLL_MS);
  await tick();
  assert.ok(alone && !("refused" in (alone as object)), "the worker empty, it gets it");
  let after: unknown;
  void f.pool.acquire("echo", f.who(null), noQueue).then((r) => after = r);
  f.clock.advance(POLL_MS);
  await tick();
  assert.equal(after, undefined, "nothing else is given to that worker while it runs");
  f.sides[0]!.done(use(f.sides[0]!, (alone as { ticket: string }).ticket, "fib"));
  f.clock.advance(POLL_MS);
  await tick();
  assert.ok(after && !("refused" in (after as object)), "then others again");
});

Deno.test("pool: a draining dispatcher refuses queued and new clients with 503", async () => {
  await using f = await fixture(1);
  await f.pool.acquire("echo", f.who(null), noQueue);
  const waiting = f.pool.acquire("echo", f.who(null), noQueue);
  f.pool.drain();
  assert.deepEqual(await waiting, { refused: "server is stopping; retry later", status: Status.BUSY });
  assert.deepEqual(await f.pool.acquire("echo", f.who(null), noQueue), {
    refused: "server is stopping; retry later",
    status: Status.BUSY,
  });
});

Deno.test("link data channel: messages both ways, in order, larger than the pipe, interleaved with doorbells", async () => {
  const atWorker: Uint8Array[] = [];
  const atDispatcher: Array<[number, Uint8Array]> = [];
  await using f = await fixture(
    2,
    CFG,
    { onMessage: (l, m) => atDispatcher.push([l.id, m]) },
    (m) => atWorker.push(m),
  );
  const big = crypto.getRandomValues(new Uint8Array(60_000));
  const msgs = [new TextEncoder().encode("first"), big, big, big, new TextEncoder().encode("last")];
  // 180 KB through a 64 KB pipe: the writer keeps the rest and sends it as the reader drains.
  const t = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in t));
  const claim = use(f.sides[0]!, t.ticket);
  for (const m of msgs) assert.ok(f.sides[0]!.send(m));
  f.sides[0]!.done(claim); // a doorbell in the middle of the stream is still a doorbell
  assert.equal(f.pool.broadcast(new TextEncoder().encode("to all")), 2);
  await waitFor("all messages", () => atDispatcher.length === msgs.length && atWorker.length === 2, 10_000);
  assert.deepEqual(atDispatcher.map(([id]) => id), [1, 1, 1, 1, 1]);
  atDispatcher.forEach(([, m], i) => assert.deepEqual(m, msgs[i]));
  assert.deepEqual(atWorker.map((m) => new TextDecoder().decode(m)), ["to all", "to all"]);
});

Deno.test("pool: while clients wait it polls the slots, so a worker that frees rings no doorbell", async () => {
  await using f = await fixture(1, CFG, {}, undefined, true);
  const d = f.segment.slot(0);
  const first = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in first));
  let served = false;
  const waiting = f.pool.acquire("echo", f.who(null, "127.0.0.1:2"), noQueue).then((r) => {
    served = true;
    return r;
  });
  assert.equal(d.load("queue_depth"), 1);
  assert.equal(d.load("polling"), 1, "clients wait: the pool polls");
  f.sides[0]!.done(use(f.sides[0]!, first.ticket)); // idle again: the pool polls, so no doorbell
  await new Promise((r) => setTimeout(r, 100)); // a doorbell, had one been rung, would have been read by now
  assert.equal(served, false, "no doorbell woke the pool");
  f.clock.advance(POLL_MS); // the next poll finds the worker idle in shared memory
  const r = await waiting;
  assert.ok(served && !("refused" in r));
  assert.equal(d.load("queue_depth"), 0);
  assert.equal(d.load("polling"), 0, "nobody waits: no polling, doorbells again");
  // Idle again with nobody waiting: no doorbell is needed either; a new client finds the worker at once.
  f.sides[0]!.done(use(f.sides[0]!, r.ticket));
  const third = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in third));
});

Deno.test("link: a draining worker whose unused ticket expired is never given another (its listener has closed)", async () => {
  await using f = await fixture(1);
  const a = await f.pool.acquire("echo", f.who(null), noQueue);
  assert.ok(!("refused" in a));
  // The worker is told to drain while a client holds its ticket: it waits for that client, who never comes.
  f.sides[0]!.retire();
  assert.equal(f.sides[0]!.holdsTicket(), true, "it waits for the client holding its ticket");
  f.clock.advance(CFG.ticketTtlMs + 1);
  assert.equal(f.sides[0]!.holdsTicket(), false, "expired: the worker stops waiting and closes its listener");
  f.pool.sweep(); // the dispatcher takes the expired ticket back
  assert.equal(f.links[0]!.available(), false, "a draining worker takes no ticket");
  let served = false;
  const next = f.pool.acquire("echo", f.who(null), noQueue).then((r) => served = !("refused" in r));
  f.clock.advance(QUEUED_NOTICE_MS);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(served, false, "the next client waits instead of being sent to a closed port");
  f.pool.drain();
  await next;
});
