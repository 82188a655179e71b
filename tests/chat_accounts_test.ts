/**
 * Accounts on their own: password hashing (memory-hard, off the event loop,
 * bounded), the per-address attempt limit, and the account and list stores
 * on SQLite (PostgreSQL: chat_postgres_test.ts runs the same checks).
 */
import assert from "node:assert/strict";
import { SqliteStore } from "../mod/chat/sqlite_store.ts";
import { checkPassword, HashBusyError, HashGate, hashPassword, scramVerifier } from "../mod/chat/password.ts";
import { AttemptLimiter } from "../mod/chat/accounts.ts";
import { checkAccounts, checkLists } from "./support/account_checks.ts";

function tempStore(): { store: SqliteStore; [Symbol.dispose](): void } {
  const dir = Deno.makeTempDirSync({ prefix: "osps-accounts-" });
  const store = SqliteStore.open(`${dir}/chat.sqlite`);
  return {
    store,
    [Symbol.dispose]: () => {
      void store.close();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

Deno.test("hashPassword: scrypt, salted, checked in constant time; the event loop keeps running meanwhile", async () => {
  const t0 = performance.now();
  const a = await hashPassword("correct horse");
  const cost = performance.now() - t0;
  console.log(`scrypt ln=15 r=8 p=1: ${cost.toFixed(0)} ms`);
  const b = await hashPassword("correct horse");
  assert.notEqual(a, b, "salted");
  assert.equal(await checkPassword("correct horse", a), true);
  assert.equal(await checkPassword("correct horsE", a), false);
  assert.equal(await checkPassword("correct horse", "$scrypt$garbage"), false);
  // A timer set while a hash runs fires before the hash is done: the hash is on another thread.
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const during = hashPassword("x".repeat(300)).then(() => ticks);
  const seen = await during;
  clearInterval(timer);
  assert.ok(seen >= 3, `the event loop ran ${seen} timers during a hash`);
  const v = await scramVerifier("pencil", 4096);
  assert.equal(v.iterations, 4096);
});

Deno.test("HashGate: at most `concurrency` run, at most `queue` wait; the rest are refused at once", async () => {
  const gate = new HashGate(1, 2);
  const release: Array<() => void> = [];
  const job = () => new Promise<void>((r) => release.push(r));
  const running = [gate.run(job), gate.run(job), gate.run(job)];
  await assert.rejects(gate.run(job), HashBusyError);
  assert.equal(gate.load, 3);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(release.length, 1, "one runs");
  while (release.length > 0) {
    release.shift()!();
    await new Promise((r) => setTimeout(r, 0));
  }
  await Promise.all(running);
  assert.equal(gate.load, 0);
});

Deno.test("AttemptLimiter: a burst per address, then the rate; loopback aliases are one address", () => {
  let now = 0;
  const limit = new AttemptLimiter(3, 6, () => now); // 3 at once, then one per 10 s
  assert.deepEqual([limit.take("127.0.0.1"), limit.take("127.0.0.2"), limit.take("::1")], [true, true, true]);
  assert.equal(limit.take("127.0.0.1"), false);
  assert.equal(limit.take("192.0.2.7"), true, "another address has its own");
  now += 10_000;
  assert.equal(limit.take("127.0.0.1"), true);
  assert.equal(limit.take("127.0.0.1"), false);
  assert.equal(new AttemptLimiter(1, 0).take("x") && new AttemptLimiter(1, 0).take("x"), true, "0: no limit");
});

Deno.test("SQLite: accounts, tokens, registered channels and access lists", async () => {
  using t = tempStore();
  await checkAccounts(t.store);
});

Deno.test("SQLite: bans, invitations, WHOWAS and counts", async () => {
  using t = tempStore();
  await checkLists(t.store);
});
