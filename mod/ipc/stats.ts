/**
 * Per-process request statistics in shared memory: one block per slot, after
 * the slots, so the watchdog can serve metrics while any role is down and
 * restarted roles keep counting where their predecessor stopped.
 *
 * Every block has one writer process (the slot's current child; the
 * dispatcher writes block 0), and every field is a 64-bit counter moved with
 * `Atomics.add`: the hot path of a request costs three adds, and a reader
 * (`osps watchdog --metrics-port`) sums the blocks without locks. Counters only
 * grow for the life of the segment, as Prometheus counters must.
 * @module
 */
import { serviceNames } from "../services/registry.ts";
import { Status } from "../net/protocol.ts";

/** Rows for request types: the registry's types in sorted order, then `other`. Fixed, so adding a type keeps the layout. */
export const TYPE_CAPACITY = 16;
/** Columns for status codes. */
export const CODE_CAPACITY = 16;
/** Histogram buckets per type (the last is +Inf). */
export const BUCKET_CAPACITY = 16;
/** Ticket outcome counters. */
export const OUTCOME_CAPACITY = 8;
/** Bytes per stats block; the fields leave room to grow without moving blocks. */
export const STATS_BLOCK_SIZE = 4608;

/** Request types counted, in row order; anything else (a hostile client's word) counts as `other`. */
export const STAT_TYPES: readonly string[] = [...serviceNames(), "other"];
/** Status codes counted, in column order; any other code counts as `other`. */
export const STAT_CODES: readonly string[] = [
  ...[...new Set(Object.values(Status))].filter((c) => c >= 200).sort((a, b) => a - b).map(String),
  "other",
];
/** Upper bounds of the duration histogram's buckets, seconds (the last bucket is +Inf). */
export const DURATION_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.002,
  0.005,
  0.01,
  0.02,
  0.05,
  0.1,
  0.2,
  0.5,
  1,
  2,
  5,
  10,
  30,
];
/** What became of a ticket: issued by the dispatcher, then used (worker), expired, returned or lost. */
export const TICKET_OUTCOMES = ["issued", "used", "expired", "returned", "lost"] as const;
/** One of {@link TICKET_OUTCOMES}. */
export type TicketOutcome = (typeof TICKET_OUTCOMES)[number];

if (STAT_TYPES.length > TYPE_CAPACITY || STAT_CODES.length > CODE_CAPACITY) {
  throw new Error("stats layout: more request types or status codes than the block has room for");
}

interface StatsFieldSpec {
  readonly name: string;
  readonly count: number;
  readonly writer: string;
  readonly doc: string;
}

/** The fields of one stats block, in order; each is an array of i64 counters. */
export const STATS_FIELDS = [
  {
    name: "requests",
    count: TYPE_CAPACITY * CODE_CAPACITY,
    writer: "worker",
    doc: "requests answered, `[type row × 16 + code column]`",
  },
  {
    name: "duration_buckets",
    count: TYPE_CAPACITY * BUCKET_CAPACITY,
    writer: "worker",
    doc: "request durations, `[type row × 16 + bucket]`, not cumulative (bucket 15 is +Inf)",
  },
  {
    name: "duration_sum_us",
    count: TYPE_CAPACITY,
    writer: "worker",
    doc: "sum of request durations per type row, microseconds",
  },
  {
    name: "refusals",
    count: CODE_CAPACITY,
    writer: "child",
    doc: "lines or connections refused before any service ran, per code column",
  },
  {
    name: "tickets",
    count: OUTCOME_CAPACITY,
    writer: "dispatcher (issued, expired, returned, lost), worker (used)",
    doc: `ticket outcomes: ${TICKET_OUTCOMES.map((o, i) => `${i} ${o}`).join(", ")}`,
  },
] as const satisfies readonly StatsFieldSpec[];

type StatsField = (typeof STATS_FIELDS)[number]["name"];

const OFFSETS = (() => {
  const out = {} as Record<StatsField, number>;
  let at = 0;
  for (const f of STATS_FIELDS) {
    out[f.name] = at;
    at += f.count * 8;
  }
  if (at > STATS_BLOCK_SIZE) throw new Error(`stats layout overflows: ${at} > ${STATS_BLOCK_SIZE}`);
  return out;
})();

/** The stats block as a Markdown table (part of docs/SHM_LAYOUT.md). */
export function statsMarkdown(): string {
  return [
    `### Stats block (${STATS_BLOCK_SIZE} bytes, one per slot, after the last slot)`,
    "",
    "| offset | size | field | type | writer | meaning |",
    "| --- | --- | --- | --- | --- | --- |",
    ...STATS_FIELDS.map((f) =>
      `| ${OFFSETS[f.name]} | ${f.count * 8} | \`${f.name}\` | i64[${f.count}] | ${f.writer} | ${f.doc} |`
    ),
    "",
    `Type rows: ${STAT_TYPES.map((t, i) => `${i} ${t}`).join(", ")}. Code columns: ${
      STAT_CODES.map((c, i) => `${i} ${c}`).join(", ")
    }. Bucket upper bounds (s): ${DURATION_BUCKETS.join(", ")}, +Inf.`,
    "",
  ].join("\n");
}

const TYPE_ROW = new Map(STAT_TYPES.map((t, i) => [t, i]));
const CODE_COL = new Map(STAT_CODES.map((c, i) => [c, i]));
const OTHER_TYPE = STAT_TYPES.length - 1;
const OTHER_CODE = STAT_CODES.length - 1;

function typeRow(type: string): number {
  return TYPE_ROW.get(type) ?? OTHER_TYPE;
}

function codeCol(code: number): number {
  return CODE_COL.get(String(code)) ?? OTHER_CODE;
}

function bucketOf(seconds: number): number {
  let i = 0;
  while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++;
  return i;
}

/** Anything holding the segment's 64-bit view (swapped for an empty one when the segment closes). */
export interface I64Views {
  readonly i64: BigInt64Array;
}

/** The counters of one block, read at one moment (plain numbers). */
export interface StatsCounts {
  /** `requests[type row][code column]`. */
  readonly requests: number[][];
  /** `buckets[type row][bucket]`, not cumulative. */
  readonly buckets: number[][];
  /** Per type row, seconds. */
  readonly durationSum: number[];
  /** Per code column. */
  readonly refusals: number[];
  /** Per {@link TICKET_OUTCOMES} index. */
  readonly tickets: number[];
}

/** The stats block of one slot. */
export class StatsView {
  readonly #v: I64Views;
  /** Index of the block's first i64. */
  readonly #base: number;

  constructor(views: I64Views, byteOffset: number) {
    this.#v = views;
    this.#base = byteOffset / 8;
  }

  #add(field: StatsField, index: number, delta: bigint): void {
    Atomics.add(this.#v.i64, this.#base + OFFSETS[field] / 8 + index, delta);
  }

  #read(field: StatsField, from: number, count: number): number[] {
    const at = this.#base + OFFSETS[field] / 8 + from;
    return Array.from({ length: count }, (_, i) => Number(Atomics.load(this.#v.i64, at + i)));
  }

  /** Counts one answered request of `type` with status `code` that took `seconds` (worker). */
  request(type: string, code: number, seconds: number): void {
    const row = typeRow(type);
    this.#add("requests", row * CODE_CAPACITY + codeCol(code), 1n);
    this.#add("duration_buckets", row * BUCKET_CAPACITY + bucketOf(seconds), 1n);
    this.#add("duration_sum_us", row, BigInt(Math.round(seconds * 1e6)));
  }

  /** Counts a line or connection refused with `code` before any service ran. */
  refusal(code: number): void {
    this.#add("refusals", codeCol(code), 1n);
  }

  /** Counts one ticket reaching `outcome`. */
  ticket(outcome: TicketOutcome): void {
    this.#add("tickets", TICKET_OUTCOMES.indexOf(outcome), 1n);
  }

  /** Reads every counter of the block. */
  read(): StatsCounts {
    const rows = (field: StatsField, width: number) =>
      STAT_TYPES.map((_, r) => this.#read(field, r * width, width));
    return {
      requests: rows("requests", CODE_CAPACITY).map((r) => r.slice(0, STAT_CODES.length)),
      buckets: rows("duration_buckets", BUCKET_CAPACITY).map((r) => r.slice(0, DURATION_BUCKETS.length + 1)),
      durationSum: this.#read("duration_sum_us", 0, STAT_TYPES.length).map((us) => us / 1e6),
      refusals: this.#read("refusals", 0, STAT_CODES.length),
      tickets: this.#read("tickets", 0, TICKET_OUTCOMES.length),
    };
  }
}

/** Element-wise sum of several blocks' counters (the instance's totals). */
export function sumCounts(all: readonly StatsCounts[]): StatsCounts {
  const add = (a: number[], b: number[]) => a.map((v, i) => v + b[i]!);
  const zero = new StatsView({ i64: new BigInt64Array(STATS_BLOCK_SIZE / 8) }, 0).read();
  return all.reduce((acc, c) => ({
    requests: acc.requests.map((r, i) => add(r, c.requests[i]!)),
    buckets: acc.buckets.map((r, i) => add(r, c.buckets[i]!)),
    durationSum: add(acc.durationSum, c.durationSum),
    refusals: add(acc.refusals, c.refusals),
    tickets: add(acc.tickets, c.tickets),
  }), zero);
}
