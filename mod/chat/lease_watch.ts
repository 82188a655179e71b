/**
 * Which worker processes are dead, judged from their leases in the store
 * without trusting any clock but this process's monotonic one.
 *
 * Each owner renews its lease by writing the store's clock into it. A
 * watcher never compares that value with a clock of its own (hosts' clocks
 * differ, and the store's may jump): it only notes when the value last
 * changed, by its own monotonic clock, and calls an owner dead once the
 * value has not moved for a whole stale period. And it judges only while
 * its own renewals succeed: during a store outage nobody can renew, so
 * every lease looks stale; a watcher that could not renew itself forgets
 * what it saw and starts watching again when the store is back, instead of
 * reaping every live worker at once.
 * @module
 */
import type { OwnerLease } from "./chat_store.ts";

/** The stale periods: the default, and a shorter one for some owners (a dead predecessor in one's slot). */
export interface StalePeriods {
  readonly staleMs: number;
  readonly quickMs: number;
}

/** Watches leases for owners that stopped renewing. */
export class LeaseWatch {
  readonly #now: () => number;
  readonly #seen = new Map<string, { readonly seenAt: number; readonly since: number }>();

  /** `now` is a monotonic clock (ms), injectable for tests. */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** This worker's own renewal failed: nothing can be judged from what was seen. */
  renewalFailed(): void {
    this.#seen.clear();
  }

  /**
   * Given every lease now, the owners (other than `self`) whose lease has not
   * moved for the stale period (`quick(lease)`: the short one).
   */
  dead(
    leases: readonly OwnerLease[],
    self: string,
    periods: StalePeriods,
    quick: (l: OwnerLease) => boolean = () => false,
  ): string[] {
    const now = this.#now();
    const out: string[] = [];
    const present = new Set<string>();
    for (const l of leases) {
      if (l.owner === self) continue;
      present.add(l.owner);
      const prev = this.#seen.get(l.owner);
      if (!prev || prev.seenAt !== l.seenAt) {
        this.#seen.set(l.owner, { seenAt: l.seenAt, since: now });
        continue;
      }
      if (now - prev.since >= (quick(l) ? periods.quickMs : periods.staleMs)) out.push(l.owner);
    }
    for (const owner of this.#seen.keys()) if (!present.has(owner)) this.#seen.delete(owner);
    return out;
  }
}
