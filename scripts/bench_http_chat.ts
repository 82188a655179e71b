/**
 * The chat half of the benchmark's HTTP part: a message posted over HTTP
 * (`POST /v1/channels/{name}/messages` as an account) until an event-stream
 * reader and an IRC client in the channel have it, one message at a time
 * (latency p50/p99 for each path). And what `Deno.serve`'s own HTTP parser
 * does with hostile input, measured, which is why osps reads HTTP itself.
 * @module
 */
import { percentile } from "../mod/client/latency_stats.ts";
import { readIrcLines } from "../tests/support/irc.ts";
import { type Figure, figure, sleep } from "./bench_util.ts";

const CHANNEL = "#bench";
const PASSWORD = "bench-password-1";

/** An IRC connection recording when each numbered message arrived. */
async function ircClient(port: number, nick: string, lines: string[]) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const arrived = new Map<number, number>();
  const seen: string[] = [];
  void readIrcLines(conn, (line, at) => {
    seen.push(line);
    const m = / PRIVMSG #bench :m(\d+)$/.exec(line);
    if (m) arrived.set(Number(m[1]), at);
    if (line.startsWith("PING ")) void conn.write(new TextEncoder().encode(`PONG ${line.slice(5)}\r\n`));
  });
  const send = (l: string) => conn.write(new TextEncoder().encode(`${l}\r\n`));
  for (const l of [`NICK ${nick}`, `USER ${nick} 0 * :bench`, ...lines, `JOIN ${CHANNEL}`]) await send(l);
  for (let i = 0; i < 400 && !seen.some((l) => / 366 /.test(l)); i++) await sleep(10);
  return { arrived, seen, send, close: () => conn.close() };
}

/** An event-stream reader recording when each numbered message arrived. */
async function sseReader(base: string) {
  const abort = new AbortController();
  const res = await fetch(`${base}/v1/channels/bench/events`, { signal: abort.signal });
  const arrived = new Map<number, number>();
  const done = (async () => {
    let text = "";
    try {
      for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
        const at = performance.now();
        text += chunk;
        for (const m of text.matchAll(/"text":"m(\d+)"/g)) {
          if (!arrived.has(Number(m[1]))) arrived.set(Number(m[1]), at);
        }
        text = text.slice(Math.max(0, text.lastIndexOf("\n\n")));
      }
    } catch { /* aborted */ }
  })();
  return { arrived, close: async () => (abort.abort(), await done) };
}

/**
 * Posts as `account` over HTTP with a bearer token (issued once for its
 * password: password checks are rate-limited per address, tokens are not),
 * or null when this instance has no accounts.
 */
async function httpPoster(base: string, account: string) {
  const issued = await fetch(`${base}/v1/tokens`, {
    method: "POST",
    headers: { authorization: `Basic ${btoa(`${account}:${PASSWORD}`)}` },
  });
  if (issued.status !== 201) {
    await issued.body?.cancel();
    return null;
  }
  const auth = `Bearer ${(await issued.json() as { token: string }).token}`;
  return async (text: string) => {
    const res = await fetch(`${base}/v1/channels/bench/messages`, {
      method: "POST",
      headers: { authorization: auth, "content-type": "text/plain" },
      body: text,
    });
    await res.body?.cancel();
    if (res.status !== 201) throw new Error(`post: ${res.status}`);
  };
}

/** Message latencies, HTTP post → event stream and → IRC. */
export async function benchHttpChat(
  base: string,
  ircPort: number,
  messages: number,
): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  // The poster: an account (registered over IRC, which also makes it a member of the +n channel).
  const poster = await ircClient(ircPort, "poster", [`PRIVMSG NickServ :REGISTER ${PASSWORD}`]);
  const receiver = await ircClient(ircPort, "receiver", []);
  const reader = await sseReader(base);
  let post = await httpPoster(base, "poster");
  const via = post ? "HTTP post" : "IRC post (no accounts on this instance)";
  post ??= (text: string) => poster.send(`PRIVMSG ${CHANNEL} :${text}`).then(() => {});
  const sent = new Map<number, number>();
  try {
    for (let k = 0; k < messages; k++) {
      sent.set(k, performance.now());
      await post(`m${k}`);
      for (let i = 0; i < 2000 && !(reader.arrived.has(k) && receiver.arrived.has(k)); i++) await sleep(0.2);
    }
  } finally {
    await reader.close();
    poster.close();
    receiver.close();
  }
  const lat = (arrived: Map<number, number>) =>
    [...sent].filter(([k]) => arrived.has(k)).map(([k, t]) => arrived.get(k)! - t).sort((a, b) => a - b);
  const sse = lat(reader.arrived), irc = lat(receiver.arrived);
  const row = (name: string, xs: number[], p: number): Figure =>
    figure({
      part: "HTTP chat",
      name: `${via} → ${name} p${p}`,
      value: Math.round(percentile(xs, p) * 1000) / 1000,
      unit: "ms",
      note: `${xs.length} of ${messages} messages received, one at a time`,
    });
  return {
    figures: [
      row("event stream", sse, 50),
      row("event stream", sse, 99),
      row("IRC client", irc, 50),
      row("IRC client", irc, 99),
    ],
    raw: { via, messages, sse_received: sse.length, irc_received: irc.length },
  };
}

/** What `Deno.serve` answers to hostile HTTP (and after how long), on a server of its own. */
export async function probeDenoServe(watchMs: number): Promise<Record<string, string>> {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => new Response(String((await req.arrayBuffer().catch(() => new ArrayBuffer(0))).byteLength)),
  );
  const port = server.addr.port;
  const enc = new TextEncoder();
  const raw = async (bytes: string, waitMs: number): Promise<string> => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await c.write(enc.encode(bytes)).catch(() => 0);
    const buf = new Uint8Array(4096);
    const t0 = performance.now();
    const timer = setTimeout(() => c.close(), waitMs);
    let out: string;
    try {
      const n = await c.read(buf);
      out = n === null ? "closed" : new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0]!;
      clearTimeout(timer);
      c.close();
    } catch {
      out = `no answer, connection still open`;
    }
    return `${out} after ${Math.round(performance.now() - t0)} ms`;
  };
  try {
    return {
      "100 KiB header": await raw(`GET / HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(100 << 10)}\r\n\r\n`, 5_000),
      [`head never completed (slowloris), watched ${watchMs / 1000} s`]: await raw(
        "GET / HTTP/1.1\r\nHost: x\r\n",
        watchMs,
      ),
      [`body of 10 MB declared, 10 bytes sent, watched ${watchMs / 1000} s`]: await raw(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n0123456789",
        watchMs,
      ),
      "per-address connection cap": "none: Deno.serve has no hook at accept (its handler sees requests only)",
    };
  } finally {
    await server.shutdown();
  }
}
