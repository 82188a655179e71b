/**
 * Chaos: 16 clients request continuously for ~10 s while a random worker is
 * SIGKILLed every 300 ms. Every request either succeeds, or fails with a
 * clear error and then succeeds on a retry; afterwards `osps stop` leaves
 * nothing behind.
 */
import assert from "node:assert/strict";
import { mapTable, withInstance, zombiesOf } from "./harness.ts";
import { Session } from "../mod/client/session.ts";
import { ServiceError } from "../mod/errors.ts";

const CLIENTS = 16;
const RUN_MS = 10_000;
const KILL_EVERY_MS = 300;
const ATTEMPTS = 3;
/** The errors a client may see when its worker is killed under it; anything else fails the test. */
const CLEAR_ERROR = new RegExp(
  "^(" + [
    // The dispatcher knew: the worker died under the request, and why.
    String
      .raw`worker \d+ ended while running "(echo [\d-]+|sleep 20)" \(signal 9\); not retried \(it may have partly run\)`,
    // It died holding the ticket, before the request reached it.
    String.raw`worker \d+ ended before your request reached it \(signal 9\); nothing ran; retry`,
    // It could not tell (the worker was replaced before the dispatcher heard of it).
    String
      .raw`worker at [\d.]+:\d+ closed the connection before answering \(it was stopped or restarted\); retry`,
    String.raw`cannot reach worker at [\d.]+:\d+: .+`,
  ].join("|") + ")$",
);

interface Tally {
  ok: number;
  retried: number;
  errors: Map<string, number>;
}

async function client(port: number, id: number, until: number, tally: Tally): Promise<void> {
  const session = await Session.open("127.0.0.1", port, { timeoutMs: 20_000 });
  try {
    for (let n = 0; Date.now() < until; n++) {
      const [type, arg, want] = n % 4 === 3
        ? ["sleep", "20", "slept 20"]
        : ["echo", `${id}-${n}`, `${id}-${n}`];
      for (let attempt = 1;; attempt++) {
        try {
          const a = await session.request(type, arg);
          assert.equal(a.text, want);
          tally.ok++;
          if (attempt > 1) tally.retried++;
          break;
        } catch (err) {
          assert.ok(err instanceof ServiceError, `unexpected ${err}`);
          assert.match(err.message, CLEAR_ERROR);
          const kind = err.message.replace(/\d+/g, "N");
          tally.errors.set(kind, (tally.errors.get(kind) ?? 0) + 1);
          assert.ok(attempt < ATTEMPTS, `request still failing after ${ATTEMPTS} attempts: ${err.message}`);
        }
      }
    }
  } finally {
    await session.close();
  }
}

Deno.test("chaos: 16 clients while a random worker is SIGKILLed every 300 ms; stop leaves nothing", async () => {
  await withInstance({
    workers: 4,
    flags: [
      "--restart-budget=1000",
      "--pool-restart-budget=1000",
      "--heartbeat-ms=100",
      "--hang-timeout-ms=2000",
    ],
  }, async (inst) => {
    const table = mapTable(inst);
    const tally: Tally = { ok: 0, retried: 0, errors: new Map() };
    let kills = 0;
    const killer = setInterval(() => {
      const live = Array.from({ length: 4 }, (_, i) => table.slot(i + 1).load("pid")).filter((p) => p > 0);
      const pid = live[Math.floor(Math.random() * live.length)];
      if (pid === undefined) return;
      try {
        Deno.kill(pid, "SIGKILL");
        kills++;
      } catch { /* exited meanwhile */ }
    }, KILL_EVERY_MS);
    try {
      const until = Date.now() + RUN_MS;
      await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(inst.port, i, until, tally)));
      clearInterval(killer);
      const errors = [...tally.errors].map(([k, v]) => `${v}× ${k}`).join("; ") || "none";
      console.log(
        `chaos: ${tally.ok} requests served, ${kills} kills, ${tally.retried} needed a retry; errors: ${errors}`,
      );
      assert.ok(kills >= 20, `only ${kills} kills`);
      assert.ok(tally.ok >= 100, `only ${tally.ok} requests`);
      assert.deepEqual(zombiesOf(inst.pid), []);
      const s = await inst.status();
      assert.ok(s.workers.reduce((n, w) => n + w.restarts, 0) >= kills - 4);
      assert.equal(s.dispatcher.restarts, 0, "worker deaths never restart the dispatcher");
    } finally {
      clearInterval(killer);
      table.close();
    }
  });
});
