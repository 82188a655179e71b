/**
 * Coarse deadlines (mod/deadline.ts `Expiry`): re-armed, disarmed, released.
 * @module
 */
import assert from "node:assert/strict";
import { COARSE_MS, Expiry, sleep } from "../mod/deadline.ts";

Deno.test("an Expiry fires once after its time, not while disarmed, and re-arming moves it", async () => {
  let fired = 0;
  using e = new Expiry(() => fired++);
  e.arm(20);
  await sleep(20 + 3 * COARSE_MS);
  assert.equal(fired, 1);
  await sleep(3 * COARSE_MS);
  assert.equal(fired, 1, "fires once per arming");
  e.arm(20);
  e.disarm();
  await sleep(20 + 3 * COARSE_MS);
  assert.equal(fired, 1, "a disarmed Expiry does not fire");
  e.arm(60_000);
  e.arm(10);
  await sleep(10 + 3 * COARSE_MS);
  assert.equal(fired, 2, "the last arming counts");
});

Deno.test("a cancelled Expiry never fires", async () => {
  const e = new Expiry(() => assert.fail("cancelled, yet fired"));
  e.arm(10);
  e.cancel();
  await sleep(10 + 3 * COARSE_MS);
});
