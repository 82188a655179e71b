/**
 * Flood control the way ergo and ngircd do it ("fakelag"): a client may
 * send a burst of lines at once, then one line per 1/rate seconds. A line
 * over that rate is not refused; it is processed later, and the client's
 * next lines wait behind it, so a flooder slows only itself (its socket
 * stops being read and TCP pushes back) while everyone else is served.
 * @module
 */

/** A token bucket that answers "how long must this line wait". */
export class FakeLag {
  readonly #burst: number;
  readonly #rate: number;
  readonly #now: () => number;
  #tokens: number;
  #at: number;

  /** `burst` lines at once, then `ratePerSec` per second; a rate of 0 turns it off. */
  constructor(burst: number, ratePerSec: number, now: () => number = () => performance.now()) {
    this.#burst = burst;
    this.#rate = ratePerSec;
    this.#now = now;
    this.#tokens = burst;
    this.#at = now();
  }

  /** Takes one line's token; returns the ms it must wait before it is processed (0: at once). */
  take(): number {
    if (this.#rate <= 0) return 0;
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + (now - this.#at) * this.#rate / 1000);
    this.#at = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil(-this.#tokens * 1000 / this.#rate);
  }
}
