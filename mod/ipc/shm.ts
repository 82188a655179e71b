/**
 * The shared-memory segment of one osps instance: creation, mapping and field
 * access with `Atomics`, by the layout of `shm_layout.ts` (re-exported here).
 *
 * One segment per instance: a header, then slot 0 for the dispatcher and slots
 * 1..N for the workers, then one stats block per slot (`stats.ts`), then each
 * slot's ticket entries (`tickets_per_slot` of them, the worker concurrency).
 * Every field has exactly one writer role (the `writer` column) except the
 * ticket words and a slot's `door`, which move by compare-and-swap between the
 * roles, and only through the ticket protocol (`mod/link/slot_tickets.ts`,
 * which also documents their states). Times ending in `_at` or `_until` are
 * milliseconds on CLOCK_MONOTONIC (`mod/sys/clock.ts`), the same clock in every
 * process of the host. `docs/SHM_LAYOUT.md` is generated from the layout's
 * tables (`deno task layout`), and a test fails when the two disagree.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { OspsError, SysError } from "../errors.ts";
import { STATS_BLOCK_SIZE, StatsView } from "./stats.ts";
import {
  HEADER,
  HEADER_SIZE,
  type HeaderField,
  LAYOUT_VERSION,
  MAX_SLOTS,
  MAX_TICKETS_PER_SLOT,
  segmentSize,
  SHM_MAGIC,
  SLOT_SIZE,
} from "./shm_layout.ts";

export * from "./shm_layout.ts";
export { SlotView, TicketView, ticketWords } from "./shm_views.ts";
import { SlotView, type Views } from "./shm_views.ts";

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** The segment is missing, foreign, too short or from another layout version. */
export class ShmError extends OspsError {}

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
