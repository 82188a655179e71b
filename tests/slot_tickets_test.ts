/**
 * The ticket protocol (`mod/link/slot_tickets.ts`) on a real mapped segment:
 * its generation wraps cleanly, its death record is taken with one
 * compare-and-swap per entry even while the dispatcher issues and takes back
 * tickets from another thread, and a draining worker's door shuts out every
 * issue, racing or not.
 */
import assert from "node:assert/strict";
import { Segment } from "../mod/ipc/shm.ts";
import {
  BLAMED,
  DoorState,
  recordDeath,
  SlotTickets,
  TicketState,
  ticketWord,
} from "../mod/link/slot_tickets.ts";
import { hangCulprit } from "../mod/link/ticket_reports.ts";
import { TicketLedger } from "../mod/link/ticket_ledger.ts";
import { newTicket } from "../mod/link/tickets.ts";
import { ManualClock, systemClock } from "../mod/sys/clock.ts";
import { ExitReason } from "../mod/supervise/exit_reason.ts";
import { lostWorkText } from "../mod/supervise/exit_reason.ts";
import { pollFast, waitFor } from "./harness.ts";

function segment(tickets = 1): Segment & { [Symbol.dispose](): void } {
  const name = `/osps-test-tickets-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const seg = Segment.create(name, 2, 1, 0, tickets);
  const close = seg.close.bind(seg);
  return Object.assign(seg, {
    [Symbol.dispose]() {
      close();
      Segment.unlink(name);
    },
  });
}

const ticketFor = (clock: { now(): number }, type = "echo") => ({
  ticket: newTicket(),
  type,
  clientAddr: "192.0.2.1:4000",
  owner: "192.0.2.1",
  expiresAt: clock.now() + 5_000,
});

Deno.test("tickets: the generation wraps at 2^28, and what was issued is still known for what it is", () => {
  using seg = segment();
  const clock = new ManualClock();
  const worker = new SlotTickets(seg.slot(1), clock);
  worker.open();
  // The entry's generation is at its last value: the next issue wraps it to 0.
  const e = seg.slot(1).tickets[0]!;
  assert.ok(e.cas("word", ticketWord(TicketState.FREE, 0), ticketWord(TicketState.FREE, 0x0fffffff)));
  const ledger = new TicketLedger(new SlotTickets(seg.slot(1), clock));
  const t = ticketFor(clock);
  const issued = ledger.issue(t, 1234)!;
  assert.equal(issued.issue.gen, 0, "the generation handed out is the one in the word");
  assert.deepEqual(ledger.fate(t.ticket), { state: "pending" });
  const claim = worker.claim(t.ticket, "echo", "hi");
  assert.ok(typeof claim !== "string");
  assert.equal(claim.gen, 0);
  assert.deepEqual(ledger.fate(t.ticket), { state: "running" });
  worker.finish(claim);
  assert.deepEqual(ledger.fate(t.ticket), { state: "served" });
  // One more round after the wrap: the worker dies holding it; the death record names it.
  const t2 = ticketFor(clock);
  assert.equal(ledger.issue(t2, 1234)!.issue.gen, 1);
  recordDeath(seg.slot(1), 1234, null, 0);
  const lost = ledger.died(1234, ledger.tickets.deathRecord(1234)!, 1009);
  assert.deepEqual(lost.map((l) => [l.ticket, l.started]), [[t2.ticket, false]]);
});

Deno.test("tickets: a death record takes each entry with one compare-and-swap while the dispatcher issues and takes back from another thread", async () => {
  using seg = segment(4);
  const rounds = 200;
  const racer = new Worker(new URL("./support/issue_racer.ts", import.meta.url), { type: "module" });
  const shared = new Int32Array(new SharedArrayBuffer(4 * (2 + 4 * 3)));
  const inbox: string[] = [];
  racer.onmessage = (e) => inbox.push(e.data);
  try {
    racer.postMessage({ shm: seg.name, shared: shared.buffer });
    await waitFor("the racer mapped the segment", () => inbox.includes("ready"), 60_000);
    const worker = new SlotTickets(seg.slot(1), systemClock);
    let caught = 0;
    for (let round = 1; round <= rounds; round++) {
      worker.open();
      Atomics.store(shared, 1, 0);
      Atomics.store(shared, 0, round); // go: the racer issues and takes back as fast as it can
      Atomics.notify(shared, 0);
      while (Atomics.load(shared, 1) < 50) await Promise.resolve(); // let it get going
      recordDeath(seg.slot(1), 1000 + round, null, 0);
      Atomics.store(shared, 0, -round); // stop
      await pollFast("the racer stopped", () => Atomics.load(shared, 1) === -1, 10_000, 0);
      // Every ticket the racer holds (issued, handed out, not taken back) is in the record: none vanished.
      // (The record may name one more: an issue that lost to the closing door, never handed to anyone.)
      const record = new SlotTickets(seg.slot(1), systemClock).deathRecord(1000 + round)!;
      for (let e = 0; e < 4; e++) {
        if (Atomics.load(shared, 2 + e * 3) !== 1) continue;
        assert.equal(
          record.entries[e],
          TicketState.ASSIGNED,
          `round ${round}, entry ${e}: the dispatcher holds a ticket there, the death record says ${
            record.entries[e]
          }`,
        );
        caught++;
      }
      // After the death nothing can be issued there until the next process opens the slot.
      assert.ok(seg.slot(1).tickets.every((t) => (t.load("word") & 0xf) === TicketState.OFFLINE));
    }
    assert.ok(caught > 0, "some deaths caught tickets in flight");
    console.log(`${rounds} deaths raced by issues and take-backs: ${caught} tickets caught, none lost`);
  } finally {
    racer.terminate();
  }
});

Deno.test("tickets: a draining worker's door shuts out every issue, even one racing the door from another thread", async () => {
  using seg = segment(2);
  const racer = new Worker(new URL("./support/issue_racer.ts", import.meta.url), { type: "module" });
  const shared = new Int32Array(new SharedArrayBuffer(4 * (2 + 2 * 3)));
  const inbox: string[] = [];
  racer.onmessage = (e) => inbox.push(e.data);
  try {
    racer.postMessage({ shm: seg.name, shared: shared.buffer, keep: true });
    await waitFor("the racer mapped the segment", () => inbox.includes("ready"), 60_000);
    const worker = new SlotTickets(seg.slot(1), systemClock);
    let sawRacingTicket = 0;
    for (let round = 1; round <= 300; round++) {
      worker.open(); // a clean start: every entry free, the door open
      Atomics.store(shared, 1, 0);
      Atomics.store(shared, 0, round);
      Atomics.notify(shared, 0);
      if (round % 2) { while (Atomics.load(shared, 1) < 1) await Promise.resolve(); }
      // The worker drains: it closes its door, then looks whether a client holds one of its tickets.
      worker.retire();
      const waitsForClient = worker.holdsTicket();
      Atomics.store(shared, 0, -round);
      await pollFast("the racer stopped", () => Atomics.load(shared, 1) === -1, 10_000, 0);
      const heldByRacer = [0, 1].filter((e) => Atomics.load(shared, 2 + e * 3) === 1).length;
      // Either the worker saw every ticket the dispatcher still holds (it waits for those clients), or there is none.
      assert.ok(
        waitsForClient || heldByRacer === 0,
        `round ${round}: the dispatcher holds ${heldByRacer} ticket(s) the draining worker did not see`,
      );
      if (waitsForClient) sawRacingTicket++;
      assert.equal(seg.slot(1).load("door"), DoorState.DRAINING);
      const late = new SlotTickets(seg.slot(1), systemClock).issue(ticketFor(systemClock));
      assert.equal(late, null, "no issue once the door is closed");
    }
    console.log(`300 drains raced by issues: the worker waited for a client in ${sawRacingTicket}`);
  } finally {
    racer.terminate();
  }
});

Deno.test("tickets: at N = 1 a hang blames the request in progress; at N > 1 only the one running synchronously", () => {
  const clock = new ManualClock();
  for (const n of [1, 3]) {
    using seg = segment(n);
    const slot = seg.slot(1);
    const worker = new SlotTickets(slot, clock);
    const dispatcher = new TicketLedger(new SlotTickets(slot, clock));
    worker.open();
    const claims = Array.from({ length: n }, (_, i) => {
      const t = ticketFor(clock, i === 0 ? "sleep" : "fib");
      dispatcher.issue(t, 77);
      const c = worker.claim(t.ticket, t.type, i === 0 ? "1000" : "45");
      assert.ok(typeof c !== "string");
      return { ...c, ticket: t.ticket };
    });
    if (n === 1) {
      assert.equal(hangCulprit(slot)?.request, "sleep 1000", "the seeds' rule: the request in progress");
    } else {
      assert.equal(hangCulprit(slot), null, "no request runs synchronously: none is blamed");
      worker.running(claims[2]!);
    }
    const culprit = hangCulprit(slot);
    assert.equal(culprit?.entry, claims[n - 1]!.entry);
    recordDeath(slot, 77, culprit, 3000);
    const lost = dispatcher.died(77, dispatcher.tickets.deathRecord(77)!, ExitReason.HANG_IN_REQUEST);
    assert.equal(lost.length, n);
    const mine = lost.find((l) => l.ticket === claims[n - 1]!.ticket)!;
    assert.equal(mine.requestCaused, true);
    assert.equal(seg.slot(1).bytes("death_entries")[claims[n - 1]!.entry], BLAMED);
    const blamed = culprit!.request;
    assert.equal(
      lostWorkText("worker 1", blamed, ExitReason.HANG_IN_REQUEST, 3000, true, mine.culprit),
      `worker 1 was killed: "${blamed}" blocked it past the 3000 ms hang timeout`,
    );
    for (const other of lost.filter((l) => l !== mine)) {
      assert.equal(other.requestCaused, false, "a bystander is not what quarantine counts");
      assert.equal(
        lostWorkText(
          "worker 1",
          `${other.type} ${other.arg}`,
          other.reason,
          other.limitMs,
          other.started,
          other.culprit,
        ),
        `worker 1 was killed while running "${other.type} ${other.arg}": another request ("fib 45") blocked ` +
          "it past the 3000 ms hang timeout",
      );
    }
  }
});
