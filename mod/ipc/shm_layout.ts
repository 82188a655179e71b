/**
 * The layout of an osps shared-memory segment, defined once: the header,
 * slot and ticket entry fields with their writers and meanings, where each
 * sits, and the Markdown docs/SHM_LAYOUT.md is generated from
 * (`deno task layout`; a test fails when the two disagree). `shm.ts` maps a
 * segment by it.
 * @module
 */
import { STATS_BLOCK_SIZE, statsMarkdown } from "./stats.ts";

/** "OSPS" little-endian. */
export const SHM_MAGIC = 0x5350534f;
/** Bumped whenever {@link HEADER_FIELDS} or {@link SLOT_FIELDS} change. */
export const LAYOUT_VERSION = 8;
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

/** Type of a field: a 32- or 64-bit integer, or that many bytes. */
export type FieldType = "i32" | "i64" | `bytes${number}`;
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
    doc:
      "reloads that failed: the config did not load, or a new worker did not serve (the old ones serve on)",
  },
  {
    name: "replaced_rss",
    type: "i32",
    writer: "watchdog",
    doc: "workers replaced for going over --max-worker-rss-mb",
  },
  { name: "reloaded_at", type: "i64", writer: "watchdog", doc: "when the last reload finished, 0 before" },
  {
    name: "reloads_done",
    type: "i32",
    writer: "watchdog",
    doc: "reloads that succeeded (every worker replaced)",
  },
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
      "1: a local slot kept free, where a worker's replacement starts before the worker is replaced (reload, RSS)",
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
  REPLACED: 8,
} as const;

/** Reverse lookup: state number → lower-case name. */
export function stateName(table: Record<string, number>, value: number): string {
  for (const [k, v] of Object.entries(table)) if (v === value) return k.toLowerCase();
  return `unknown(${value})`;
}

/** A field with its place in its record. */
export interface Placed {
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

/** Where each header field sits. */
export const HEADER = place(HEADER_FIELDS, HEADER_SIZE);
/** Where each slot field sits. */
export const SLOT = place(SLOT_FIELDS, SLOT_SIZE);
/** Where each ticket entry field sits. */
export const TICKET = place(TICKET_FIELDS, TICKET_ENTRY_SIZE);

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

/** Size in bytes of a segment with `slots` slots (and as many stats blocks), `tickets` entries per slot. */
export function segmentSize(slots: number, tickets = 1): number {
  return HEADER_SIZE + slots * (SLOT_SIZE + STATS_BLOCK_SIZE + tickets * TICKET_ENTRY_SIZE);
}
