/**
 * The compare-and-swap protocol of the work word under real concurrency: two
 * threads claim every ticket at once through the worker side of the link,
 * while the dispatcher side sometimes takes the same ticket back at that very
 * moment. A ticket is used at most once, and never after it was taken back.
 */
import assert from "node:assert/strict";
import { instancePaths } from "../mod/cli/config.ts";
import { ensureFifo, FifoPoller } from "../mod/ipc/fifo.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { requestsInProgress } from "../mod/link/ticket_reports.ts";
import type { Claim } from "../mod/link/worker_link.ts";
import { LocalDispatcherLink, LocalWorkerLink } from "../mod/link/local_link.ts";
import { newTicket } from "../mod/link/tickets.ts";
import { systemClock } from "../mod/sys/clock.ts";
import { pollFast, waitFor } from "./harness.ts";

Deno.test("two racing claimers and a racing reclaim: each ticket is used at most once, never after it was taken back", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-race-" });
  const paths = instancePaths(dir);
  ensureFifo(paths.dwtube(1));
  ensureFifo(paths.wdtube(1));
  const segment = Segment.create(paths.shm, 2, 1);
  segment.slot(1).store("pid", Deno.pid);
  const poller = new FifoPoller();
  const link = new LocalWorkerLink(segment.slot(1), paths, "127.0.0.1", poller, systemClock);
  const side = new LocalDispatcherLink(segment.slot(1), paths, poller, systemClock);
  const barrier = new SharedArrayBuffer(4);
  const racers = [0, 1].map(() =>
    new Worker(new URL("./support/claim_racer.ts", import.meta.url), { type: "module" })
  );
  try {
    link.start({ onReady() {}, onDone() {}, onClosed() {}, onLost() {}, onProbe() {} });
    side.start({ onAssigned() {}, onConnected() {}, onDisconnected() {} });
    poller.start();
    side.ready();
    await waitFor("the link", () => link.available(), 5_000);
    const inbox: Array<{ kind: string; round?: number; won?: boolean; claim?: Claim }> = [];
    for (const r of racers) r.onmessage = (e) => inbox.push(e.data);
    for (const r of racers) r.postMessage({ kind: "init", shm: paths.shm, runDir: dir, barrier });
    await waitFor("racers ready", () => inbox.filter((m) => m.kind === "ready").length === 2, 60_000);
    const rounds = 400;
    let taken = 0, reclaimedWins = 0, racerWins = 0;
    for (let round = 1; round <= rounds; round++) {
      await pollFast("the worker free", () => link.available(), 5_000, 0);
      const ticket = newTicket();
      assert.ok(
        link.assign({
          ticket,
          type: "echo",
          clientAddr: "x:1",
          owner: "x",
          expiresAt: systemClock.now() + 60_000,
        }),
      );
      for (const r of racers) r.postMessage({ kind: "claim", ticket, round });
      Atomics.store(new Int32Array(barrier), 0, round);
      Atomics.notify(new Int32Array(barrier), 0);
      // Every third round the dispatcher takes the ticket back at the same moment (the client "left").
      const reclaimed = round % 3 === 0 && link.reclaim(ticket);
      await pollFast("both answers", () => inbox.filter((m) => m.round === round).length === 2, 10_000, 0);
      const wins = inbox.filter((m) => m.round === round && m.won).length;
      assert.ok(wins <= 1, `round ${round}: ${wins} claimers won one ticket`);
      assert.ok(!(reclaimed && wins > 0), `round ${round}: a ticket was used after it was taken back`);
      if (reclaimed) reclaimedWins++;
      if (wins === 1) {
        racerWins++;
        assert.equal(requestsInProgress(segment.slot(1)).length, 1, "the winner's request runs");
        side.done(inbox.find((m) => m.round === round && m.won)!.claim!);
      }
      if (wins === 1 || reclaimed) taken++;
    }
    assert.equal(taken, rounds, "every ticket was either used once or taken back");
    assert.ok(
      racerWins > 0 && reclaimedWins > 0,
      `both sides won some races (${racerWins}/${reclaimedWins})`,
    );
    console.log(`${rounds} rounds: claimed ${racerWins}, taken back first ${reclaimedWins}`);
  } finally {
    for (const r of racers) r.postMessage({ kind: "stop" });
    await new Promise((r) => setTimeout(r, 50));
    for (const r of racers) r.terminate();
    link.close();
    side.close();
    await poller.stop();
    segment.close();
    Segment.unlink(paths.shm);
    Deno.removeSync(dir, { recursive: true });
  }
});
