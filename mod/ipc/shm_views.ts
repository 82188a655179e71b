/**
 * Field access to a mapped segment: a slot, a ticket entry, each through the
 * places of `shm_layout.ts`, with `Atomics` for integers. Requests touch these
 * on every step, so a field's place is found in a plain table and nothing is
 * allocated per access but a byte field's view, made once per mapping.
 * @module
 */
import {
  type FieldType,
  HEADER_SIZE,
  type Placed,
  SLOT,
  SLOT_SIZE,
  type SlotField,
  TICKET,
  TICKET_ENTRY_SIZE,
  type TicketField,
} from "./shm_layout.ts";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * The typed views over a mapping. {@link Segment.close} swaps them for empty
 * ones before unmapping, so a late access throws a RangeError instead of
 * touching memory that is no longer mapped.
 */
export interface Views {
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
