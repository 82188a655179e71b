/**
 * FIFOs between the dispatcher and a worker: never block on a missing peer,
 * carry frames, report a dead peer by EOF, drop damaged frames and nothing
 * else, and resynchronise when either end is replaced in the middle of a
 * message (the stray bytes a 10,000-client chat load once left in a pipe
 * wedged a worker slot for good).
 */
import assert from "node:assert/strict";
import { ensureFifo, FifoPoller, FifoReader, FifoWriter, removeFifo } from "../mod/ipc/fifo.ts";
import { encodeFrame, FifoFrame, FrameDecoder, MAX_ENCODED } from "../mod/ipc/fifo_frames.ts";
import { MAX_LINK_MESSAGE } from "../mod/net/protocol.ts";
import { exists, waitFor, waitForLog, waitReplaced, withInstance } from "./harness.ts";
import { clientsOnEveryWorker, slotOf, withChat } from "./support/chat_instance.ts";
import { instancePaths } from "../mod/cli/config.ts";
import { Segment } from "../mod/ipc/shm.ts";
import * as libc from "../mod/sys/libc.ts";

function tempFifo(): { dir: string; path: string } {
  const dir = Deno.makeTempDirSync({ prefix: "osps-fifo-" });
  const path = `${dir}/tube`;
  ensureFifo(path);
  return { dir, path };
}

interface Seen {
  frames: number[];
  eofs: number;
}

/** A reader watched by a poller of its own, as a role does it. */
function watch(path: string): { seen: Seen; reader: FifoReader; poller: FifoPoller; stop(): Promise<void> } {
  const seen: Seen = { frames: [], eofs: 0 };
  const reader = new FifoReader(path, {
    onFrame: (type) => seen.frames.push(type),
    onEof: () => seen.eofs++,
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
    assert.equal(w.sendFrame(FifoFrame.DONE), false);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("frames flow; EOF after them reports the writer gone; a new writer is read from a clean start", async () => {
  const { dir, path } = tempFifo();
  const { seen, stop } = watch(path);
  try {
    const w1 = new FifoWriter(path);
    await waitFor("reader to open", () => w1.tryConnect(), 5000);
    assert.equal(w1.sendFrame(FifoFrame.PROBE), true);
    assert.equal(w1.sendFrame(FifoFrame.DONE), true);
    await waitFor("two frames", () => seen.frames.length === 2, 5000);
    assert.deepEqual(seen.frames, [FifoFrame.PROBE, FifoFrame.DONE]);
    w1.close(); // the peer "dies"
    await waitFor("EOF seen", () => seen.eofs === 1, 5000);
    const w2 = new FifoWriter(path); // a restarted peer
    await waitFor("the reopened read end", () => w2.tryConnect(), 5000);
    assert.equal(w2.sendFrame(FifoFrame.ECHO), true);
    await waitFor("a frame from the new writer", () => seen.frames.length === 3, 5000);
    // After the EOF the end was reopened: the poller must not spin on a stale hang-up.
    w2.close();
    await waitFor("second EOF", () => seen.eofs === 2, 5000);
  } finally {
    await stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a drain from the event loop reads what is waiting without the poller, and never blocks", () => {
  const { dir, path } = tempFifo();
  const seen: number[] = [];
  const reader = new FifoReader(path, { onFrame: (t) => seen.push(t), onEof() {} });
  try {
    reader.drain(); // no writer yet: nothing to read, nothing reported
    const w = new FifoWriter(path);
    assert.equal(w.tryConnect(), true);
    for (let i = 0; i < 100; i++) w.sendFrame(FifoFrame.DONE);
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
    let gone = 0;
    w.onGone = () => gone++;
    await waitFor("reader to open", () => w.tryConnect(), 5000);
    await stop();
    await waitFor("EPIPE reported as false", () => !w.sendFrame(FifoFrame.DONE), 5000);
    assert.equal(w.connected, false);
    assert.equal(gone, 1);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** Feeds `bytes` to a fresh decoder one way or in pieces; returns what it delivered and dropped. */
function decode(bytes: Uint8Array, pieces = 1): { frames: Array<[number, Uint8Array]>; dropped: string[] } {
  const d = new FrameDecoder();
  const frames: Array<[number, Uint8Array]> = [];
  const dropped: string[] = [];
  const step = Math.ceil(bytes.length / pieces);
  for (let i = 0; i < bytes.length; i += step) {
    d.push(bytes.subarray(i, i + step), (t, p) => frames.push([t, p.slice()]), (why) => dropped.push(why));
  }
  assert.equal(d.dropped, dropped.length);
  return { frames, dropped };
}

const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
};

Deno.test("frames carry any bytes: zeros, runs of 254 and 255, the largest message, split anywhere", () => {
  const payloads = [
    new Uint8Array(0),
    Uint8Array.of(0),
    new Uint8Array(253).fill(7),
    new Uint8Array(254).fill(7),
    new Uint8Array(255).fill(7),
    cat(new Uint8Array(254).fill(1), Uint8Array.of(0), new Uint8Array(254).fill(2), Uint8Array.of(0, 0)),
    crypto.getRandomValues(new Uint8Array(MAX_LINK_MESSAGE)),
    new Uint8Array(MAX_LINK_MESSAGE),
  ];
  const stream = cat(...payloads.map((p) => encodeFrame(FifoFrame.MESSAGE, p)));
  for (const pieces of [1, 7, 1000]) {
    const { frames, dropped } = decode(stream, pieces);
    assert.deepEqual(dropped, []);
    assert.deepEqual(frames.map(([, p]) => p), payloads);
  }
  for (const f of payloads.map((p) => encodeFrame(FifoFrame.MESSAGE, p))) {
    assert.ok(f.length <= MAX_ENCODED + 2);
    assert.equal(f.subarray(1, -1).indexOf(0), -1, "no zero inside a frame");
  }
});

Deno.test("a damaged frame costs only itself: impossible lengths, cut frames, stray bytes, unknown types", () => {
  const ok = encodeFrame(FifoFrame.MESSAGE, new TextEncoder().encode("hello"));
  const ring = encodeFrame(FifoFrame.DONE);
  // What the old format read as "m" and a length of 1,835,560,296 bytes: chat text, stray in a pipe.
  const stray = new TextEncoder().encode('hm{"hmhm":"hm"}\xff\xff\xff\x7f');
  const big = encodeFrame(FifoFrame.MESSAGE, new Uint8Array(3000).fill(9));
  const lying = encodeFrame(FifoFrame.MESSAGE, Uint8Array.of(1, 2, 3));
  lying[3] = 0x7f; // the length field (stuffed, no zero in it) now says far more than the frame holds
  const unknown = encodeFrame(0x7a);
  const endless = new Uint8Array(MAX_ENCODED + 10).fill(0x41); // no zero for longer than any frame
  const stream = cat(
    stray,
    ok,
    big.subarray(0, 1500), // a writer killed in the middle of this one
    ring,
    lying,
    ok,
    unknown,
    endless,
    Uint8Array.of(0),
    ring,
    big.subarray(700), // a reader that starts in the middle of this one
    ok,
  );
  for (const pieces of [1, 13, 4000]) {
    const { frames, dropped } = decode(stream, pieces);
    assert.deepEqual(frames.map(([t]) => t), [
      FifoFrame.MESSAGE,
      FifoFrame.DONE,
      FifoFrame.MESSAGE,
      FifoFrame.DONE,
      FifoFrame.MESSAGE,
    ]);
    assert.ok(frames.every(([t, p]) => t !== FifoFrame.MESSAGE || new TextDecoder().decode(p) === "hello"));
    assert.equal(dropped.length, 6, dropped.join("; "));
  }
});

/** One end of slot 1's link in a process of its own (tests/support/fifo_end.ts), driven line by line. */
class End {
  readonly process: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly #orders: WritableStreamDefaultWriter<Uint8Array>;

  constructor(role: "dispatcher" | "worker", shm: string, runDir: string) {
    const process = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--allow-ffi", END, role, shm, runDir],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.process = process;
    this.#orders = process.stdin.getWriter();
    void (async () => {
      let rest = "";
      for await (const chunk of process.stdout.pipeThrough(new TextDecoderStream())) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        this.lines.push(...parts);
      }
    })();
  }

  get pid(): number {
    return this.process.pid;
  }

  /** Waits for a line matching `re` after the first `from` lines; returns its index. */
  async saw(re: RegExp, from = 0, timeoutMs = 10_000): Promise<number> {
    return await waitFor(`${re} from ${this.pid} (saw ${JSON.stringify(this.lines)})`, () => {
      const i = this.lines.findIndex((l, j) => j >= from && re.test(l));
      return i >= 0 ? i + 1 : null;
    }, timeoutMs) - 1;
  }

  async order(line: string): Promise<void> {
    await this.#orders.write(new TextEncoder().encode(line + "\n"));
  }

  signal(sig: Deno.Signal): void {
    this.process.kill(sig);
  }

  async kill(): Promise<void> {
    try {
      this.process.kill("SIGKILL");
    } catch { /* gone */ }
    await this.process.status;
    await this.#orders.close().catch(() => {});
  }
}

const END = new URL("./support/fifo_end.ts", import.meta.url).pathname;

/** A run dir with slot 1's FIFO pair and a segment, as the watchdog makes them. */
function instanceDir() {
  const dir = Deno.makeTempDirSync({ prefix: "osps-fifo-ends-" });
  const paths = instancePaths(dir);
  ensureFifo(paths.dwtube(1));
  ensureFifo(paths.wdtube(1));
  const segment = Segment.create(paths.shm, 2, 1);
  return {
    paths,
    segment,
    /** Starts an end; a worker's pid goes into the slot, as the watchdog writes it. */
    start(role: "dispatcher" | "worker"): End {
      const end = new End(role, paths.shm, dir);
      if (role === "worker") segment.slot(1).store("pid", end.pid);
      return end;
    },
    dispose() {
      segment.close();
      Segment.unlink(paths.shm);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** Both ends serve each other: a probe comes back, and a message goes each way whole. */
async function assertServing(d: End, w: End): Promise<void> {
  const [dn, wn] = [d.lines.length, w.lines.length];
  await d.order("probe");
  await d.saw(/^echo$/, dn);
  await d.order("send 3000");
  await w.saw(/^message 3000 ok$/, wn);
  await w.order("send 5000");
  await d.saw(/^message 5000 ok$/, dn);
  for (const end of [d, w]) {
    assert.deepEqual(
      end.lines.filter((l) => /^(error|message .* bad)/.test(l)),
      [],
      `${end.pid}: nothing lost`,
    );
  }
}

/**
 * The faults of a 10,000-client chat load, played exactly: an end is killed
 * (SIGKILL) while the pipe holds part of a message, and its replacement opens
 * the FIFOs before the surviving end (stopped, as a busy process would be)
 * has read the EOF. The survivor and the replacement must find each other and
 * serve; nothing of the dead end's bytes may be read as theirs.
 */
async function killMidMessage(
  scenario:
    | "worker dies, its message half sent"
    | "worker dies, a message to it half read"
    | "dispatcher dies, a message to the worker half read"
    | "dispatcher dies, the worker's message half read",
): Promise<void> {
  const inst = instanceDir();
  const ends: End[] = [];
  const start = (role: "dispatcher" | "worker") => {
    const e = inst.start(role);
    ends.push(e);
    return e;
  };
  try {
    let d = start("dispatcher");
    let w = start("worker");
    await d.saw(/^linked$/);
    await w.saw(/^linked$/);
    // Who fills the pipe (the other end is stopped, so nothing drains it), and who dies.
    const workerDies = scenario.startsWith("worker");
    const writerIsWorker = scenario === "worker dies, its message half sent" ||
      scenario === "dispatcher dies, the worker's message half read";
    const [writer, reader] = writerIsWorker ? [w, d] : [d, w];
    reader.signal("SIGSTOP");
    await writer.order("flood 6 40000"); // 64 KiB of pipe: one message and a part of the next
    await writer.saw(/^flooded [1-9]/);
    await new Promise((r) => setTimeout(r, 100));
    if (workerDies) {
      // The dispatcher is busy (stopped) while its worker dies and the replacement opens the pipes.
      if (reader === w) d.signal("SIGSTOP");
      await w.kill();
      w = start("worker");
      await w.saw(/^started$/);
      await new Promise((r) => setTimeout(r, 300)); // the replacement reads what it finds
      d.signal("SIGCONT");
    } else {
      // The worker is stopped (busy) while its dispatcher dies and the next one opens the pipes.
      if (reader === d) w.signal("SIGSTOP");
      await d.kill();
      d = start("dispatcher");
      await d.saw(/^started$/);
      await new Promise((r) => setTimeout(r, 300));
      w.signal("SIGCONT");
    }
    await d.saw(/^linked$/);
    await w.saw(/^linked$/);
    await assertServing(d, w);
  } finally {
    for (const e of ends) await e.kill();
    inst.dispose();
  }
}

for (
  const scenario of [
    "worker dies, its message half sent",
    "worker dies, a message to it half read",
    "dispatcher dies, a message to the worker half read",
    "dispatcher dies, the worker's message half read",
  ] as const
) {
  Deno.test(`kill -9 mid-message (${scenario}): the survivor and the replacement resynchronise and serve`, () =>
    killMidMessage(scenario));
}

Deno.test("bytes written into a live instance's FIFOs by a stray writer cost nothing: no wedge, no restart", async () => {
  await withInstance({
    workers: 2,
    flags: ["--heartbeat-ms=100", "--hang-timeout-ms=1000", "--probe-ms=100"],
  }, async (inst) => {
    const before = await inst.status();
    const paths = instancePaths(inst.runDir);
    // What the old format read as "m" and a length of ~2 GiB, then a doorbell byte, a zero and chat text.
    const junk = new TextEncoder().encode('hm\xff\xff\xff\x7fd\0k{"h":"mhm"}');
    for (const path of [paths.wdtube(1), paths.dwtube(1), paths.wdtube(2)]) {
      const fd = libc.tryOpen(path, libc.O.WRONLY | libc.O.NONBLOCK);
      assert.ok(fd >= 0, `opened ${path}`);
      for (let i = 0; i < 50; i++) libc.write(fd, junk as Uint8Array<ArrayBuffer>);
      libc.close(fd);
    }
    // Probes run every 100 ms; one unanswered for a second would mark the pipes wedged.
    await new Promise((r) => setTimeout(r, 2_000));
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => inst.client(["echo", `${i}`])));
    for (const [i, r] of rs.entries()) assert.equal(r.stdout, `${i}\n`, r.stderr);
    const after = await inst.status();
    assert.deepEqual(after.workers.map((w) => w.pid), before.workers.map((w) => w.pid), "no worker replaced");
    assert.equal(after.dispatcher.pid, before.dispatcher.pid);
    assert.ok(after.workers.every((w) => w.served > 0), "both workers still routed to");
    assert.doesNotMatch(inst.logs(), /wedged|failed:/);
    await waitForLog(inst, /worker 1: dropped \d+ damaged frame/); // said once, not once per frame
  });
});

Deno.test("chat: a worker killed while its busy dispatcher holds a pipe of chat events for it: the replacement serves, nothing wedges", async () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await withChat({
    workers: 2,
    flags: ["--irc-flood-rate=0", "--heartbeat-ms=100", "--hang-timeout-ms=4000", "--probe-ms=100"],
  }, async (inst, place) => {
    const [one, two] = await clientsOnEveryWorker(place.ircPort, "fill");
    assert.deepEqual([slotOf(one!.owner), slotOf(two!.owner)], [1, 2]);
    for (const c of [one!, two!]) await c.client.join("#load");
    const before = await inst.status();
    const victim = before.workers[0]!.pid;
    // Worker 1 stops reading (stopped), while worker 2's client talks: the dispatcher fills dwtube1 with its
    // events, the last one half written. Then, while the dispatcher is busy (stopped), worker 1 dies and its
    // replacement opens the FIFOs and finds that.
    Deno.kill(victim, "SIGSTOP");
    const text = "hm".repeat(180);
    for (let i = 0; i < 400; i++) two!.client.raw(`PRIVMSG #load :${i} ${text}`);
    await sleep(1_500);
    Deno.kill(before.dispatcher.pid, "SIGSTOP");
    Deno.kill(victim, "SIGKILL");
    const replaced = await waitReplaced(inst, 1, victim);
    await sleep(300);
    Deno.kill(before.dispatcher.pid, "SIGCONT");
    await sleep(100 + 4_000 + 1_500); // a probe, its timeout, and a margin: a wedge would show by now
    const after = await inst.status();
    assert.equal(after.workers[0]!.pid, replaced.workers[0]!.pid, "the replacement was not killed again");
    assert.equal(after.dispatcher.pid, before.dispatcher.pid);
    assert.doesNotMatch(inst.logs(), /wedged|doorbell .* failed/);
    // The replacement serves requests, and chat both ways through the dispatcher.
    const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => inst.client(["echo", `${i}`])));
    for (const [i, r] of rs.entries()) assert.equal(r.stdout, `${i}\n`, r.stderr);
    const [fresh] = await clientsOnEveryWorker(place.ircPort, "again");
    assert.equal(slotOf(fresh!.owner), 1);
    await fresh!.client.join("#load");
    two!.client.raw("PRIVMSG #load :after");
    await fresh!.client.waitLine(
      "the message from worker 2",
      (m) => m.command === "PRIVMSG" && m.params[1] === "after",
    );
    for (const c of [fresh!, two!]) await c.client.quit();
  });
});
