/** FIFO doorbells: never block on a missing peer, carry bytes, report a dead peer by EOF. */
import assert from "node:assert/strict";
import { ensureFifo, FifoPoller, FifoReader, FifoWriter, removeFifo } from "../mod/ipc/fifo.ts";
import { Doorbell } from "../mod/net/protocol.ts";
import { exists, waitFor } from "./harness.ts";

function tempFifo(): { dir: string; path: string } {
  const dir = Deno.makeTempDirSync({ prefix: "osps-fifo-" });
  const path = `${dir}/tube`;
  ensureFifo(path);
  return { dir, path };
}

interface Seen {
  bytes: number[];
  connects: number;
  closes: number;
}

/** A reader watched by a poller of its own, as a role does it. */
function watch(path: string): { seen: Seen; reader: FifoReader; poller: FifoPoller; stop(): Promise<void> } {
  const seen: Seen = { bytes: [], connects: 0, closes: 0 };
  const reader = new FifoReader(path, {
    onByte: (b) => seen.bytes.push(b),
    onConnect: () => seen.connects++,
    onClose: () => seen.closes++,
  });
  const poller = new FifoPoller();
  poller.add(reader);
  poller.start();
  return {
    seen,
    reader,
    poller,
    async stop() {
      poller.remove(reader);
      reader.close();
      await poller.stop();
    },
  };
}

Deno.test("ensureFifo makes a 0600 FIFO, accepts it again, and refuses a regular file", () => {
  const { dir, path } = tempFifo();
  try {
    const st = Deno.lstatSync(path);
    assert.equal(st.isFifo, true);
    assert.equal((st.mode ?? 0) & 0o777, 0o600);
    ensureFifo(path); // idempotent
    Deno.writeTextFileSync(`${dir}/plain`, "x");
    assert.throws(() => ensureFifo(`${dir}/plain`), /not a FIFO/);
    assert.equal(removeFifo(path), true);
    assert.equal(exists(path), false);
    assert.equal(removeFifo(path), false);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a writer with no reader does not block: tryConnect says no at once (ENXIO)", () => {
  const { dir, path } = tempFifo();
  try {
    const w = new FifoWriter(path);
    const t0 = performance.now();
    assert.equal(w.tryConnect(), false);
    assert.equal(w.connected, false);
    assert.ok(performance.now() - t0 < 1000, "must return, not wait for a reader");
    assert.equal(w.send(Doorbell.ASSIGN), false);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("bytes flow after hello; EOF after hello reports the peer gone; a new writer reconnects", async () => {
  const { dir, path } = tempFifo();
  const { seen, reader, stop } = watch(path);
  try {
    const w1 = new FifoWriter(path);
    await waitFor("reader to open", () => w1.tryConnect(), 5000);
    assert.equal(w1.send(Doorbell.ASSIGN), true);
    assert.equal(w1.send(Doorbell.DONE), true);
    await waitFor("two bytes", () => seen.bytes.length === 2, 5000);
    assert.deepEqual(seen.bytes, [Doorbell.ASSIGN, Doorbell.DONE]);
    assert.equal(seen.connects, 1);
    assert.equal(reader.connected, true);
    w1.close(); // the peer "dies"
    await waitFor("EOF seen as close", () => seen.closes === 1, 5000);
    assert.equal(reader.connected, false);
    const w2 = new FifoWriter(path); // a restarted peer
    await waitFor("the reopened read end", () => w2.tryConnect(), 5000);
    assert.equal(w2.send(Doorbell.PROBE), true);
    await waitFor("byte from the new writer", () => seen.bytes.length === 3, 5000);
    assert.equal(seen.connects, 2);
    // After the EOF the end was reopened: the poller must not spin on a stale hang-up.
    w2.close();
    await waitFor("second close", () => seen.closes === 2, 5000);
  } finally {
    await stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a drain from the event loop reads what is waiting without the poller, and never blocks", () => {
  const { dir, path } = tempFifo();
  const seen: number[] = [];
  const reader = new FifoReader(path, { onByte: (b) => seen.push(b), onConnect() {}, onClose() {} });
  try {
    reader.drain(); // no writer yet: nothing to read, nothing reported
    assert.equal(reader.connected, false);
    const w = new FifoWriter(path);
    assert.equal(w.tryConnect(), true);
    for (let i = 0; i < 100; i++) w.send(Doorbell.DONE);
    reader.drain();
    assert.equal(seen.length, 100);
    const t0 = performance.now();
    reader.drain(); // empty pipe, writer present: EAGAIN, returns at once
    assert.ok(performance.now() - t0 < 500);
    w.close();
  } finally {
    reader.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a writer whose reader closed gets false (EPIPE), never a crash", async () => {
  const { dir, path } = tempFifo();
  const { stop } = watch(path);
  try {
    const w = new FifoWriter(path);
    await waitFor("reader to open", () => w.tryConnect(), 5000);
    await stop();
    await waitFor("EPIPE reported as false", () => !w.send(Doorbell.ASSIGN), 5000);
    assert.equal(w.connected, false);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
