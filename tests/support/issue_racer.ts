/**
 * A Web Worker for slot_tickets_test.ts: the dispatcher side of the ticket
 * protocol on another thread. Each round (shared[0] = round) it issues tickets
 * into slot 1 and takes them back as fast as it can (or, with `keep`, keeps
 * what it issued), until shared[0] = -round; then it publishes what it still
 * holds (entry e held: shared[2 + 3e] = 1) and sets shared[1] = -1.
 * shared[1] counts its issues meanwhile.
 */
/// <reference lib="deno.worker" />
import { Segment } from "../../mod/ipc/shm.ts";
import { type Issue, SlotTickets } from "../../mod/link/slot_tickets.ts";
import { newTicket } from "../../mod/link/tickets.ts";
import { systemClock } from "../../mod/sys/clock.ts";

self.onmessage = (e: MessageEvent) => {
  const { shm, shared: buffer, keep = false } = e.data as {
    shm: string;
    shared: SharedArrayBuffer;
    keep?: boolean;
  };
  const segment = Segment.open(shm);
  const tickets = new SlotTickets(segment.slot(1), systemClock);
  const shared = new Int32Array(buffer);
  self.postMessage("ready");
  for (let round = 1;; round++) {
    // Wait for the round to open (or to have closed already: it may be over before this thread looks).
    while (Math.abs(Atomics.load(shared, 0)) !== round) Atomics.wait(shared, 0, Atomics.load(shared, 0), 50);
    const held: (Issue | undefined)[] = [];
    let k = 0;
    while (Atomics.load(shared, 0) === round) {
      const issued = tickets.issue({
        ticket: newTicket(),
        type: "echo",
        clientAddr: "x:1",
        expiresAt: systemClock.now() + 60_000,
      });
      if (issued) {
        held[issued.entry] = issued;
        Atomics.add(shared, 1, 1);
        if (!keep && k++ % 2 === 0 && tickets.takeBack(issued)) held[issued.entry] = undefined;
      } else if (!keep) {
        // Full, or the door closed: take one back to make room (the client "left").
        for (const [i, h] of held.entries()) {
          if (h && tickets.takeBack(h)) {
            held[i] = undefined;
            break;
          }
        }
      }
    }
    for (let i = 0; i < segment.slot(1).tickets.length; i++) {
      Atomics.store(shared, 2 + i * 3, held[i] ? 1 : 0);
    }
    Atomics.store(shared, 1, -1);
  }
};
