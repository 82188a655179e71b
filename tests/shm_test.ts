/** Shared-memory segment: layout, creation, atomics, refusal of foreign segments. */
import assert from "node:assert/strict";
import {
  HEADER_FIELDS,
  HEADER_SIZE,
  layoutMarkdown,
  Segment,
  segmentSize,
  SHM_MAGIC,
  ShmError,
  SLOT_FIELDS,
  SLOT_SIZE,
  TICKET_ENTRY_SIZE,
  TICKET_FIELDS,
} from "../mod/ipc/shm.ts";
import { TicketState, ticketWord } from "../mod/link/slot_tickets.ts";
import { ticketStatesMarkdown } from "../mod/link/ticket_reports.ts";
import * as libc from "../mod/sys/libc.ts";

function uniqueName(): string {
  return `/osps-test-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

Deno.test("layout fields never overlap and fit in their header or slot", () => {
  for (
    const [fields, limit] of [
      [HEADER_FIELDS, HEADER_SIZE],
      [SLOT_FIELDS, SLOT_SIZE],
      [TICKET_FIELDS, TICKET_ENTRY_SIZE],
    ] as const
  ) {
    let end = 0;
    for (const f of fields) {
      const size = f.type === "i32" ? 4 : f.type === "i64" ? 8 : Number(f.type.slice(5));
      const align = f.type === "i64" ? 8 : 4;
      const start = Math.ceil(end / align) * align;
      assert.ok(start >= end);
      end = start + size;
    }
    assert.ok(end <= limit, `fields end at ${end}, limit ${limit}`);
  }
});

Deno.test("docs/SHM_LAYOUT.md is the layout table generated from the code", () => {
  const doc = Deno.readTextFileSync(new URL("../docs/SHM_LAYOUT.md", import.meta.url));
  assert.ok(doc.includes(layoutMarkdown(ticketStatesMarkdown())), "regenerate with: deno task layout");
});

Deno.test("Segment.create makes a 0600 segment readers can open; unlink removes it", () => {
  const name = uniqueName();
  const seg = Segment.create(name, 4, 1234, 2222, 3);
  try {
    assert.equal(seg.byteLength, segmentSize(4, 3));
    assert.equal(Segment.stat(name).mode & 0o777, 0o600);
    assert.equal(Segment.stat(name).uid, libc.getuid());
    const other = Segment.open(name, 1234);
    assert.equal(other.header("magic"), SHM_MAGIC);
    assert.equal(other.header("slot_count"), 4);
    assert.equal(other.header("base_port"), 2222);
    assert.equal(other.ticketsPerSlot, 3);
    // A write through one mapping is seen through the other: it is the same memory.
    seg.slot(2).store("port", 4242);
    seg.slot(2).tickets[1]!.setText("request_type", "echo");
    seg.slot(3).tickets[2]!.store("expires_at", 1_700_000_000_123);
    assert.equal(other.slot(2).load("port"), 4242);
    assert.equal(other.slot(2).tickets[1]!.text("request_type"), "echo");
    assert.equal(other.slot(3).tickets[2]!.load("expires_at"), 1_700_000_000_123);
    // Entries do not overlap each other, the slots or the stats blocks.
    assert.equal(other.slot(2).tickets[0]!.text("request_type"), "");
    assert.equal(other.slot(3).tickets[1]!.load("expires_at"), 0);
    seg.slot(3).tickets[2]!.bytes("request_arg").fill(0xff); // the very last bytes of the segment
    assert.ok(other.stats(3).read().requests.flat().every((n) => n === 0));
    other.close();
  } finally {
    seg.close();
    assert.equal(Segment.unlink(name), true);
  }
  assert.equal(Segment.exists(name), false);
  assert.equal(Segment.unlink(name), false);
});

Deno.test("a ticket word packs state and generation; a CAS with a stale word fails", () => {
  const name = uniqueName();
  using a = Segment.create(name, 2, 1);
  using b = Segment.open(name);
  try {
    const e = (s: Segment) => s.slot(1).tickets[0]!;
    const assigned = ticketWord(TicketState.ASSIGNED, 7);
    assert.ok(e(a).cas("word", 0, assigned));
    // Another issue happened in between (generation 8): a claim made with the word it read earlier fails.
    assert.ok(e(a).cas("word", assigned, ticketWord(TicketState.ASSIGNED, 8)));
    assert.equal(e(b).cas("word", assigned, ticketWord(TicketState.BUSY, 7)), false);
    assert.equal(
      e(b).cas("word", ticketWord(TicketState.ASSIGNED, 8), ticketWord(TicketState.BUSY, 8)),
      true,
    );
    assert.equal(b.slot(1).add("served", 1), 1);
    b.slot(1).store("served", 2 ** 40);
    assert.equal(a.slot(1).add("served", 1), 2 ** 40 + 1, "served is 64-bit");
  } finally {
    Segment.unlink(name);
  }
});

Deno.test("a closed segment refuses access instead of reading unmapped memory; close is idempotent", () => {
  const name = uniqueName();
  const seg = Segment.create(name, 2, 1);
  const slot = seg.slot(1);
  slot.store("port", 1);
  seg.close();
  seg.close();
  assert.equal(seg.closed, true);
  assert.throws(() => slot.load("port"), RangeError);
  assert.throws(() => slot.bytes("host"), RangeError);
  assert.throws(() => slot.tickets[0]!.bytes("ticket"), RangeError);
  assert.throws(() => seg.header("magic"), RangeError);
  Segment.unlink(name);
});

Deno.test("Segment.open refuses a segment shorter than its slot count says (it would SIGBUS)", () => {
  const name = uniqueName();
  const seg = Segment.create(name, 4, 1);
  seg.close();
  const fd = libc.shmOpen(name, libc.O.RDWR, 0);
  libc.ftruncate(fd, segmentSize(2));
  libc.close(fd);
  try {
    assert.throws(() => Segment.open(name), /claims 4 slots of 1 tickets but holds/);
  } finally {
    Segment.unlink(name);
  }
});

Deno.test("Segment.create refuses a bad slot count before making anything", () => {
  const name = uniqueName();
  assert.throws(() => Segment.create(name, 0, 1), RangeError);
  assert.throws(() => Segment.create(name, 100_000, 1), RangeError);
  assert.equal(Segment.exists(name), false);
});

Deno.test("Segment.open refuses a missing segment, another instance, and a segment that is not osps", () => {
  const name = uniqueName();
  assert.throws(() => Segment.open(name), ShmError);
  const seg = Segment.create(name, 2, 77);
  try {
    assert.throws(() => Segment.open(name, 78), /belongs to another instance/);
  } finally {
    seg.close();
    Segment.unlink(name);
  }
  // A foreign segment of the right size with garbage in it.
  const fd = libc.shmOpen(name, libc.O.RDWR | libc.O.CREAT | libc.O.EXCL, 0o600);
  libc.ftruncate(fd, 4096);
  libc.close(fd);
  try {
    assert.throws(() => Segment.open(name), /not an osps segment/);
  } finally {
    Segment.unlink(name);
  }
});

Deno.test("Segment.create refuses to reuse an existing name (O_EXCL)", () => {
  const name = uniqueName();
  const seg = Segment.create(name, 2, 1);
  try {
    assert.throws(() => Segment.create(name, 2, 2), /EEXIST/);
  } finally {
    seg.close();
    Segment.unlink(name);
  }
});
