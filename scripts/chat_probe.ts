/**
 * The chat-scale benchmark's event-loop lag probe: an idle IRC client on
 * each server process (osps: one per worker, found by WHOIS; ngircd: one)
 * that sends PING every 20 ms and times the PONG. A server process whose
 * loop is blocked answers late; the round trip's p99 is its loop lag as a
 * client feels it. A process of its own, so that the load client's work
 * does not delay the probe's reading.
 *
 *   chat_probe.ts PORT PROCESSES
 *
 * Prints `ready`, then on every stdin line the round trips since the last
 * one (count, p50, p99, max in ms) as a JSON line, with the event-loop delay
 * each osps worker measured itself over that time (`STATS L`: the worst p99
 * and max among them) and where each one's memory goes (`STATS z`, KiB).
 * @module
 */
import { percentile } from "../mod/client/latency_stats.ts";
import { parseMemoryLine } from "../mod/sys/memory.ts";

const [port, processes] = Deno.args.map(Number) as [number, number];
const enc = new TextEncoder(), dec = new TextDecoder();

interface Probe {
  conn: Deno.TcpConn;
  text: string;
  sent: Map<string, number>;
}

async function open(i: number): Promise<{ probe: Probe; owner: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const probe: Probe = { conn, text: "", sent: new Map() };
  await conn.write(enc.encode(`NICK probe${i}\r\nUSER p 0 * :probe\r\nWHOIS probe${i}\r\n`));
  const buf = new Uint8Array(8192);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) throw new Error("probe connection closed");
    probe.text += dec.decode(buf.subarray(0, n));
    const m = / 312 \S+ \S+ \S+ :(.*)\r?\n/.exec(probe.text) ?? / 318 /.exec(probe.text);
    if (m) return { probe, owner: m[1] ?? "" };
  }
}

const probes: Probe[] = [];
const owners = new Set<string>();
for (let i = 0; owners.size < processes && i < 64; i++) {
  const { probe, owner } = await open(i);
  if (owners.has(owner)) probe.conn.close();
  else owners.add(owner), probes.push(probe);
}

let samples: number[] = [];
/** Each server process's own event-loop delays (osps `STATS L`), since the last mark. */
let loop: Array<{ p50: number; p99: number; max: number }> = [];
/** Each osps worker's memory (`STATS z`), since the last mark. */
let memory: Array<Record<string, number>> = [];
for (const p of probes) {
  void (async () => {
    const buf = new Uint8Array(8192);
    let text = "";
    for (;;) {
      let n: number | null;
      try {
        n = await p.conn.read(buf);
      } catch {
        n = null;
      }
      if (n === null) { // its server process is gone: it times nothing any more
        probes.splice(probes.indexOf(p), 1);
        return;
      }
      const now = performance.now();
      text += dec.decode(buf.subarray(0, n));
      for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n")) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        const st = / 249 \S+ L :event loop delay p50 (\S+) ms p99 (\S+) ms max (\S+) ms/.exec(line);
        if (st) loop.push({ p50: Number(st[1]), p99: Number(st[2]), max: Number(st[3]) });
        if (/ 249 \S+ z :memory KiB /.test(line)) memory.push(parseMemoryLine(line));
        const m = / PONG \S+ :?(t\d+)/.exec(line);
        const at = m ? p.sent.get(m[1]!) : undefined;
        if (at !== undefined) {
          samples.push(now - at);
          p.sent.delete(m![1]!);
        } else if (line.startsWith("PING")) void p.conn.write(enc.encode("PONG :x\r\n")).catch(() => {});
      }
    }
  })();
}

let seq = 0;
const timer = setInterval(() => {
  for (const p of probes) {
    if (p.sent.size > 0) continue; // one PING at a time, as a client sends it (its answer is still awaited)
    const token = `t${++seq}`;
    p.sent.set(token, performance.now());
    void p.conn.write(enc.encode(`PING :${token}\r\n`)).catch(() => {});
  }
}, 20);

console.log(JSON.stringify({ ready: probes.length }));
for await (const _ of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  loop = [], memory = [];
  for (const p of probes) void p.conn.write(enc.encode("STATS L\r\nSTATS z\r\n")).catch(() => {});
  const asked = performance.now();
  while (
    (loop.length < probes.length || memory.length < loop.length) && performance.now() - asked < 2_000
  ) {
    await new Promise((r) => setTimeout(r, 5));
  }
  // Pings still unanswered count as long as they have waited so far.
  const now = performance.now();
  const open = probes.flatMap((p) => [...p.sent.values()].map((at) => now - at));
  for (const p of probes) p.sent.clear(); // counted now, not again when they come
  const all = Float64Array.from([...samples, ...open]).sort();
  samples = [];
  const r = (x: number) => Math.round(x * 10) / 10;
  console.log(JSON.stringify({
    count: all.length,
    p50_ms: all.length ? r(percentile(all, 50)) : 0,
    p99_ms: all.length ? r(percentile(all, 99)) : 0,
    max_ms: all.length ? r(all[all.length - 1]!) : 0,
    ...(loop.length
      ? { loop_p99_ms: Math.max(...loop.map((l) => l.p99)), loop_max_ms: Math.max(...loop.map((l) => l.max)) }
      : {}),
    ...(memory.length ? { memory } : {}),
  }));
}
clearInterval(timer);
for (const p of probes) p.conn.close();
