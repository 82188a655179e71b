/**
 * Where this process's resident memory goes: V8's heap (used and committed,
 * by space), the memory V8 counts as external (array buffers), glibc's
 * allocator (what Rust, the runtime's sockets and buffers, and V8's own
 * bookkeeping hold), and the kernel's own account of the resident set. A
 * server at thousands of connections reads it to tell live objects from
 * headroom (IRC `STATS z`, `scripts/bench_chat_scale.ts`).
 * @module
 */
import { getHeapSpaceStatistics, getHeapStatistics } from "node:v8";
import * as libc from "./libc.ts";

/** One process's memory, in KiB. */
export interface MemoryReport {
  /** Resident set (the kernel's VmRSS), of which anonymous memory (`anon`) and mapped files. */
  readonly rss: number;
  readonly anon: number;
  /** V8's heap: objects live or not yet collected, and the pages it holds for them (committed). */
  readonly heapUsed: number;
  readonly heapCommitted: number;
  /** The young generation's committed pages (both semi-spaces). */
  readonly newSpace: number;
  /** The old generation, used of committed. */
  readonly oldUsed: number;
  readonly oldCommitted: number;
  /** Objects too big for a page (strings, arrays), each its own mapping. */
  readonly largeObjects: number;
  /** Array buffers and other memory outside the heap that V8 was told of. */
  readonly external: number;
  /** glibc's allocator: handed out, and freed but still held. */
  readonly mallocUsed: number;
  readonly mallocFree: number;
}

const kib = (bytes: number) => Math.round(bytes / 1024);

/** This process's {@link MemoryReport} (a few hundred microseconds: reads /proc/self/status). */
export function memoryReport(): MemoryReport {
  const status = new TextDecoder().decode(libc.readSmallFile("/proc/self/status") ?? new Uint8Array());
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status)?.[1] ?? 0);
  const heap = getHeapStatistics();
  const spaces = new Map(getHeapSpaceStatistics().map((s) => [s.space_name, s]));
  const space = (name: string) => spaces.get(name);
  const malloc = libc.mallocInfo();
  return {
    rss: field("VmRSS"),
    anon: field("RssAnon"),
    heapUsed: kib(heap.used_heap_size),
    heapCommitted: kib(heap.total_physical_size),
    newSpace: kib(space("new_space")?.physical_space_size ?? 0),
    oldUsed: kib(space("old_space")?.space_used_size ?? 0),
    oldCommitted: kib(space("old_space")?.physical_space_size ?? 0),
    largeObjects: kib(space("large_object_space")?.physical_space_size ?? 0),
    external: kib(heap.external_memory),
    mallocUsed: kib(malloc.inUse),
    mallocFree: kib(malloc.free),
  };
}

/**
 * `report` as one line of `name=KiB` pairs, names in snake case
 * (`rss=102400 anon=98304 heap_used=…`): what `STATS z` says and the
 * benchmark parses back with {@link parseMemoryLine}.
 */
export function memoryLine(report: MemoryReport): string {
  return Object.entries(report).map(([k, v]) => `${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}=${v}`)
    .join(" ");
}

/** The pairs of a {@link memoryLine} (KiB by snake-case name); empty when there are none. */
export function parseMemoryLine(line: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of line.matchAll(/([a-z_]+)=(\d+)/g)) out[m[1]!] = Number(m[2]);
  return out;
}

/** Freed malloc memory past this much more than after the last trim is given back. */
const TRIM_STEP = 8 * 1024 * 1024;
/** Memory in use that moved less than this between two looks: the allocator is calm. */
const CALM_DELTA = 1024 * 1024;

/** What a {@link MallocTrim} did so far. */
export interface TrimStats {
  readonly trims: number;
  /** The last trim's duration (on a worker thread: the loop ran meanwhile) and the resident KiB it gave back. */
  readonly lastMs: number;
  readonly lastKiB: number;
}

/**
 * Gives back to the system the memory glibc's allocator keeps after a burst.
 * A storm of thousands of JOINs queues gigabytes of output bytes a few
 * megabytes at a time; once written and freed, glibc keeps those chunks
 * (only the top of a heap goes back by itself), scattered between live ones:
 * tens of megabytes resident for nothing. Every `everyMs` this looks at
 * what the allocator holds free and, when that grew by more than
 * {@link TRIM_STEP} since the last trim and the burst is over (what is in
 * use moved by less than {@link CALM_DELTA} since the last look: trimming
 * during a storm gives back pages it takes again at once, and holds the
 * allocator's lock meanwhile), runs `malloc_trim(0)`, which returns every
 * whole free page, on one of Deno's worker threads.
 */
export class MallocTrim {
  #timer: ReturnType<typeof setInterval>;
  /** Free bytes just after the last trim (or the least seen since): growth past it is new garbage. */
  #floor = 0;
  /** Memory in use at the last look. */
  #inUse = 0;
  #busy = false;
  #stats: TrimStats = { trims: 0, lastMs: 0, lastKiB: 0 };

  /** Starts looking every `everyMs` (the timer does not keep the process alive). */
  constructor(everyMs: number) {
    this.#timer = setInterval(() => void this.#look(), everyMs);
    Deno.unrefTimer(this.#timer);
  }

  /** What it did so far. */
  get stats(): TrimStats {
    return this.#stats;
  }

  async #look(): Promise<void> {
    if (this.#busy) return;
    const { free, inUse } = libc.mallocInfo();
    const calm = Math.abs(inUse - this.#inUse) < CALM_DELTA;
    this.#inUse = inUse;
    this.#floor = Math.min(this.#floor, free);
    if (free - this.#floor < TRIM_STEP || !calm) return;
    this.#busy = true;
    try {
      const rss = memoryReport().rss, t0 = performance.now();
      await libc.mallocTrim(0);
      this.#stats = {
        trims: this.#stats.trims + 1,
        lastMs: Math.round(performance.now() - t0),
        lastKiB: Math.max(0, rss - memoryReport().rss),
      };
      this.#floor = libc.mallocInfo().free;
    } finally {
      this.#busy = false;
    }
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
