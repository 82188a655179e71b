/**
 * A keep-alive HTTP load client, for machines without Debian's `wrk`:
 * `http_load.ts <url> <clients> <seconds> <body>` POSTs `body` as text on
 * `clients` kept connections for `seconds`, and prints one JSON line:
 * requests per second, p50 and p99 latency (ms), errors.
 * @module
 */
import { percentile } from "../mod/client/latency_stats.ts";

const [url = "", clients = "1", seconds = "5", body = "hello"] = Deno.args;
const u = new URL(url);
const request = new TextEncoder().encode(
  `POST ${u.pathname} HTTP/1.1\r\nHost: ${u.host}\r\nContent-Type: text/plain\r\nContent-Length: ${
    new TextEncoder().encode(body).length
  }\r\n\r\n${body}`,
);
const samples: number[] = [];
let errors = 0;
const until = performance.now() + Number(seconds) * 1000;

async function client(): Promise<void> {
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  conn.setNoDelay(true);
  const buf = new Uint8Array(64 * 1024);
  const dec = new TextDecoder();
  while (performance.now() < until) {
    const t0 = performance.now();
    await conn.write(request);
    let text = "";
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) return;
      text += dec.decode(buf.subarray(0, n));
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) continue;
      const len = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      if (text.length >= end + 4 + len) break;
    }
    if (!text.startsWith("HTTP/1.1 200")) errors++;
    samples.push(performance.now() - t0);
  }
  conn.close();
}

const t0 = performance.now();
await Promise.all(Array.from({ length: Number(clients) }, client));
const elapsed = (performance.now() - t0) / 1000;
samples.sort((a, b) => a - b);
console.log(JSON.stringify({
  rps: samples.length / elapsed,
  p50: percentile(samples, 50),
  p99: percentile(samples, 99),
  errors,
}));
