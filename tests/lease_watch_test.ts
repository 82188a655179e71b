/**
 * The lease judge of the chat workers (mod/chat/lease_watch.ts), on a clock
 * the test moves: which workers are dead when the store's clock, the hosts'
 * clocks and the store itself misbehave (issue 17's review: live workers'
 * users were reaped by leases compared with each host's `Date.now()`).
 * @module
 */
import assert from "node:assert/strict";
import { LeaseWatch } from "../mod/chat/lease_watch.ts";
import type { OwnerLease } from "../mod/chat/chat_store.ts";

const PERIODS = { staleMs: 10_000, quickMs: 2_000 };

/** A watcher on a clock the test moves, and the leases the store shows. */
function rig() {
  let now = 1_000;
  const watch = new LeaseWatch(() => now);
  const lease = (owner: string, seenAt: number, instance = "hostA:2222", slot = 1): OwnerLease => ({
    owner,
    instance,
    slot,
    seenAt,
  });
  return { watch, lease, advance: (ms: number) => void (now += ms) };
}

Deno.test("leases: a lease that keeps moving is alive whatever its value says (store clock skewed, or jumping back)", () => {
  const { watch, lease, advance } = rig();
  // The store's clock is a day behind, then jumps back an hour, then forward a year: only change counts.
  const values = [Date.now() - 86_400_000, Date.now() - 90_000_000, Date.now() + 31_536_000_000, 5, 6];
  for (const v of values) {
    assert.deepEqual(watch.dead([lease("self", 1), lease("b", v)], "self", PERIODS), []);
    advance(9_000);
  }
});

Deno.test("leases: a lease that stood still for the stale period is dead, not a moment before", () => {
  const { watch, lease, advance } = rig();
  const now = [lease("self", 1), lease("b", 42)];
  assert.deepEqual(watch.dead(now, "self", PERIODS), [], "first sight: nothing judged");
  advance(9_999);
  assert.deepEqual(watch.dead(now, "self", PERIODS), []);
  advance(1);
  assert.deepEqual(watch.dead(now, "self", PERIODS), ["b"]);
  // Its own lease is never judged, however still it stands.
  advance(60_000);
  assert.deepEqual(watch.dead(now, "self", PERIODS), ["b"]);
});

Deno.test("leases: a store outage longer than the stale period reaps nobody once the store is back", () => {
  const { watch, lease, advance } = rig();
  assert.deepEqual(watch.dead([lease("self", 1), lease("b", 1)], "self", PERIODS), []);
  // The store is down for 30 s: this worker's renewals fail (and so do everyone's).
  for (let i = 0; i < 15; i++) {
    advance(2_000);
    watch.renewalFailed();
  }
  // Back: every lease still shows its value from before the outage, as b has not renewed yet.
  assert.deepEqual(watch.dead([lease("self", 1), lease("b", 1)], "self", PERIODS), []);
  advance(5_000);
  assert.deepEqual(watch.dead([lease("self", 2), lease("b", 2)], "self", PERIODS), [], "b renewed: alive");
  // A worker that really died during the outage is judged a whole period after the store came back.
  advance(9_999);
  assert.deepEqual(watch.dead([lease("self", 3), lease("b", 2)], "self", PERIODS), []);
  advance(1);
  assert.deepEqual(watch.dead([lease("self", 3), lease("b", 2)], "self", PERIODS), ["b"]);
});

Deno.test("leases: owners are judged one by one, even two processes that give one host:port and slot", () => {
  const { watch, lease, advance } = rig();
  const show = (bSeen: number) => [
    lease("self", 1),
    lease("b", bSeen, "samehost:2222", 1),
    lease("c", 7, "samehost:2222", 1),
  ];
  watch.dead(show(1), "self", PERIODS);
  for (let i = 2; i <= 6; i++) {
    advance(2_500);
    const dead = watch.dead(show(i), "self", PERIODS);
    assert.deepEqual(dead, i >= 5 ? ["c"] : [], `after ${(i - 1) * 2.5} s`);
  }
});

Deno.test("leases: the short period for the owners it is asked for; an owner that left is forgotten", () => {
  const { watch, lease, advance } = rig();
  const quick = (l: OwnerLease) => l.owner === "pred";
  const all = [lease("self", 1), lease("pred", 1), lease("b", 1)];
  watch.dead(all, "self", PERIODS, quick);
  advance(2_000);
  assert.deepEqual(watch.dead(all, "self", PERIODS, quick), ["pred"]);
  // b leaves the store (reaped elsewhere), then comes back with the same still value: seen anew.
  watch.dead([lease("self", 1)], "self", PERIODS, quick);
  advance(9_000);
  assert.deepEqual(watch.dead([lease("self", 1), lease("b", 1)], "self", PERIODS, quick), []);
  advance(9_999);
  assert.deepEqual(watch.dead([lease("self", 1), lease("b", 1)], "self", PERIODS, quick), []);
});
