/**
 * A Web Worker for shm_race_test.ts: maps the segment and, for each ticket it
 * is sent, waits at a shared barrier and then claims it through the real
 * worker side of the local link, racing another racer and the dispatcher.
 */
/// <reference lib="deno.worker" />
import { FifoPoller } from "../../mod/ipc/fifo.ts";
import { Segment } from "../../mod/ipc/shm.ts";
import { LocalDispatcherLink } from "../../mod/link/local_link.ts";
import { instancePaths } from "../../mod/cli/config.ts";
import { systemClock } from "../../mod/sys/clock.ts";

let link: LocalDispatcherLink | undefined;
let segment: Segment | undefined;

self.onmessage = (e: MessageEvent) => {
  const m = e.data as
    | { kind: "init"; shm: string; runDir: string; barrier: SharedArrayBuffer }
    | { kind: "claim"; ticket: string; round: number }
    | { kind: "stop" };
  if (m.kind === "init") {
    segment = Segment.open(m.shm);
    link = new LocalDispatcherLink(segment.slot(1), instancePaths(m.runDir), new FifoPoller(), systemClock);
    barrier = new Int32Array(m.barrier);
    self.postMessage({ kind: "ready" });
  } else if (m.kind === "claim") {
    // Spin until the round opens, so both racers (and the dispatcher) hit the slot together.
    while (Atomics.load(barrier!, 0) < m.round) Atomics.wait(barrier!, 0, m.round - 1, 50);
    const claim = link!.claim(m.ticket, "echo", "");
    const won = typeof claim !== "string";
    self.postMessage({ kind: "claimed", round: m.round, won, claim: won ? claim : undefined });
  } else {
    link?.close();
    segment?.close();
    self.close();
  }
};

let barrier: Int32Array | undefined;
