/**
 * The chat-scale benchmark's load client: one process that holds N IRC
 * connections to one server (osps or ngircd) and drives them through the
 * phases the orchestrator (`bench_chat_scale.ts`) paces from stdin:
 *
 *   chat_load.ts PORT N ROUNDS [JOIN_DEADLINE_MS]   (prints one JSON line per phase)
 *
 * 1. `registered`: N clients connect and register (NICK/USER → 001);
 * 2. `joined`: all of them JOIN one channel, a window at a time (each waits
 *    for its own 366); every client reads everything the server sends, as a
 *    real client does (N²/2 JOIN lines in all). A server that has not
 *    answered every JOIN by the deadline is reported as it stands
 *    (`unfinished`: JOINs still unanswered), and the later phases are not run;
 * 3. `fanout`: client 0 says ROUNDS messages, one at a time; each is done
 *    when every other member has read it: its completion time;
 * 4. `quits` (on "kill"): the orchestrator kills a server process; the
 *    clients it held see their connection end, and the time until every
 *    survivor has read every one of their QUITs is measured;
 * 5. `disconnect` (on "disconnect"): every connection still open ends at
 *    once; the time until the server's NAMES of the channel is empty.
 *
 * Between phases it waits for a line on stdin (the orchestrator reads RSS
 * meanwhile). Incoming bytes are scanned, not parsed: at 10,000 members the
 * join phase alone is gigabytes of JOIN lines.
 * @module
 */
import { percentile } from "../mod/client/latency_stats.ts";
import * as libc from "../mod/sys/libc.ts";

const [port, n, rounds, joinDeadlineMs = Infinity] = Deno.args.map(Number) as [
  number,
  number,
  number,
  number?,
];
const CHANNEL = "#scale";
const enc = new TextEncoder();

/** Byte pattern search (first byte by the native indexOf, then a compare). */
function find(hay: Uint8Array, needle: Uint8Array, from = 0): number {
  const first = needle[0]!;
  for (
    let i = hay.indexOf(first, from);
    i >= 0 && i <= hay.length - needle.length;
    i = hay.indexOf(first, i + 1)
  ) {
    let k = 1;
    while (k < needle.length && hay[i + k] === needle[k]) k++;
    if (k === needle.length) return i;
  }
  return -1;
}

const P001 = enc.encode(" 001 ");
const P366 = enc.encode(" 366 ");
const PMARK = enc.encode("FANOUT");
const PQUIT = enc.encode("QUIT :");
const empty = new Uint8Array(0);
/** What the clients are doing: what their reading looks for. */
let phase: "register" | "join" | "fanout" | "quits" = "register";
/** Per FANOUT message number, how many clients have read it. */
const arrivals = new Map<number, number>();
const PPING = enc.encode("PING :");
const PERROR = enc.encode("ERROR :");

/**
 * The sockets are the kernel's, driven by epoll through libc (`mod/sys/libc.ts`),
 * not by one Deno read per socket: reading 10,000 sockets that way costs this
 * process ~27 µs each (measured: a bare Deno server writing one line to
 * 10,000 sockets was read by such a client in 230–400 ms), more than the
 * fan-out it is there to time. One epoll wait, parked on a worker thread,
 * then plain non-blocking reads: the load client costs microseconds per
 * socket, and what is timed is the server.
 */
const ep = libc.epollCreate();
const byFd = new Map<number, Client>();
/** Clients with bytes the socket did not take yet. */
const unsent = new Set<Client>();
const readBuf = new Uint8Array(64 * 1024);
/** Reads per socket per wake-up (level-triggered: a socket with more to read is reported again). */
const READS_PER_WAKE = 4;
void (async () => {
  for (;;) {
    const ready = await libc.epollWait(ep, 4096, 50);
    const now = performance.now();
    for (const { fd, events } of ready) byFd.get(fd)?.ready(events, now);
    for (const c of unsent) c.flush();
  }
})();

/** One connection. Keeps the last bytes of a chunk so that a marker cut in two is still found. */
class Client {
  readonly fd: number;
  readonly nick: string;
  /** Arrival time of each FANOUT message number. */
  readonly got = new Map<number, number>();
  quits = 0;
  welcomed = Promise.withResolvers<void>();
  joined = Promise.withResolvers<void>();
  /** When the server closed the connection. */
  closedAt: number | undefined;
  #carry = new Uint8Array(0);
  /** The server's last ERROR line, if it sent one. */
  lastError = "";
  #wantJoin = false;
  #connected = false;
  #out: Uint8Array[] = [];

  /** Starts connecting to the server; what is sent meanwhile goes once connected. */
  constructor(port: number, nick: string) {
    this.fd = libc.connectNonBlocking("127.0.0.1", port);
    this.nick = nick;
    this.welcomed.promise.catch(() => {});
    this.joined.promise.catch(() => {});
    byFd.set(this.fd, this);
    libc.epollCtl(ep, "add", this.fd, libc.EPOLL.IN | libc.EPOLL.OUT | libc.EPOLL.RDHUP);
  }

  /** epoll reported `events` on the socket. */
  ready(events: number, now: number): void {
    if (!this.#connected && events & libc.EPOLL.OUT && !(events & libc.EPOLL.ERR)) {
      this.#connected = true;
      libc.epollCtl(ep, "mod", this.fd, libc.EPOLL.IN | libc.EPOLL.RDHUP);
      this.flush();
    }
    for (let i = 0; i < READS_PER_WAKE; i++) {
      const k = libc.readNow(this.fd, readBuf);
      if (k === -libc.E.EAGAIN) return;
      if (k <= 0) return this.close(); // EOF, or the connection failed or was reset
      this.#received(readBuf.subarray(0, k), now);
      if (k < readBuf.length) return;
    }
  }

  #received(data: Uint8Array, now: number): void {
    let chunk = data;
    if (this.#carry.length > 0) {
      const joined = new Uint8Array(this.#carry.length + data.length);
      joined.set(this.#carry);
      joined.set(data, this.#carry.length);
      chunk = joined;
    }
    // Whole lines are scanned; a line cut by the read waits for its end.
    const end = chunk.lastIndexOf(0x0a) + 1;
    this.#scan(chunk.subarray(0, end), now);
    this.#carry = end === chunk.length ? empty : chunk.slice(end);
  }

  /** Closes the socket (the server's end, or ours). */
  close(): void {
    if (this.closedAt !== undefined) return;
    this.closedAt = performance.now();
    byFd.delete(this.fd);
    unsent.delete(this);
    libc.close(this.fd); // closing removes it from the epoll set
    this.welcomed.reject(new Error("closed"));
    this.joined.reject(new Error("closed"));
  }

  /** Looks for what the current phase waits for (scanning costs: at 10,000 members it is gigabytes). */
  #scan(chunk: Uint8Array, now: number): void {
    if (chunk.length === 0) return;
    if (phase === "register") {
      if (find(chunk, P001) >= 0) this.welcomed.resolve();
      const e = find(chunk, PERROR);
      if (e >= 0) {
        this.lastError = new TextDecoder().decode(chunk.subarray(e, Math.min(chunk.length, e + 120))).split(
          "\r",
        )[0]!;
      }
    } else if (phase === "join") {
      // Only until its own 366: the rest of the phase is other members' JOINs, gigabytes at 10,000.
      if (this.#wantJoin && find(chunk, P366) >= 0) this.#wantJoin = false, this.joined.resolve();
    } else if (phase === "fanout") {
      for (let i = find(chunk, PMARK); i >= 0; i = find(chunk, PMARK, i + 1)) {
        let j = i + PMARK.length, k = 0;
        while (j < chunk.length && chunk[j]! >= 0x30 && chunk[j]! <= 0x39) k = k * 10 + chunk[j++]! - 0x30;
        if (!this.got.has(k)) {
          this.got.set(k, now);
          arrivals.set(k, (arrivals.get(k) ?? 0) + 1);
        }
      }
    } else {
      for (let i = find(chunk, PQUIT); i >= 0; i = find(chunk, PQUIT, i + 1)) this.quits++;
    }
    for (let i = find(chunk, PPING); i >= 0; i = find(chunk, PPING, i + 1)) {
      if (i === 0 || chunk[i - 1] === 0x0a) this.send("PONG :x\r\n");
    }
  }

  /** Queues `text` and writes what the socket takes now (the rest as it drains). */
  send(text: string): void {
    if (this.closedAt !== undefined) return;
    this.#out.push(enc.encode(text));
    this.flush();
  }

  /** Writes what is queued, while the socket takes it. */
  flush(): void {
    while (this.#connected && this.#out.length > 0 && this.closedAt === undefined) {
      const n = libc.write(this.fd, this.#out[0] as Uint8Array<ArrayBuffer>);
      if (n === -libc.E.EAGAIN) break;
      if (n < 0) return this.close();
      if (n < this.#out[0]!.length) this.#out[0] = this.#out[0]!.subarray(n);
      else this.#out.shift();
    }
    if (this.#out.length > 0 && this.closedAt === undefined) unsent.add(this);
    else unsent.delete(this);
  }

  join(): Promise<void> {
    this.#wantJoin = true;
    this.send(`JOIN ${CHANNEL}\r\n`);
    return this.joined.promise;
  }
}

/** Runs `f` over `items` with at most `window` at once. */
async function windowed<T>(items: T[], window: number, f: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(window, items.length) }, async () => {
    while (next < items.length) await f(items[next++]!);
  }));
}

const stdin = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
async function awaitOrder(): Promise<string> {
  let line = "";
  while (!line.includes("\n")) {
    const r = await stdin.read();
    if (r.done) Deno.exit(0);
    line += r.value;
  }
  return line.trim();
}
const report = (o: Record<string, unknown>) => console.log(JSON.stringify(o));

/** Members of the channel as the server lists them to a fresh client (NAMES); -1 without an answer in 10 s. */
let checks = 0;
async function namesLeft(): Promise<number> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(enc.encode(`NICK checker${++checks}\r\nUSER c 0 * :c\r\nNAMES ${CHANNEL}\r\n`));
      let text = "";
      const buf = new Uint8Array(65536);
      const until = performance.now() + 10_000;
      while (!/ 366 /.test(text) && performance.now() < until) {
        const k = await conn.read(buf);
        if (k === null) break;
        text += new TextDecoder().decode(buf.subarray(0, k));
      }
      if (!/ 366 /.test(text)) return -1;
      return text.split("\n").filter((l) => / 353 /.test(l)).reduce(
        (n, l) => n + l.split(" :")[1]!.trim().split(" ").length,
        0,
      );
    } finally {
      conn.close();
    }
  } catch {
    return -1; // no answer
  }
}

console.log(JSON.stringify({ phase: "ready" }));
await awaitOrder();

// 1. Connect and register.
let refused = 0;
const clients: Client[] = [];
let t0 = performance.now();
let retried = 0;
await windowed(Array.from({ length: n }, (_, i) => i), 200, async (i) => {
  // A server may drop a connection it could not take yet (ngircd does under a burst): try again, a few times.
  for (let attempt = 1;; attempt++) {
    const c = new Client(port, `s${i}`);
    clients[i] = c;
    c.send(`NICK s${i}\r\nUSER s${i} 0 * :scale ${i}\r\n`);
    if (await c.welcomed.promise.then(() => true, () => false)) return;
    if (attempt === 5) return void refused++;
    retried++;
    await new Promise((r) => setTimeout(r, 100 * attempt));
  }
});
if (refused > 0) {
  report({
    phase: "registered",
    error: `${refused} of ${n} connections closed before 001: ${
      clients.find((c) => c.closedAt)?.lastError ?? ""
    }`,
  });
  Deno.exit(0);
}
report({ phase: "registered", ms: Math.round(performance.now() - t0), retried });
await awaitOrder();

// 2. Join one channel, 50 JOINs in flight.
phase = "join";
t0 = performance.now();
let joins = 0, dropped = 0;
let overdue: ReturnType<typeof setTimeout> | undefined;
const allJoined = windowed(clients, 50, async (c) => {
  if (await c.join().then(() => true, () => false)) joins++;
  else dropped++; // the server closed it (a send queue it judged too long)
});
await Promise.race([
  allJoined,
  new Promise<void>((r) => overdue = setTimeout(r, Math.min(joinDeadlineMs, 2 ** 31 - 1))),
]);
clearTimeout(overdue);
const unfinished = n - joins - dropped;
report({ phase: "joined", ms: Math.round(performance.now() - t0), joins, dropped, unfinished });
if (unfinished > 0) { // past the deadline: the orchestrator reads memory and lag as they stand, then stops us
  await awaitOrder();
  Deno.exit(0);
}
await awaitOrder();

// 3. Fan-out: one message at a time; done when every other member read it.
phase = "fanout";
const completions: number[] = [], deliveries: number[] = [];
const [sender, ...receivers] = clients as [Client, ...Client[]];
for (let k = 1; k <= rounds; k++) {
  const sent = performance.now();
  sender.send(`PRIVMSG ${CHANNEL} :FANOUT${k} x\r\n`);
  const deadline = sent + 30_000;
  // The sender's own message is not echoed to it: done when every other client read it.
  while ((arrivals.get(k) ?? 0) < receivers.length && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1));
  }
  const arrived = receivers.map((r) => (r.got.get(k) ?? Infinity) - sent);
  completions.push(Math.max(...arrived));
  deliveries.push(...arrived);
  await new Promise((r) => setTimeout(r, 20));
}
const sort = (xs: number[]) => Float64Array.from(xs).sort();
const pct = (xs: number[], p: number) => Math.round(percentile(sort(xs), p) * 10) / 10;
report({
  phase: "fanout",
  completion_p50_ms: pct(completions, 50),
  completion_p99_ms: pct(completions, 99),
  completion_max_ms: Math.round(Math.max(...completions) * 10) / 10,
  delivery_p50_ms: pct(deliveries, 50),
  lost: deliveries.filter((d) => d === Infinity).length,
});

// 4. Mass QUIT: on "kill", the orchestrator kills a server process and says "killed".
let order = await awaitOrder();
if (order === "kill") {
  phase = "quits";
  const before = clients.map((c) => c.quits);
  report({ phase: "kill-ready" });
  await awaitOrder();
  t0 = performance.now();
  // The dead process's connections end at once (the kernel closes them), though this busy client may read
  // their end late: done when every connection still open has read as many QUITs as have ended.
  // One pass over the clients per look (not one per open client: at 10,000 that alone would busy this process).
  const look = () => {
    let gone = 0;
    for (const c of clients) if (c.closedAt !== undefined) gone++;
    let live = 0, short = 0, missing = 0;
    clients.forEach((c, i) => {
      if (c.closedAt !== undefined) return;
      live++;
      const lacking = gone - (c.quits - before[i]!);
      if (lacking > 0) short++, missing += lacking;
    });
    return { gone, live, short, missing };
  };
  const deadline = t0 + Math.max(120_000, n * 30);
  let steady = 0;
  while (performance.now() < deadline) {
    const g = look().gone;
    await new Promise((r) => setTimeout(r, 50));
    const now = look();
    steady = g > 0 && g === now.gone && now.short === 0 ? steady + 1 : 0;
    if (steady >= 10) break; // half a second with nothing new ending and nothing missing
  }
  const end = look();
  const quitMs = Math.round(performance.now() - t0 - (steady >= 10 ? 500 : 0));
  // What the server says is left in the channel (a fresh client's NAMES).
  const names = await namesLeft();
  report({
    phase: "quits",
    names,
    gone: end.gone,
    live: end.live,
    ms: quitMs,
    missing: end.missing,
  });
  order = await awaitOrder();
}

// 5. Disconnect storm: on "disconnect", every connection still open ends at once (a client host, or the NAT
// in front of it, gone); done when the server's NAMES of the channel is empty: every leaving processed.
if (order === "disconnect") {
  const open = clients.filter((c) => c.closedAt === undefined).length;
  const t = performance.now();
  for (const c of clients) c.close();
  let left = -1;
  const until = t + Math.max(120_000, n * 30);
  while (performance.now() < until) {
    left = await namesLeft();
    if (left === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  report({ phase: "disconnect", closed: open, ms: Math.round(performance.now() - t), left });
}
for (const c of clients) {
  try {
    c.close();
  } catch { /* closed */ }
}
