/**
 * The link port's door: how many peers may be in the handshake at once.
 *
 * A peer that has not authenticated yet costs a connection, a timer and a
 * little memory, and a stranger can open as many as it likes without knowing
 * the secret. So the door holds at most `maxPendingPerAddr` attempts from one
 * address (as `addrKey` groups them: loopback is one address, an IPv6 client
 * its /64) and `maxPending` in all, and at either cap the newcomer takes the
 * place of the oldest attempt (of its own address at the per-address cap; of
 * the address that holds the most at the overall one), as nginx and HAProxy
 * drop idle keep-alives rather than refuse a new client. A worker's handshake
 * takes one round trip, a stranger's silent connection waits for its time
 * limit: the oldest attempt is the stranger's, and a joiner gets in however
 * many connections a stranger opens from other addresses. A stranger on the
 * joiner's own address must open `maxPendingPerAddr` connections within the
 * joiner's round trip to push it out.
 * @module
 */

/** Caps of the door. */
export interface DoorLimits {
  /** Attempts in the handshake at once, in all. */
  readonly maxPending: number;
  /** Attempts in the handshake at once from one address. */
  readonly maxPendingPerAddr: number;
}

/** The caps the link server uses unless told otherwise. */
export const DOOR_LIMITS: DoorLimits = { maxPending: 64, maxPendingPerAddr: 8 };

interface Attempt {
  readonly addr: string;
  readonly seq: number;
  readonly evict: () => void;
}

/** Attempts in the handshake, by address, oldest first. */
export class LinkDoor {
  readonly #limits: DoorLimits;
  readonly #byAddr = new Map<string, Attempt[]>();
  #count = 0;
  #seq = 0;

  constructor(limits: DoorLimits = DOOR_LIMITS) {
    this.#limits = limits;
  }

  /** Attempts in the handshake now. */
  get pending(): number {
    return this.#count;
  }

  /**
   * Lets an attempt from `addr` in, making room first: `evict` is called on
   * the attempt it replaces (which must then end). Returns the function that
   * takes the attempt out again once its handshake ended (idempotent).
   */
  enter(addr: string, evict: () => void): () => void {
    const own = this.#byAddr.get(addr);
    if (own && own.length >= this.#limits.maxPendingPerAddr) this.#evict(own[0]!);
    else if (this.#count >= this.#limits.maxPending) this.#evict(this.#oldestOfLargest());
    const attempt: Attempt = { addr, seq: this.#seq++, evict };
    const list = this.#byAddr.get(addr) ?? [];
    list.push(attempt);
    this.#byAddr.set(addr, list);
    this.#count++;
    return () => this.#remove(attempt);
  }

  /** The oldest attempt of the address holding the most (the oldest such when several hold as many). */
  #oldestOfLargest(): Attempt {
    let pick: Attempt[] | undefined;
    for (const list of this.#byAddr.values()) {
      if (
        !pick || list.length > pick.length || (list.length === pick.length && list[0]!.seq < pick[0]!.seq)
      ) {
        pick = list;
      }
    }
    return pick![0]!;
  }

  #evict(a: Attempt): void {
    this.#remove(a);
    a.evict();
  }

  #remove(a: Attempt): void {
    const list = this.#byAddr.get(a.addr);
    const i = list?.indexOf(a) ?? -1;
    if (i < 0) return;
    list!.splice(i, 1);
    if (list!.length === 0) this.#byAddr.delete(a.addr);
    this.#count--;
  }
}
