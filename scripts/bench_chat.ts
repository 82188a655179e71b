/**
 * Part 5 of the benchmark suite: the chat, against Debian's ngircd on the
 * same machine in the same run. One sender and N-1 receivers in one channel
 * (on osps the kernel spreads them over the workers, so most deliveries cross
 * from one worker to another through the dispatcher):
 * - latency: one message at a time, from the sender's write to each
 *   receiver's read (every receiver is a sample);
 * - throughput: a window of messages in flight; messages per second the
 *   channel carries, until every receiver has read every one.
 * Both servers run without flood control (osps `--irc-flood-rate=0`, ngircd
 * `MaxPenaltyTime = 0`), and osps stores every message (SQLite, WAL) before
 * delivering it; ngircd keeps nothing.
 * @module
 */
import { startInstance } from "../tests/harness.ts";
import { readIrcLines } from "../tests/support/irc.ts";
import { percentile } from "../mod/client/latency_stats.ts";
import { parseMessage } from "../mod/chat/irc_message.ts";
import { type Figure, figure, listening, sleep } from "./bench_util.ts";

/** A minimal IRC client for load: records when each numbered message arrived. */
class BenchClient {
  readonly conn: Deno.TcpConn;
  /** Message number → arrival time (performance.now()). */
  readonly arrived = new Map<number, number>();
  #welcomed = Promise.withResolvers<void>();
  #joined = Promise.withResolvers<void>();
  readonly #reading: Promise<void>;
  #waiter: { n: number; resolve: () => void } | undefined;
  #whois: PromiseWithResolvers<string> | undefined;

  private constructor(conn: Deno.TcpConn, readonly nick: string) {
    this.conn = conn;
    this.#joined.promise.catch(() => {}); // awaited only after the welcome; a close before it is reported there
    this.#reading = this.#read();
  }

  static async open(port: number, nick: string, channel: string): Promise<BenchClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const c = new BenchClient(conn, nick);
    await c.send(`NICK ${nick}\r\nUSER ${nick} 0 * :bench\r\n`);
    await c.#welcomed.promise;
    await c.send(`JOIN ${channel}\r\n`);
    await c.#joined.promise;
    return c;
  }

  async #read(): Promise<void> {
    await readIrcLines(this.conn, (line, now) => {
      if (line.includes(" PRIVMSG ")) {
        const k = Number(line.slice(line.lastIndexOf(":") + 1));
        this.arrived.set(k, now);
        if (this.#waiter && this.arrived.has(this.#waiter.n)) this.#waiter.resolve();
        return;
      }
      const m = parseMessage(line);
      if (m?.command === "001") this.#welcomed.resolve();
      else if (m?.command === "366") this.#joined.resolve();
      else if (m?.command === "312") this.#whois?.resolve(/\(([^)]*)\)/.exec(m.params[3] ?? "")?.[1] ?? "");
      else if (m?.command === "PING") void this.send(`PONG :${m.params[0] ?? ""}\r\n`);
    });
    this.#welcomed.reject(new Error("closed before 001"));
    this.#joined.reject(new Error("closed before joining"));
  }

  /** Which osps worker process serves us (from our own WHOIS; "" on other servers). */
  async owner(): Promise<string> {
    this.#whois = Promise.withResolvers<string>();
    await this.send(`WHOIS ${this.nick}\r\n`);
    return await this.#whois.promise;
  }

  async send(text: string): Promise<void> {
    const bytes = new TextEncoder().encode(text);
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Resolves once message `n` arrived. */
  got(n: number): Promise<void> {
    if (this.arrived.has(n)) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiter = { n, resolve };
    return promise;
  }

  async close(): Promise<void> {
    await this.send("QUIT :done\r\n").catch(() => {});
    try {
      this.conn.close();
    } catch { /* closed */ }
    await this.#reading;
  }
}

/**
 * With two members, the receiver is reconnected until a worker other than
 * the sender's serves it: the measured path is the one across workers (the
 * kernel, not the benchmark, picks the worker of a connection).
 */
async function spread(clients: BenchClient[], port: number, channel: string): Promise<void> {
  const senderOwner = await clients[0]!.owner();
  for (let attempt = 1; attempt <= 32; attempt++) {
    if ((await clients[1]!.owner()) !== senderOwner) return;
    await clients[1]!.close();
    clients[1] = await BenchClient.open(port, `b2xr${attempt}`, channel);
  }
}

/** What one server did at one channel size. */
export interface ChatRun {
  readonly server: "osps" | "ngircd";
  readonly members: number;
  readonly latency_p50_ms: number;
  readonly latency_p99_ms: number;
  readonly throughput_msgs_s: number;
  readonly deliveries_s: number;
}

async function measure(
  server: ChatRun["server"],
  port: number,
  members: number,
  opts: { rounds: number; burst: number; window: number },
): Promise<ChatRun> {
  const channel = `#bench${members}`;
  const clients: BenchClient[] = [];
  for (let i = 0; i < members; i++) clients.push(await BenchClient.open(port, `b${members}x${i}`, channel));
  if (server === "osps" && members === 2) await spread(clients, port, channel);
  const [sender, ...receivers] = clients as [BenchClient, ...BenchClient[]];
  try {
    // Latency: one at a time.
    const samples: number[] = [];
    for (let k = 1; k <= opts.rounds; k++) {
      const t0 = performance.now();
      await sender.send(`PRIVMSG ${channel} :${k}\r\n`);
      await Promise.all(receivers.map((r) => r.got(k)));
      for (const r of receivers) samples.push(r.arrived.get(k)! - t0);
    }
    // Throughput: a window of messages in flight, numbered after the latency ones.
    const first = opts.rounds + 1, last = opts.rounds + opts.burst;
    const t0 = performance.now();
    for (let k = first; k <= last; k++) {
      if (k - opts.window >= first) await Promise.all(receivers.map((r) => r.got(k - opts.window)));
      await sender.send(`PRIVMSG ${channel} :${k}\r\n`);
    }
    await Promise.all(receivers.map((r) => r.got(last)));
    const seconds = (performance.now() - t0) / 1000;
    const sorted = Float64Array.from(samples).sort();
    const round = (x: number) => Math.round(x * 1000) / 1000;
    return {
      server,
      members,
      latency_p50_ms: round(percentile(sorted, 50)),
      latency_p99_ms: round(percentile(sorted, 99)),
      throughput_msgs_s: Math.round(opts.burst / seconds),
      deliveries_s: Math.round((opts.burst * receivers.length) / seconds),
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Starts Debian's ngircd on a free port without flood penalties; null when it is not installed. */
export async function startNgircd(): Promise<
  { port: number; pid: number; stop: () => Promise<void> } | null
> {
  const dir = Deno.makeTempDirSync({ prefix: "osps-bench-ngircd-" });
  const port = freePort();
  Deno.writeTextFileSync(
    `${dir}/ngircd.conf`,
    `[Global]\nName = bench.ngircd\nInfo = bench\nListen = 127.0.0.1\nPorts = ${port}\nMotdPhrase = bench\n` +
      `[Limits]\nMaxPenaltyTime = 0\nMaxConnectionsIP = 0\nMaxNickLength = 32\nPingTimeout = 600\n` +
      `[Options]\nPAM = no\nDNS = no\nIdent = no\n`,
  );
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("ngircd", {
      args: ["--nodaemon", "--config", `${dir}/ngircd.conf`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch {
    Deno.removeSync(dir, { recursive: true });
    return null;
  }
  const until = Date.now() + 10_000;
  while (!(await listening(port)) && Date.now() < until) await sleep(50);
  return {
    port,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** Runs part 5: osps and ngircd at each channel size. */
export async function benchChat(
  opts: { members: number[]; rounds: number; burst: number; window: number },
): Promise<{ figures: Figure[]; runs: ChatRun[] }> {
  const runs: ChatRun[] = [];
  const ircPort = freePort();
  const dataDir = Deno.makeTempDirSync({ prefix: "osps-bench-chat-" });
  const inst = await startInstance({
    workers: 2,
    flags: [
      `--irc-port=${ircPort}`,
      `--data-dir=${dataDir}`,
      "--irc-flood-rate=0",
      "--irc-sendq-bytes=16777216",
      "--log-level=warning",
    ],
  });
  const ngircd = await startNgircd();
  try {
    for (const members of opts.members) {
      runs.push(await measure("osps", ircPort, members, opts));
      if (ngircd) runs.push(await measure("ngircd", ngircd.port, members, opts));
    }
  } finally {
    await inst.stop();
    await ngircd?.stop();
    Deno.removeSync(dataDir, { recursive: true });
  }
  const figures: Figure[] = [];
  for (const members of opts.members) {
    const o = runs.find((r) => r.server === "osps" && r.members === members)!;
    const n = runs.find((r) => r.server === "ngircd" && r.members === members);
    const note = n ? "osps stores each message (SQLite WAL) first" : "ngircd not installed: no reference";
    figures.push(
      figure({
        part: "Chat",
        name: `${members} members: message latency p50`,
        value: o.latency_p50_ms,
        unit: "ms",
        ...(n ? { reference: { name: "ngircd p50", value: n.latency_p50_ms } } : {}),
        target: { on: "ratio", op: "<=", limit: 1.5 },
        note,
      }),
      figure({
        part: "Chat",
        name: `${members} members: messages per second`,
        value: o.throughput_msgs_s,
        unit: "msg/s",
        ...(n ? { reference: { name: "ngircd", value: n.throughput_msgs_s } } : {}),
        target: { on: "ratio", op: ">=", limit: 0.5 },
        note: `${o.deliveries_s} deliveries/s${n ? ` (ngircd ${n.deliveries_s})` : ""}`,
      }),
    );
  }
  return { figures, runs };
}
