/**
 * Hostile HTTP against a live instance: each limit answered with its status
 * (431 for a long head, 413 for a long body before it is read, 408 for a
 * head or a body dripped past its deadline, 429 past the per-address caps,
 * 400/501/505 for the framing tricks that split request smugglers'
 * parsers), no path traversal or prototype key from a URL, CORS off unless
 * asked for, WebSocket frames limited and pings answered; then thousands of
 * seeded hostile inputs while an honest client is served, after which every
 * role has its pid and no restart. `OSPS_FUZZ_SEED=<seed>` replays a run.
 */
import assert from "node:assert/strict";
import { freePorts, type Instance, withInstance } from "./harness.ts";
import { exchange, RawHttp } from "./support/raw_http.ts";

const SEED = Number(Deno.env.get("OSPS_FUZZ_SEED") ?? Date.now() % 1_000_000);

/** xorshift32, seeded: picks the mutations. */
function xorshift(seed: number): () => number {
  let x = (seed || 1) >>> 0;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

const LIMITS = [
  "--http-max-header-bytes=2048",
  "--http-max-body-bytes=4096",
  "--handshake-timeout-ms=1000",
  "--idle-timeout-ms=3000",
];

function req(target: string, headers: string[] = [], body = "", method = body ? "POST" : "GET"): string {
  return `${method} ${target} HTTP/1.1\r\nHost: x\r\n${headers.map((h) => `${h}\r\n`).join("")}` +
    `${body ? `Content-Length: ${new TextEncoder().encode(body).length}\r\n` : ""}\r\n${body}`;
}

async function pids(inst: Instance): Promise<number[]> {
  const s = await inst.status();
  return [s.dispatcher.pid, ...s.workers.map((w) => w.pid)];
}

Deno.test("HTTP limits: 431, 413 unread, 408 for dripped heads and bodies, smuggling tricks refused, no traversal", async () => {
  const httpPort = freePorts(1);
  await withInstance({ workers: 2, flags: [`--http-port=${httpPort}`, ...LIMITS] }, async (inst) => {
    const before = await pids(inst);
    const long = await exchange(httpPort, req("/v1/requests/echo", [`X-Long: ${"a".repeat(3000)}`]));
    assert.equal(long.status, 431);
    assert.match(long.head, /content-type: application\/problem\+json/);

    // A body declared too long is refused before any of it is sent (so before it is read).
    const tooLong = await RawHttp.connect(httpPort);
    await tooLong.send(
      "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nContent-Type: text/plain\r\n\r\n",
    );
    const declared = await tooLong.answer();
    assert.equal(declared.status, 413);
    assert.match(declared.head, /connection: close/);
    assert.ok(await tooLong.closedWithin(2_000), "the connection closes after a 413");
    tooLong.close();
    const chunked = await RawHttp.connect(httpPort);
    await chunked.send("POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (let i = 0; i < 5; i++) await chunked.send(`400\r\n${"x".repeat(1024)}\r\n`);
    assert.equal(
      (await chunked.answer()).status,
      413,
      "a chunked body is cut as soon as it passes the limit",
    );
    chunked.close();
    const ok = await exchange(
      httpPort,
      req("/v1/requests/echo", ["Content-Type: text/plain"], "x".repeat(4096)),
    );
    assert.equal(ok.status, 200);
    assert.equal(ok.body.length, 4096, "a body of exactly the limit is served");
    const chunkedOk = await exchange(
      httpPort,
      "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
        "3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
    );
    assert.equal(chunkedOk.body, "abcde");
    const expect = await RawHttp.connect(httpPort);
    await expect.send(
      "POST /v1/requests/upper HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    );
    assert.equal((await expect.answer()).status, 100);
    await expect.send("ok");
    assert.equal((await expect.answer()).body, "OK");
    expect.close();

    // Slowloris: a head dripped one byte at a time, a body that stops: 408 within the deadline, not later.
    const drip = await RawHttp.connect(httpPort);
    const head = "GET /v1/requests/time HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    const t0 = performance.now();
    let answered = false;
    for (let i = 0; i < 40 && !answered; i++) {
      answered = !(await drip.send(head[i] ?? "a"));
      await new Promise((r) => setTimeout(r, 100));
    }
    const dripped = await drip.answer(3_000);
    assert.equal(dripped.status, 408, dripped.head);
    assert.ok(performance.now() - t0 < 2_500, "the deadline covers the whole head, however it drips");
    drip.close();
    const slowBody = await RawHttp.connect(httpPort);
    await slowBody.send(
      "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\n0123",
    );
    const stalled = await slowBody.answer(3_000);
    assert.equal(stalled.status, 408);
    slowBody.close();

    // Framing that two parsers could read differently is refused.
    const refused: Array<[string, number]> = [
      [
        "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
      ],
      [
        "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
      ],
      ["POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501],
      ["POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400],
      [
        "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
        400,
      ],
      ["GET /v1/requests/time HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400],
      ["GET /v1/requests/time HTTP/1.1\r\nHost : x\r\n\r\n", 400],
      ["GET /v1/requests/time HTTP/1.1\r\nX: 1\r\n\r\n", 400],
      ["GET /v1/requests/time HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400],
      ["GET /v1/requests/time HTTP/1.1\nHost: x\n\n", 400],
      ["GET /v1/requests/time HTTP/2.0\r\nHost: x\r\n\r\n", 505],
      ["GET  /v1/requests/time HTTP/1.1\r\nHost: x\r\n\r\n", 400],
      ["GET v1/requests/time HTTP/1.1\r\nHost: x\r\n\r\n", 400],
      ["G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n", 400],
      ["GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417],
    ];
    for (const [bytes, status] of refused) {
      const a = await exchange(httpPort, bytes, 3_000);
      assert.equal(a.status, status, JSON.stringify(bytes));
    }

    // No path traversal, no prototype keys: the URL names routes, never files or object keys.
    for (
      const target of ["/../../etc/passwd", "/v1/%2e%2e/%2e%2e/etc/passwd", "/v1/channels/..%2f..%2fetc"]
    ) {
      const a = await exchange(httpPort, req(target));
      assert.ok([400, 404, 503].includes(a.status), `${target}: ${a.status}`);
      assert.doesNotMatch(a.body, /root:/);
    }
    const proto = await exchange(httpPort, req("/v1/requests/__proto__", ["Content-Type: text/plain"], "x"));
    assert.equal(proto.status, 400, "a type that is not a type name");
    const toString = await exchange(
      httpPort,
      req("/v1/requests/constructor", ["Content-Type: text/plain"], "x"),
    );
    assert.equal(toString.status, 404, "an inherited key is no request type");
    assert.match(toString.body, /unknown request type \\"constructor\\"/);
    const json = await exchange(
      httpPort,
      req("/v1/requests/echo", ["Content-Type: application/json"], '{"arg":"x","__proto__":{"polluted":1}}'),
    );
    assert.equal(json.status, 400, "unknown JSON keys are refused");

    // CORS is off unless asked for: no Access-Control header, whatever the Origin.
    const cors = await exchange(httpPort, req("/v1/requests/time", ["Origin: http://evil.example"]));
    assert.equal(cors.status, 200);
    assert.doesNotMatch(cors.head, /access-control/i);

    assert.deepEqual(await pids(inst), before, "no role restarted");
    assert.deepEqual((await inst.status()).workers.map((w) => w.restarts), [0, 0]);
  });
});

Deno.test("HTTP per-address caps: silent connections make room, busy ones past --max-conns-per-addr and requests past --rate-per-addr get 429", async () => {
  const httpPort = freePorts(1);
  await withInstance({
    workers: 1,
    flags: [`--http-port=${httpPort}`, "--max-conns-per-addr=6", "--rate-per-addr=40", "--rate-burst=60"],
  }, async (inst) => {
    // Silent connections make room: the oldest is told 408 and closed, the newcomer is served.
    const silent: RawHttp[] = [];
    for (let i = 0; i < 6; i++) silent.push(await RawHttp.connect(httpPort));
    await new Promise((r) => setTimeout(r, 100));
    const served = await exchange(httpPort, req("/v1/requests/time"));
    assert.equal(served.status, 200, "a client with a request is not locked out by idle sockets");
    assert.equal((await silent[0]!.answer(2_000)).status, 408, "the oldest silent connection made room");
    for (const h of silent) h.close();
    await new Promise((r) => setTimeout(r, 200));
    // Connections that spoke are kept: past the cap, a newcomer gets 429.
    const held: RawHttp[] = [];
    for (let i = 0; i < 6; i++) {
      const h = await RawHttp.connect(httpPort);
      await h.send(req("/v1/requests/time"));
      assert.equal((await h.answer()).status, 200);
      held.push(h);
    }
    const over = await exchange(httpPort, req("/v1/requests/time"));
    assert.equal(over.status, 429, over.head);
    assert.match(over.head, /retry-after: \d+/i);
    for (const h of held) h.close();
    await new Promise((r) => setTimeout(r, 200));
    // One keep-alive connection sending fast: served until the address's bucket is empty, then 429 and close.
    const c = await RawHttp.connect(httpPort);
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) {
      if (!(await c.send(req("/v1/requests/time")))) break;
      const a = await c.answer();
      statuses.push(a.status);
      if (a.closed || a.status !== 200) break;
    }
    c.close();
    assert.equal(statuses.at(-1), 429, statuses.join(","));
    assert.ok(statuses.filter((s) => s === 200).length >= 20);
    assert.deepEqual((await inst.status()).workers.map((w) => w.restarts), [0]);
  });
});

Deno.test("IRC over WebSocket: unmasked, oversized and non-UTF-8 frames close that socket only; pings are answered", async () => {
  const httpPort = freePorts(1);
  const ircPort = freePorts(1);
  const dataDir = Deno.makeTempDirSync({ prefix: "osps-http-ws-" });
  try {
    await withInstance({
      workers: 1,
      flags: [`--http-port=${httpPort}`, `--irc-port=${ircPort}`, `--data-dir=${dataDir}`],
    }, async (inst) => {
      const upgrade = "GET /v1/irc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
        "Sec-WebSocket-Protocol: text.ircv3.net\r\n\r\n";
      const open = async () => {
        const c = await RawHttp.connect(httpPort);
        await c.send(upgrade);
        const a = await c.answer();
        assert.equal(a.status, 101, a.head);
        assert.match(a.head, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
        assert.match(a.head, /sec-websocket-protocol: text.ircv3.net/i);
        return c;
      };
      const masked = (op: number, payload: Uint8Array, fin = true) => {
        const len = payload.length;
        const head = len < 126 ? [len | 0x80] : [126 | 0x80, len >> 8, len & 0xff];
        const mask = [1, 2, 3, 4];
        return new Uint8Array([
          (fin ? 0x80 : 0) | op,
          ...head,
          ...mask,
          ...payload.map((b, i) => b ^ mask[i & 3]!),
        ]);
      };
      const closeCode = async (c: RawHttp) => {
        const buf = new Uint8Array(256);
        for (let i = 0; i < 20; i++) {
          const n = await c.conn.read(buf).catch(() => null);
          if (n === null) return -1;
          for (let k = 0; k + 3 < n; k++) if (buf[k] === 0x88) return (buf[k + 2]! << 8) | buf[k + 3]!;
        }
        return 0;
      };
      const pinged = await open();
      await pinged.send(masked(0x9, new TextEncoder().encode("are you there")));
      const pong = new Uint8Array(64);
      const n = await pinged.conn.read(pong);
      assert.equal(pong[0], 0x8a, "a pong");
      assert.equal(new TextDecoder().decode(pong.subarray(2, n!)), "are you there");
      pinged.close();

      const unmasked = await open();
      await unmasked.send(new Uint8Array([0x81, 0x04, 0x4e, 0x49, 0x43, 0x4b]));
      assert.equal(await closeCode(unmasked), 1002);
      const big = await open();
      await big.send(masked(0x1, new Uint8Array(20_000).fill(0x41)));
      assert.equal(await closeCode(big), 1009);
      const latin = await open();
      await latin.send(masked(0x1, new Uint8Array([0xff, 0xfe, 0x41])));
      assert.equal(await closeCode(latin), 1007);
      const plain = await exchange(httpPort, req("/v1/irc"));
      assert.equal(plain.status, 426, "not an upgrade: told to upgrade");
      const foreign = await exchange(
        httpPort,
        upgrade.replace("\r\n\r\n", "\r\nOrigin: http://evil.example\r\n\r\n"),
      );
      assert.equal(foreign.status, 403, "a page of another origin may not open it");
      assert.deepEqual((await inst.status()).workers.map((w) => w.restarts), [0]);
    });
  } finally {
    Deno.removeSync(dataDir, { recursive: true });
  }
});

/** A hostile input: mutations of a valid request, framing tricks, or noise. */
function hostile(rand: () => number): Uint8Array {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const valid = pick([
    req("/v1/requests/echo", ["Content-Type: text/plain"], "hello"),
    req("/v1/requests/upper?arg=x"),
    req("/v1/channels"),
    req("/v1/openapi.json"),
    req("/v1/requests/echo", ["Content-Type: application/json"], '{"arg":"é"}'),
    "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  ]);
  const enc = new TextEncoder();
  const bytes = enc.encode(valid);
  switch (Math.floor(rand() * 10)) {
    case 0: // noise
      return crypto.getRandomValues(new Uint8Array(1 + Math.floor(rand() * 3000)));
    case 1: { // a byte flipped
      const b = bytes.slice();
      b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      return b;
    }
    case 2: // cut short
      return bytes.slice(0, Math.floor(rand() * bytes.length));
    case 3: // a huge header or target
      return enc.encode(
        valid.replace("Host: x", `Host: x\r\nX-${"h".repeat(rand() * 40)}: ${"v".repeat(rand() * 5000)}`),
      );
    case 4: // chunk-size tricks
      return enc.encode(
        "POST /v1/requests/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
          pick([
            "-1",
            "0x5",
            "5 5",
            "ffffffffffffffffffff",
            "5;" + "e".repeat(2000),
            "\r\n",
            "5\r\nhelloXX",
          ]) +
          "\r\nhello\r\n0\r\n\r\n",
      );
    case 5: // pipelined, garbage between
      return enc.encode(valid + pick(["\r\n", "garbage\r\n\r\n", "", "\x00"]) + valid);
    case 6: // line endings and whitespace played with
      return enc.encode(valid.replace(/\r\n/g, pick(["\n", "\r", "\r\r\n", " \r\n", "\r\n "])));
    case 7: // lengths lied about
      return enc.encode(
        valid.replace(
          /Content-Length: \d+/,
          `Content-Length: ${pick(["-5", "99999999999999999", "2", "1e3", " 5", "5, 5"])}`,
        ),
      );
    case 8: // upgrade tricks
      return enc.encode(
        `GET /v1/irc HTTP/1.1\r\nHost: x\r\nUpgrade: ${
          pick(["websocket", "h2c", "WebSocket"])
        }\r\nConnection: ${pick(["Upgrade", "keep-alive", "close, upgrade"])}\r\nSec-WebSocket-Key: ${
          pick(["short", "dGhlIHNhbXBsZSBub25jZQ==", ""])
        }\r\nSec-WebSocket-Version: ${pick(["13", "8", "x"])}\r\n\r\n`,
      );
    default: // methods and targets
      return enc.encode(
        `${pick(["GET", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT", "BREW", "get"])} ${
          pick([
            "/",
            "*",
            "http://x/v1/requests/time",
            "/v1/requests/%zz",
            "/v1/channels/%23a%00b",
            "//",
            "/v1/requests/echo?arg=%ff",
          ])
        } HTTP/1.${pick(["0", "1", "9"])}\r\nHost: x\r\n\r\n`,
      );
  }
}

Deno.test(`hostile HTTP fuzz (seed ${SEED}): thousands of inputs, an honest client served throughout, no role restarted`, async () => {
  const httpPort = freePorts(1);
  await withInstance({ workers: 2, flags: [`--http-port=${httpPort}`, ...LIMITS] }, async (inst) => {
    const before = await pids(inst);
    const rand = xorshift(SEED);
    const inputs = Array.from({ length: 2000 }, () => hostile(rand));
    const statuses = new Map<number, number>();
    let honestOk = 0, honestFailed = 0;
    let stop = false;
    const honest = (async () => {
      while (!stop) {
        const res = await fetch(`http://127.0.0.1:${httpPort}/v1/requests/echo`, {
          method: "POST",
          body: "still here",
          headers: { "content-type": "text/plain" },
        }).catch(() => null);
        if (res?.status === 200 && (await res.text()) === "still here") honestOk++;
        else {
          honestFailed++;
          await res?.body?.cancel();
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    let next = 0;
    const lane = async () => {
      while (next < inputs.length) {
        const input = inputs[next++]!;
        const c = await RawHttp.connect(httpPort);
        // Sent in pieces, as a network would cut it; then a short wait for an answer, and the client is gone.
        const cut = Math.floor(rand() * input.length);
        await c.send(input.subarray(0, cut));
        await c.send(input.subarray(cut));
        const a = await c.answer(300);
        if (a.status) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
        c.close();
      }
    };
    await Promise.all(Array.from({ length: 8 }, lane));
    stop = true;
    await honest;
    const codes = [...statuses.keys()].sort();
    assert.ok(codes.every((c) => c >= 100 && c <= 599), `codes ${codes}`);
    assert.ok(!statuses.has(500), `no 500 for hostile input: ${JSON.stringify([...statuses])}`);
    assert.ok(statuses.get(400)! > 50, "most hostile inputs were answered 400");
    assert.equal(honestFailed, 0, `the honest client was served every time (${honestOk} times)`);
    assert.ok(honestOk > 10);
    assert.deepEqual(await pids(inst), before, "no role restarted");
    assert.doesNotMatch(inst.logs(), /uncaught|handler failed|request failed/i);
  });
});
