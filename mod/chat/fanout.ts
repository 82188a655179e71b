/**
 * How one channel's events reach its members on this worker: in stages. The
 * events a turn of the event loop applies to a channel are staged, then
 * handed on together: most members get the whole stage as one shared
 * buffer (its lines encoded and joined once per tag mask), so a JOIN
 * storm in a channel of 10,000 costs each member one queue entry and one
 * write per turn, not one per event. Only members that see part of a stage
 * — they joined or left within it, or an event is not for them (their own
 * message, a QUIT they hear from another channel) — get its events one by
 * one.
 * @module
 */
import type { ChannelEvent } from "./chat_store.ts";
import { eventOutgoing, type Outgoing } from "./tags.ts";

/** A local member as fan-out sees it. */
export interface Recipient {
  /** Channels joined (folded) → number of the JOIN event. */
  readonly joined: Map<string, number>;
  /** Queues one event. */
  deliver(out: Outgoing): void;
  /** Queues a stage's events, in order. */
  deliverAll(batch: OutgoingBatch): void;
}

const empty = new Uint8Array(0);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let off = 0;
  for (const p of parts) out.set(p, off), off += p.length;
  return out;
}

/** Several events for many recipients: their lines joined into one buffer, once per tag mask. */
export class OutgoingBatch {
  readonly outs: readonly Outgoing[];
  readonly #bytes: Array<Uint8Array | undefined> = [];

  constructor(outs: readonly Outgoing[]) {
    this.outs = outs;
  }

  /** Every line with the tags `mask` asks for (`tags.ts`), CR LF included. */
  bytes(mask: number): Uint8Array {
    return this.#bytes[mask] ??= this.outs.length === 0 ? empty : concat(this.outs.map((o) => o.bytes(mask)));
  }
}

/** Which events of a stage a member sees: windows of event numbers, less some events. */
interface Partial {
  /** [from, to] inclusive; undefined: from its JOIN on. */
  windows?: Array<[number, number]>;
  skip?: Set<number>;
}

/** One channel's events of one turn, waiting to be handed on. */
export class Stage {
  readonly #events: Array<{ readonly ev: ChannelEvent; readonly out: Outgoing }> = [];
  readonly #partial = new Map<Recipient, Partial>();

  /** Events staged. */
  get size(): number {
    return this.#events.length;
  }

  /** Stages an event caused by `origin`. */
  add(ev: ChannelEvent, origin: string): void {
    this.#events.push({ ev, out: eventOutgoing(ev, origin) });
  }

  /** `m` does not get event `seq` (its own message, a QUIT it hears elsewhere). */
  skip(m: Recipient, seq: number): void {
    const p = this.#partial.get(m) ?? {};
    (p.skip ??= new Set()).add(seq);
    this.#partial.set(m, p);
  }

  /** `m` left at event `seq` (it gets that one): from then on it is no member here. */
  left(m: Recipient, key: string, seq: number): void {
    const p = this.#partial.get(m) ?? {};
    (p.windows ??= []).push([m.joined.get(key) ?? Infinity, seq]);
    this.#partial.set(m, p);
  }

  /** `m` is back (a JOIN within the stage after it left). */
  rejoined(m: Recipient, seq: number): void {
    const p = this.#partial.get(m) ?? {};
    (p.windows ??= []).push([seq, Infinity]);
    this.#partial.set(m, p);
  }

  /** Hands the stage to the members (`key`: the channel, folded). */
  flush(members: Iterable<Recipient>, key: string): void {
    if (this.#events.length === 0) return;
    const first = this.#events[0]!.ev.seq;
    let batch: OutgoingBatch | undefined;
    for (const m of members) {
      if (this.#partial.has(m)) continue;
      const from = m.joined.get(key) ?? Infinity;
      if (from <= first) m.deliverAll(batch ??= new OutgoingBatch(this.#events.map((e) => e.out)));
      else this.#partial.set(m, {});
    }
    for (const [m, p] of this.#partial) {
      const windows = p.windows ?? [[m.joined.get(key) ?? Infinity, Infinity]];
      for (const { ev, out } of this.#events) {
        if (p.skip?.has(ev.seq)) continue;
        if (windows.some(([from, to]) => ev.seq >= from && ev.seq <= to)) m.deliver(out);
      }
    }
  }
}
