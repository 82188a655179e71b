/**
 * The shared-memory segment of one osps instance: layout (defined once, here),
 * creation, mapping and field access with `Atomics`.
 *
 * One segment per instance: a header, then slot 0 for the dispatcher and slots
 * 1..N for the workers, then one stats block per slot (`stats.ts`), then each
 * slot's ticket entries (`tickets_per_slot` of them, the worker concurrency).
 * Every field has exactly one writer role (the `writer` column) except the
 * ticket words and a slot's `door`, which move by compare-and-swap between the
 * roles, and only through the ticket protocol (`mod/link/slot_tickets.ts`,
 * which also documents their states). Times ending in `_at` or `_until` are
 * milliseconds on CLOCK_MONOTONIC (`mod/sys/clock.ts`), the same clock in every
 * process of the host. `docs/SHM_LAYOUT.md` is generated from this table
 * (`deno task layout`), and a test fails when the two disagree.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { OspsError, SysError } from "../errors.ts";
import { STATS_BLOCK_SIZE, statsMarkdown, StatsView } from "./stats.ts";

/** "OSPS" little-endian. */
export const SHM_MAGIC = 0x5350534f;
/** Bumped whenever {@link HEADER_FIELDS} or {@link SLOT_FIELDS} change. */
export const LAYOUT_VERSION = 7;
/** Bytes per slot; fields leave room to grow without moving slots. */
export const SLOT_SIZE = 384;
/** Bytes of header before slot 0. */
export const HEADER_SIZE = 256;
/** Room for the dispatcher's list of quarantined request types in the header. */
export const QUARANTINE_TEXT_BYTES = 160;
/** Most slots a segment may have (1 dispatcher + 64 workers, with room). */
export const MAX_SLOTS = 1024;
/** Bytes per ticket entry; fields leave room to grow without moving entries. */
export const TICKET_ENTRY_SIZE = 160;
/** Most ticket entries a slot may have (`--worker-concurrency`); a death record has one byte per entry. */
export const MAX_TICKETS_PER_SLOT = 64;

type FieldType = "i32" | "i64" | `bytes${number}`;
interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  readonly writer: string;
  readonly doc: string;
}

/** Header fields, in order. */
export const HEADER_FIELDS = [
  { name: "magic", type: "i32", writer: "watchdog", doc: '0x5350534f ("OSPS"), written last' },
  { name: "layout_version", type: "i32", writer: "watchdog", doc: "layout version; readers refuse another" },
  { name: "slot_count", type: "i32", writer: "watchdog", doc: "1 + number of workers" },
  { name: "slot_size", type: "i32", writer: "watchdog", doc: "bytes per slot (256)" },
  { name: "watchdog_pid", type: "i32", writer: "watchdog", doc: "pid of the owning watchdog" },
  { name: "state", type: "i32", writer: "watchdog", doc: "instance state: 1 running, 2 stopping" },
  {
    name: "instance_id",
    type: "i64",
    writer: "watchdog",
    doc: "random id of this instance (also in instance.json)",
  },
  {
    name: "created_ms",
    type: "i64",
    writer: "watchdog",
    doc: "creation time, wall clock (ms since the epoch)",
  },
  { name: "base_port", type: "i32", writer: "watchdog", doc: "dispatcher port" },
  {
    name: "ready_at",
    type: "i64",
    writer: "watchdog",
    doc: "when the instance first became ready, 0 before",
  },
  {
    name: "stats_block_size",
    type: "i32",
    writer: "watchdog",
    doc: `bytes per stats block (${STATS_BLOCK_SIZE}); the blocks follow the last slot`,
  },
  {
    name: "tickets_per_slot",
    type: "i32",
    writer: "watchdog",
    doc: `ticket entries per slot (--worker-concurrency), ${TICKET_ENTRY_SIZE} bytes each; the entries ` +
      "follow the last stats block, slot by slot",
  },
  {
    name: "quarantine",
    type: "bytes160",
    writer: "dispatcher",
    doc: "request types refused for now: `type until kills;` repeated (until: monotonic ms)",
  },
  {
    name: "reloads_asked",
    type: "i32",
    writer: "watchdog",
    doc: "reloads asked for (SIGHUP, `osps reload`) since the instance started",
  },
  {
    name: "reloads_covered",
    type: "i32",
    writer: "watchdog",
    doc: "`reloads_asked` as it was when the last finished reload began: every ask up to it is done",
  },
  {
    name: "reloads_failed",
    type: "i32",
    writer: "watchdog",
    doc: "reloads that changed nothing (bad config file)",
  },
  {
    name: "replaced_rss",
    type: "i32",
    writer: "watchdog",
    doc: "workers replaced for going over --max-worker-rss-mb",
  },
  { name: "reloaded_at", type: "i64", writer: "watchdog", doc: "when the last reload finished, 0 before" },
] as const satisfies readonly FieldSpec[];

/** Slot fields, in order. Slot 0 is the dispatcher, slot i (1..N) worker i. */
export const SLOT_FIELDS = [
  { name: "pid", type: "i32", writer: "watchdog", doc: "pid of the child, 0 when none" },
  { name: "port", type: "i32", writer: "watchdog", doc: "TCP port the child listens on" },
  { name: "sup_state", type: "i32", writer: "watchdog", doc: "supervision state (SupState)" },
  {
    name: "restarts",
    type: "i32",
    writer: "watchdog",
    doc: "restarts of this slot since the instance started",
  },
  { name: "last_exit", type: "i32", writer: "watchdog", doc: "last exit reason (ExitReason code)" },
  {
    name: "door",
    type: "i32",
    writer: "worker, watchdog (CAS, slot_tickets.ts); dispatcher (remote slots)",
    doc: "whether the worker takes new tickets (DoorState): offline, open or draining",
  },
  { name: "conns", type: "i32", writer: "child", doc: "client connections the child holds open" },
  { name: "queue_depth", type: "i32", writer: "dispatcher", doc: "slot 0: clients waiting for a worker" },
  {
    name: "polling",
    type: "i32",
    writer: "dispatcher",
    doc:
      "slot 0: 1 while clients wait and the dispatcher polls the slots for a freed worker (no doorbell needed)",
  },
  {
    name: "running",
    type: "i32",
    writer: "worker",
    doc:
      "1 + the ticket entry whose request runs synchronously right now (it holds the event loop), 0 when none: " +
      "a hang is blamed on it",
  },
  {
    name: "death_pid",
    type: "i32",
    writer: "watchdog",
    doc: "pid of the process the death record is about (written last)",
  },
  { name: "death_limit_ms", type: "i32", writer: "watchdog", doc: "the limit a killed request ran past, ms" },
  {
    name: "served",
    type: "i64",
    writer: "worker",
    doc: "requests served by this slot (dispatcher: hand-offs)",
  },
  {
    name: "heartbeat_at",
    type: "i64",
    writer: "child",
    doc: "last heartbeat answered from the child's main loop",
  },
  { name: "started_at", type: "i64", writer: "watchdog", doc: "when the current child was spawned" },
  { name: "backoff_until", type: "i64", writer: "watchdog", doc: "restart not before this time" },
  {
    name: "link_wedged_at",
    type: "i64",
    writer: "dispatcher",
    doc: "when a probe through this worker's FIFO pair went unanswered, 0 when fine",
  },
  {
    name: "death_entries",
    type: `bytes${MAX_TICKETS_PER_SLOT}`,
    writer: "watchdog",
    doc: "death record: per ticket entry, its state when the process died (TicketState; 4: busy, and the " +
      "request the kill was for)",
  },
  {
    name: "death_request",
    type: "bytes48",
    writer: "watchdog",
    doc: "death record: the request the kill was for (type and the start of its argument), empty when none",
  },
  {
    name: "link_state",
    type: "i32",
    writer: "dispatcher (remote slots) / worker (joined host)",
    doc: "a TCP link's state (LinkState); 0 for a local worker on FIFOs",
  },
  {
    name: "remote_watchdog_pid",
    type: "i32",
    writer: "dispatcher",
    doc: "remote slots: pid of the worker's own watchdog on its host",
  },
  {
    name: "host",
    type: "bytes48",
    writer: "dispatcher",
    doc: "remote slots: the address the worker listens on (local workers: empty, the instance's --host)",
  },
  {
    name: "spare",
    type: "i32",
    writer: "watchdog",
    doc:
      "1: a local slot kept free, where a worker's replacement starts before the worker leaves (reload, RSS)",
  },
  {
    name: "rss_kb",
    type: "i32",
    writer: "watchdog",
    doc: "resident memory of the child, KiB (local children)",
  },
] as const satisfies readonly FieldSpec[];

/**
 * Ticket entry fields, in order. Each worker slot has `tickets_per_slot`
 * entries (the worker concurrency), each holding one ticket's life from issue
 * to finish; the `word` moves only through `mod/link/slot_tickets.ts`.
 */
export const TICKET_FIELDS = [
  {
    name: "word",
    type: "i32",
    writer: "dispatcher, worker, watchdog (CAS, slot_tickets.ts)",
    doc: "ticket word: TicketState in bits 0-3, generation in bits 4-31 (bumped by every issue)",
  },
  {
    name: "expires_at",
    type: "i64",
    writer: "dispatcher (joined host: worker)",
    doc: "expiry of the ticket while unused",
  },
  {
    name: "started_at",
    type: "i64",
    writer: "worker",
    doc: "when its client presented it and the request started, 0 when not running",
  },
  {
    name: "ticket",
    type: "bytes16",
    writer: "dispatcher (joined host: worker)",
    doc: "one-time ticket, 128 random bits (never all zero); cleared when used",
  },
  {
    name: "request_type",
    type: "bytes16",
    writer: "dispatcher (joined host: worker)",
    doc: "request type the ticket is for (ASCII)",
  },
  {
    name: "client_addr",
    type: "bytes48",
    writer: "dispatcher (joined host: worker)",
    doc: "client address the ticket was issued to",
  },
  {
    name: "request_arg",
    type: "bytes32",
    writer: "worker",
    doc: "argument of the request (first 32 bytes), to say what a killed request was",
  },
] as const satisfies readonly FieldSpec[];

/** Name of a slot field. */
export type SlotField = (typeof SLOT_FIELDS)[number]["name"];
/** Name of a header field. */
export type HeaderField = (typeof HEADER_FIELDS)[number]["name"];
/** Name of a ticket entry field. */
export type TicketField = (typeof TICKET_FIELDS)[number]["name"];

/** State of a worker's TCP link (`link_state` field). */
export const LinkState = { LOCAL: 0, CONNECTING: 1, ATTACHED: 2, LOST: 3, LEFT: 4 } as const;

/** Supervision state of a slot (`sup_state` field), driven by the watchdog's state machine. */
export const SupState = {
  NONE: 0,
  STARTING: 1,
  READY: 2,
  HUNG: 3,
  STOPPING: 4,
  BACKOFF: 5,
  FAILED: 6,
  STOPPED: 7,
  LEAVING: 8,
} as const;

/** Reverse lookup: state number → lower-case name. */
export function stateName(table: Record<string, number>, value: number): string {
  for (const [k, v] of Object.entries(table)) if (v === value) return k.toLowerCase();
  return `unknown(${value})`;
}

interface Placed {
  readonly name: string;
  readonly type: FieldType;
  readonly offset: number;
  readonly size: number;
  readonly writer: string;
  readonly doc: string;
}

function place(fields: readonly FieldSpec[], limit: number): Map<string, Placed> {
  const out = new Map<string, Placed>();
  let off = 0;
  for (const f of fields) {
    const size = f.type === "i32" ? 4 : f.type === "i64" ? 8 : Number(f.type.slice(5));
    const align = f.type === "i64" ? 8 : 4;
    off = Math.ceil(off / align) * align;
    out.set(f.name, { ...f, offset: off, size });
    off += size;
  }
  if (off > limit) throw new Error(`layout overflows: ${off} > ${limit}`);
  return out;
}

const HEADER = place(HEADER_FIELDS, HEADER_SIZE);
const SLOT = place(SLOT_FIELDS, SLOT_SIZE);
const TICKET = place(TICKET_FIELDS, TICKET_ENTRY_SIZE);

function table(title: string, m: Map<string, Placed>): string {
  return [
    `### ${title}`,
    "",
    "| offset | size | field | type | writer | meaning |",
    "| --- | --- | --- | --- | --- | --- |",
    ...[...m.values()].map((f) =>
      `| ${f.offset} | ${f.size} | \`${f.name}\` | ${f.type} | ${f.writer} | ${f.doc} |`
    ),
    "",
  ].join("\n");
}

/**
 * The shm layout as Markdown (source of docs/SHM_LAYOUT.md). `states` is the
 * ticket protocol's account of its words (`mod/link/slot_tickets.ts`), put
 * after the ticket entry table.
 */
export function layoutMarkdown(states = ""): string {
  return [
    `Layout version ${LAYOUT_VERSION}. Header ${HEADER_SIZE} bytes, then slots of ${SLOT_SIZE} bytes:`,
    "slot 0 is the dispatcher, slot i (1..N) is worker i; then one stats block per slot; then, slot by",
    `slot, \`tickets_per_slot\` ticket entries of ${TICKET_ENTRY_SIZE} bytes. Integers are little-endian and accessed`,
    "with `Atomics` (i32 through an Int32Array, i64 through a BigInt64Array). Times named `*_at` and",
    "`*_until` are milliseconds on CLOCK_MONOTONIC, comparable between the host's processes.",
    "",
    table("Header", HEADER),
    table("Slot", SLOT),
    "`sup_state`: " + Object.entries(SupState).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ") + ".",
    "`link_state`: " + Object.entries(LinkState).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ") + ".",
    "",
    table(`Ticket entry (${TICKET_ENTRY_SIZE} bytes, \`tickets_per_slot\` per slot)`, TICKET),
    ...(states ? [states, ""] : []),
    statsMarkdown(),
  ].join("\n");
}

/** The segment is missing, foreign, too short or from another layout version. */
export class ShmError extends OspsError {}

/** Size in bytes of a segment with `slots` slots (and as many stats blocks), `tickets` entries per slot. */
export function segmentSize(slots: number, tickets = 1): number {
  return HEADER_SIZE + slots * (SLOT_SIZE + STATS_BLOCK_SIZE + tickets * TICKET_ENTRY_SIZE);
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * The typed views over a mapping. {@link Segment.close} swaps them for empty
 * ones before unmapping, so a late access throws a RangeError instead of
 * touching memory that is no longer mapped.
 */
interface Views {
  i32: Int32Array;
  i64: BigInt64Array;
  u8: Uint8Array;
}

/** Where a field sits, as the hot accessors need it: 0 i32, 1 i64, 2 bytes; byte offset within its record. */
interface Spot {
  readonly kind: 0 | 1 | 2;
  readonly offset: number;
  readonly size: number;
  readonly type: FieldType;
}

function spots(fields: Map<string, Placed>): Readonly<Record<string, Spot>> {
  const out: Record<string, Spot> = Object.create(null);
  for (const f of fields.values()) {
    out[f.name] = {
      kind: f.type === "i32" ? 0 : f.type === "i64" ? 1 : 2,
      offset: f.offset,
      size: f.size,
      type: f.type,
    };
  }
  return out;
}

const SLOT_SPOTS = spots(SLOT);
const TICKET_SPOTS = spots(TICKET);

/**
 * Accessor for the fields of one record (a slot or a ticket entry) at a fixed
 * place of a mapping. Requests touch these on every step, so a field's place
 * is looked up once per access in a plain table, and nothing is allocated but
 * a byte field's view.
 */
class RecordView<F extends string> {
  protected readonly v: Views;
  protected readonly base: number;
  readonly #spots: Readonly<Record<string, Spot>>;
  /** Byte fields' views, made once per mapping (a closed segment's empty view makes them anew, and fail). */
  #views: Record<string, Uint8Array> = Object.create(null);
  #viewsOf: Uint8Array | undefined;

  constructor(views: Views, base: number, fields: Readonly<Record<string, Spot>>) {
    this.v = views;
    this.base = base;
    this.#spots = fields;
  }

  #int(name: F): Spot {
    const f = this.#spots[name]!;
    if (f.kind === 2) throw new TypeError(`field ${name} is ${f.type}`);
    return f;
  }

  /** Atomically loads an integer field. */
  load(name: F): number {
    const f = this.#int(name);
    const at = this.base + f.offset;
    return f.kind === 0 ? Atomics.load(this.v.i32, at >> 2) : Number(Atomics.load(this.v.i64, at >> 3));
  }

  /** Atomically stores an integer field. */
  store(name: F, value: number): void {
    const f = this.#int(name);
    const at = this.base + f.offset;
    if (f.kind === 0) Atomics.store(this.v.i32, at >> 2, value);
    else Atomics.store(this.v.i64, at >> 3, BigInt(Math.trunc(value)));
  }

  /** Atomically adds to an integer field; returns the new value. */
  add(name: F, delta: number): number {
    const f = this.#int(name);
    const at = this.base + f.offset;
    if (f.kind === 0) return Atomics.add(this.v.i32, at >> 2, delta) + delta;
    return Number(Atomics.add(this.v.i64, at >> 3, BigInt(delta))) + delta;
  }

  /** Compare-and-swap on an i32 field; true when `expected` was there and `value` is now. */
  cas(name: F, expected: number, value: number): boolean {
    const f = this.#int(name);
    return Atomics.compareExchange(this.v.i32, (this.base + f.offset) >> 2, expected, value) === expected;
  }

  /** A live view of a byte field. */
  bytes(name: F): Uint8Array {
    const u8 = this.v.u8;
    if (this.#viewsOf !== u8) {
      this.#views = Object.create(null);
      this.#viewsOf = u8;
    }
    const made = this.#views[name];
    if (made) return made;
    const f = this.#spots[name]!;
    if (f.kind !== 2) throw new TypeError(`field ${name} is ${f.type}`);
    const at = this.base + f.offset;
    if (at + f.size > u8.length) throw new RangeError("shared memory segment is closed");
    return this.#views[name] = u8.subarray(at, at + f.size);
  }

  /** Reads a NUL-padded text field. */
  text(name: F): string {
    const b = this.bytes(name);
    const end = b.indexOf(0);
    return textDecoder.decode(b.subarray(0, end < 0 ? b.length : end));
  }

  /** Writes a NUL-padded text field (cut to fit, never inside a UTF-8 sequence). */
  setText(name: F, value: string): void {
    const b = this.bytes(name);
    // ASCII (types, addresses, most arguments) is copied here; anything else goes through the encoder.
    let i = 0;
    for (const n = Math.min(value.length, b.length); i < n; i++) {
      const c = value.charCodeAt(i);
      if (c >= 0x80) {
        i = textEncoder.encodeInto(value, b).written;
        break;
      }
      b[i] = c;
    }
    b.fill(0, i);
  }
}

const T_WORD = TICKET_SPOTS["word"]!.offset, T_EXPIRES = TICKET_SPOTS["expires_at"]!.offset;
const T_TICKET = TICKET_SPOTS["ticket"]!.offset, T_TYPE = TICKET_SPOTS["request_type"]!.offset;
const T_TYPE_SIZE = TICKET_SPOTS["request_type"]!.size;

/** The value of a lower-case hex digit's char code (the grammar allows no other). */
function hexDigit(c: number): number {
  return c <= 57 ? c - 48 : c - 87;
}

/**
 * Writes the 16 bytes of a ticket (32 lower-case hex digits) into `into` as
 * four little-endian i32, the form {@link TicketView.holdsWords} compares.
 */
export function ticketWords(ticket: string, into: Int32Array): Int32Array {
  for (let w = 0; w < 4; w++) {
    let v = 0;
    for (let b = 3; b >= 0; b--) {
      const i = 2 * (4 * w + b);
      v = (v << 8) | (hexDigit(ticket.charCodeAt(i)) << 4) | hexDigit(ticket.charCodeAt(i + 1));
    }
    into[w] = v;
  }
  return into;
}

/**
 * Accessor for one ticket entry of a slot (see `mod/link/slot_tickets.ts` for
 * its protocol, the only user of its word). Besides the named fields, the few
 * accesses every request makes have direct methods.
 */
export class TicketView extends RecordView<TicketField> {
  /** Entry index within its slot. */
  readonly index: number;

  constructor(views: Views, base: number, index: number) {
    super(views, base, TICKET_SPOTS);
    this.index = index;
  }

  /** The entry's word (atomic load). */
  word(): number {
    return Atomics.load(this.v.i32, (this.base + T_WORD) >> 2);
  }

  /** Compare-and-swap of the entry's word. */
  casWord(expected: number, value: number): boolean {
    return Atomics.compareExchange(this.v.i32, (this.base + T_WORD) >> 2, expected, value) === expected;
  }

  /** The ticket's expiry (atomic load). */
  expiresAt(): number {
    return Number(Atomics.load(this.v.i64, (this.base + T_EXPIRES) >> 3));
  }

  /**
   * True when the entry's ticket is `ticket` (32 lower-case hex digits, as
   * the protocol's grammar checked them), compared in constant time, without
   * making its bytes.
   */
  holds(ticket: string): boolean {
    const u8 = this.v.u8, at = this.base + T_TICKET;
    if (at + 16 > u8.length) throw new RangeError("shared memory segment is closed");
    let diff = ticket.length ^ 32;
    for (let i = 0; i < 16; i++) {
      diff |= u8[at + i]! ^
        ((hexDigit(ticket.charCodeAt(2 * i)) << 4) | hexDigit(ticket.charCodeAt(2 * i + 1)));
    }
    return diff === 0;
  }

  /**
   * True when the entry's ticket is the one whose 16 bytes `words` holds as
   * four little-endian i32 (see {@link ticketWords}), compared in constant time.
   */
  holdsWords(words: Int32Array): boolean {
    const i32 = this.v.i32, at = (this.base + T_TICKET) >> 2;
    if (at + 4 > i32.length) throw new RangeError("shared memory segment is closed");
    return ((i32[at]! ^ words[0]!) | (i32[at + 1]! ^ words[1]!) | (i32[at + 2]! ^ words[2]!) |
      (i32[at + 3]! ^ words[3]!)) === 0;
  }

  /** Writes the entry's ticket from its 32 hex digits. */
  setTicket(ticket: string): void {
    const b = this.bytes("ticket");
    for (let i = 0; i < 16; i++) {
      b[i] = (hexDigit(ticket.charCodeAt(2 * i)) << 4) | hexDigit(ticket.charCodeAt(2 * i + 1));
    }
  }

  /** True when the entry's request type is `type` (ASCII, as the protocol's grammar has it). */
  typeIs(type: string): boolean {
    const u8 = this.v.u8, at = this.base + T_TYPE;
    if (type.length > T_TYPE_SIZE) return false;
    for (let i = 0; i < T_TYPE_SIZE; i++) {
      if (u8[at + i] !== (i < type.length ? type.charCodeAt(i) : 0)) return false;
    }
    return true;
  }
}

/** Accessor for one slot of a mapped segment, and its ticket entries. */
export class SlotView extends RecordView<SlotField> {
  /** Slot index (0 = dispatcher). */
  readonly index: number;
  /** The slot's ticket entries (`tickets_per_slot`; the dispatcher's slot has them too, unused). */
  readonly tickets: readonly TicketView[];

  constructor(views: Views, index: number, ticketsAt: number, tickets: number) {
    super(views, HEADER_SIZE + index * SLOT_SIZE, SLOT_SPOTS);
    this.index = index;
    this.tickets = Array.from(
      { length: tickets },
      (_, i) => new TicketView(views, ticketsAt + (index * tickets + i) * TICKET_ENTRY_SIZE, i),
    );
  }
}

/** A mapped shared-memory segment. */
export class Segment {
  readonly name: string;
  readonly slotCount: number;
  /** Ticket entries per slot (the worker concurrency). */
  readonly ticketsPerSlot: number;
  readonly #views: Views;
  readonly #byteLength: number;
  #unmap: (() => void) | undefined;
  readonly #slots: SlotView[];

  private constructor(
    name: string,
    buffer: ArrayBuffer,
    counts: { slots: number; tickets: number },
    unmap: () => void,
  ) {
    this.name = name;
    this.slotCount = counts.slots;
    this.ticketsPerSlot = counts.tickets;
    this.#byteLength = buffer.byteLength;
    this.#views = { i32: new Int32Array(buffer), i64: new BigInt64Array(buffer), u8: new Uint8Array(buffer) };
    this.#unmap = unmap;
    const ticketsAt = HEADER_SIZE + counts.slots * (SLOT_SIZE + STATS_BLOCK_SIZE);
    this.#slots = Array.from(
      { length: counts.slots },
      (_, i) => new SlotView(this.#views, i, ticketsAt, counts.tickets),
    );
  }

  /**
   * Creates (O_EXCL) and initialises a segment, mode 0600, with `tickets`
   * ticket entries per slot. On any failure after `shm_open`, the name is
   * unlinked again: nothing is left behind.
   * @example
   * ```ts
   * const seg = Segment.create("/osps-demo", 3, 42);
   * seg.slot(1).store("port", 2223);
   * seg.close(); Segment.unlink("/osps-demo");
   * ```
   */
  static create(name: string, slotCount: number, instanceId: number, basePort = 0, tickets = 1): Segment {
    if (!(slotCount >= 1 && slotCount <= MAX_SLOTS)) {
      throw new RangeError(`slot count ${slotCount} out of range`);
    }
    if (!(tickets >= 1 && tickets <= MAX_TICKETS_PER_SLOT)) {
      throw new RangeError(`tickets per slot ${tickets} out of range 1..${MAX_TICKETS_PER_SLOT}`);
    }
    const fd = libc.shmOpen(name, libc.O.RDWR | libc.O.CREAT | libc.O.EXCL, 0o600);
    try {
      const size = segmentSize(slotCount, tickets);
      libc.ftruncate(fd, size);
      const { buffer, unmap } = libc.mmapShared(fd, size);
      const seg = new Segment(name, buffer, { slots: slotCount, tickets }, unmap);
      seg.setHeader("layout_version", LAYOUT_VERSION);
      seg.setHeader("slot_count", slotCount);
      seg.setHeader("slot_size", SLOT_SIZE);
      seg.setHeader("watchdog_pid", Deno.pid);
      seg.setHeader("instance_id", instanceId);
      seg.setHeader("created_ms", Date.now());
      seg.setHeader("base_port", basePort);
      seg.setHeader("stats_block_size", STATS_BLOCK_SIZE);
      seg.setHeader("tickets_per_slot", tickets);
      seg.setHeader("state", 1);
      for (let i = 0; i < slotCount; i++) {
        seg.slot(i).store("last_exit", -1); // ExitReason.NONE: no process has ended yet
      }
      seg.setHeader("magic", SHM_MAGIC); // last: readers treat a segment without magic as not ready
      return seg;
    } catch (err) {
      libc.shmUnlink(name);
      throw err;
    } finally {
      libc.close(fd);
    }
  }

  /**
   * Maps an existing segment. Checks owner, size, magic, layout version,
   * slot and ticket counts against the size (a short segment would SIGBUS on
   * access) and, when given, the instance id.
   */
  static open(name: string, expectInstance?: number): Segment {
    let fd: number;
    try {
      fd = libc.shmOpen(name, libc.O.RDWR, 0);
    } catch (err) {
      throw new ShmError(`shared memory segment "${name}" is missing (instance not running?)`, {
        cause: err,
      });
    }
    try {
      const st = libc.fstat(fd);
      if (st.uid !== libc.getuid()) {
        throw new ShmError(`shared memory segment "${name}" belongs to uid ${st.uid}`);
      }
      if (st.size < HEADER_SIZE) throw new ShmError(`"${name}" is not an osps segment (${st.size} bytes)`);
      const probe = libc.mmapShared(fd, HEADER_SIZE);
      const h = new Int32Array(probe.buffer);
      const magic = h[0], version = h[1], count = h[2] ?? 0;
      const tickets = h[HEADER.get("tickets_per_slot")!.offset / 4] ?? 0;
      probe.unmap();
      if (magic !== SHM_MAGIC) throw new ShmError(`"${name}" is not an osps segment (bad magic)`);
      if (version !== LAYOUT_VERSION) {
        throw new ShmError(`"${name}" has layout version ${version}, this osps reads ${LAYOUT_VERSION}`);
      }
      if (
        !(count >= 1 && count <= MAX_SLOTS) || !(tickets >= 1 && tickets <= MAX_TICKETS_PER_SLOT) ||
        segmentSize(count, tickets) > st.size
      ) {
        throw new ShmError(
          `"${name}" claims ${count} slots of ${tickets} tickets but holds ${st.size} bytes`,
        );
      }
      const { buffer, unmap } = libc.mmapShared(fd, segmentSize(count, tickets));
      const seg = new Segment(name, buffer, { slots: count, tickets }, unmap);
      if (expectInstance !== undefined && seg.header("instance_id") !== expectInstance) {
        seg.close();
        throw new ShmError(`"${name}" belongs to another instance`);
      }
      return seg;
    } finally {
      libc.close(fd);
    }
  }

  /** True when a segment of that name exists (checked with shm_open: Deno guards /dev paths). */
  static exists(name: string): boolean {
    try {
      libc.close(libc.shmOpen(name, libc.O.RDONLY, 0));
      return true;
    } catch (err) {
      if (err instanceof SysError && err.errno === libc.E.ENOENT) return false;
      throw err;
    }
  }

  /** Mode bits, owner and size of a segment (fstat on a read-only descriptor). */
  static stat(name: string): { mode: number; uid: number; size: number } {
    const fd = libc.shmOpen(name, libc.O.RDONLY, 0);
    try {
      return libc.fstat(fd);
    } finally {
      libc.close(fd);
    }
  }

  /** Removes a segment name; false when it did not exist. Mappings stay valid until closed. */
  static unlink(name: string): boolean {
    return libc.shmUnlink(name);
  }

  /** Reads an integer header field. */
  header(name: HeaderField): number {
    const f = HEADER.get(name)!;
    if (f.type.startsWith("bytes")) throw new TypeError(`header field ${name} is ${f.type}`);
    return f.type === "i32"
      ? Atomics.load(this.#views.i32, f.offset / 4)
      : Number(Atomics.load(this.#views.i64, f.offset / 8));
  }

  /** Reads a NUL-padded text field of the header. */
  headerText(name: HeaderField): string {
    const b = this.#headerBytes(name);
    const end = b.indexOf(0);
    return textDecoder.decode(b.subarray(0, end < 0 ? b.length : end));
  }

  /** Writes a NUL-padded text field of the header (cut to fit). */
  setHeaderText(name: HeaderField, value: string): void {
    const b = this.#headerBytes(name);
    const { written } = textEncoder.encodeInto(value, b);
    b.fill(0, written);
  }

  #headerBytes(name: HeaderField): Uint8Array {
    const f = HEADER.get(name)!;
    if (!f.type.startsWith("bytes")) throw new TypeError(`header field ${name} is ${f.type}`);
    if (f.offset + f.size > this.#views.u8.length) throw new RangeError("shared memory segment is closed");
    return this.#views.u8.subarray(f.offset, f.offset + f.size);
  }

  /** Writes a header field. */
  setHeader(name: HeaderField, value: number): void {
    const f = HEADER.get(name)!;
    if (f.type === "i32") Atomics.store(this.#views.i32, f.offset / 4, value);
    else Atomics.store(this.#views.i64, f.offset / 8, BigInt(Math.trunc(value)));
  }

  /** The stats block of slot `index` (0 = dispatcher). */
  stats(index: number): StatsView {
    if (!(index >= 0 && index < this.slotCount)) {
      throw new RangeError(`stats block ${index} out of range 0..${this.slotCount - 1}`);
    }
    return new StatsView(this.#views, HEADER_SIZE + this.slotCount * SLOT_SIZE + index * STATS_BLOCK_SIZE);
  }

  /** The slot at `index` (0 = dispatcher). */
  slot(index: number): SlotView {
    const s = this.#slots[index];
    if (!s) throw new RangeError(`slot ${index} out of range 0..${this.slotCount - 1}`);
    return s;
  }

  /** Byte length of the mapping. */
  get byteLength(): number {
    return this.#byteLength;
  }

  /** True once {@link Segment.close} ran. */
  get closed(): boolean {
    return this.#unmap === undefined;
  }

  /**
   * Unmaps the segment (the name stays until {@link Segment.unlink}).
   * Idempotent; every view of it then throws instead of reading unmapped memory.
   */
  close(): void {
    const unmap = this.#unmap;
    if (!unmap) return;
    this.#unmap = undefined;
    this.#views.i32 = new Int32Array(0);
    this.#views.i64 = new BigInt64Array(0);
    this.#views.u8 = new Uint8Array(0);
    unmap();
  }

  /** `using` support: closes the mapping. */
  [Symbol.dispose](): void {
    this.close();
  }
}
