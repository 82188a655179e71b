/**
 * The PROXY protocol (v1 and v2) on the client ports: the parser on every
 * form the spec defines and on broken ones, the header read before the lines
 * over a real socket (its timeout, its end), then live instances behind a
 * proxy: one this test plays (it writes real v1 and v2 headers naming
 * clients of many addresses), and Debian's HAProxy. Limits, tickets and logs
 * see the client the proxy names; a header from anyone else is refused.
 */
import assert from "node:assert/strict";
import { ProtocolError } from "../mod/errors.ts";
import { formatIp, parseIp } from "../mod/net/ip_addr.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import {
  looksLikeProxyHeader,
  parseProxyFrom,
  PROXY_HEADER,
  PROXY_HEADER_MAX_BYTES,
  type ProxyHeader,
  scanProxyHeader,
  V2_SIGNATURE,
} from "../mod/net/proxy_protocol.ts";
import {
  checkGreeting,
  formatRun,
  parseAssign,
  parseReply,
  type Reply,
  Status,
} from "../mod/net/protocol.ts";
import { freePorts, mapTable, waitForLog, withInstance } from "./harness.ts";
import { startHaproxy } from "./support/haproxy.ts";

const enc = new TextEncoder();

/** A version 2 header: command (0 LOCAL, 1 PROXY), family/transport byte, address bytes, then `extra` (TLVs). */
function v2(command: number, fam: number, addresses: number[], extra: number[] = []): Uint8Array {
  const body = [...addresses, ...extra];
  return Uint8Array.of(...V2_SIGNATURE, 0x20 | command, fam, body.length >> 8, body.length & 0xff, ...body);
}

function ipBytes(text: string): number[] {
  return [...parseIp(text)!];
}

/** A v2 PROXY header for a TCP client `host:port` (IPv4 or IPv6), to 127.0.0.1/::1 port 2222. */
function v2Tcp(host: string, port: number): Uint8Array {
  const src = ipBytes(host);
  const dst = src.length === 4 ? [127, 0, 0, 1] : ipBytes("::1");
  return v2(1, src.length === 4 ? 0x11 : 0x21, [...src, ...dst, port >> 8, port & 0xff, 0x08, 0xae]);
}

function scanned(bytes: Uint8Array): { value: ProxyHeader; length: number } {
  const r = scanProxyHeader(bytes);
  assert.ok(r, "a complete header");
  return r;
}

function refused(bytes: Uint8Array, why: RegExp): void {
  assert.throws(() => scanProxyHeader(bytes), (err: unknown) => {
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.status, Status.BAD_REQUEST);
    assert.match(err.message, why);
    return true;
  });
}

Deno.test("PROXY v1: TCP4, TCP6 and UNKNOWN are read exactly; what follows the CRLF is left", () => {
  const line = enc.encode("PROXY TCP4 192.0.2.10 127.0.0.1 56324 2222\r\nHELLO OSPS/1\n");
  const r = scanned(line);
  assert.deepEqual(r.value, { version: 1, client: { host: "192.0.2.10", port: 56324 } });
  assert.equal(new TextDecoder().decode(line.subarray(r.length)), "HELLO OSPS/1\n");
  const six = scanned(enc.encode("PROXY TCP6 2001:DB8:0:0:0:0:0:5 ::1 65535 2222\r\n"));
  assert.deepEqual(six.value.client, { host: "2001:db8::5", port: 65535 });
  assert.deepEqual(scanned(enc.encode("PROXY UNKNOWN\r\n")).value, { version: 1, client: null });
  const worst = `PROXY UNKNOWN ${"ffff:".repeat(7)}ffff ${"ffff:".repeat(7)}ffff 65535 65535\r\n`;
  assert.equal(worst.length, 107);
  assert.deepEqual(scanned(enc.encode(worst)), { value: { version: 1, client: null }, length: 107 });
});

Deno.test("PROXY v1: anything that does not match exactly is refused", () => {
  for (
    const [line, why] of [
      ["PROXY TCP4 192.0.2.010 127.0.0.1 1 2\r\n", /expected "PROXY TCP4/], // a leading zero
      ["PROXY TCP4 192.0.2.1 127.0.0.1 01 2\r\n", /expected/],
      ["PROXY TCP4 192.0.2.1 127.0.0.1 65536 2\r\n", /expected/],
      ["PROXY TCP4 192.0.2.1  127.0.0.1 1 2\r\n", /expected/], // two spaces
      ["PROXY TCP4 ::1 ::1 1 2\r\n", /expected/], // the family dictates the format
      ["PROXY TCP4 192.0.2.1 127.0.0.1 1 2 extra\r\n", /expected/],
      ["PROXY UDP4 192.0.2.1 127.0.0.1 1 2\r\n", /unknown family "UDP4"/],
      ["PROXY TCP4 192.0.2.1 127.0.0.1 1 2\n", /must end with CRLF/], // a lone LF
      ["PROXY TCP4 192.0.2.1 127.0.0.1 1 2\u00e9\r\n", /US-ASCII/],
      [`PROXY UNKNOWN ${"x".repeat(100)}\r\n`, /no CRLF within 107 bytes/],
      ["HELLO OSPS/1\r\n", /expected a PROXY protocol header/],
      ["GET / HTTP/1.1\r\n", /expected a PROXY protocol header/],
    ] as const
  ) refused(enc.encode(line), why);
});

Deno.test("PROXY v2: IPv4, IPv6, UNIX, LOCAL and unspecified; TLVs are skipped", () => {
  const four = scanned(Uint8Array.of(...v2Tcp("198.51.100.7", 40000), 0x0a));
  assert.deepEqual(four, {
    value: { version: 2, client: { host: "198.51.100.7", port: 40000 } },
    length: 28,
  });
  assert.deepEqual(scanned(v2Tcp("2001:db8:1::42", 1)).value.client, { host: "2001:db8:1::42", port: 1 });
  const withTlv = v2(1, 0x11, [10, 1, 2, 3, 127, 0, 0, 1, 0, 80, 8, 174], [
    0x04,
    0,
    3,
    0,
    0,
    0,
    0x05,
    0,
    1,
    9,
  ]);
  assert.deepEqual(scanned(withTlv), {
    value: { version: 2, client: { host: "10.1.2.3", port: 80 } },
    length: 38,
  });
  const unix = scanned(v2(1, 0x31, new Array(216).fill(0x41)));
  assert.deepEqual(unix.value.client, { host: "unix", port: 0 });
  // LOCAL (a health check): the connection's own peer, whatever address block it carries.
  assert.deepEqual(scanned(v2(0, 0x00, [])).value.client, null);
  assert.deepEqual(scanned(v2(0, 0x11, [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2])).value.client, null);
  assert.deepEqual(scanned(v2(1, 0x00, [])).value.client, null, "unspecified family");
  assert.deepEqual(scanned(v2(1, 0x10, new Array(12).fill(1))).value.client, null, "unspecified transport");
});

Deno.test("PROXY v2: a header is read only once complete; broken, truncated and oversize ones are refused", () => {
  const whole = v2Tcp("203.0.113.1", 9);
  for (let n = 0; n < whole.length; n++) {
    assert.equal(scanProxyHeader(whole.subarray(0, n)), null, `${n} bytes`);
  }
  refused(Uint8Array.of(...V2_SIGNATURE.subarray(0, 6), 0x00), /neither version 1 nor version 2/);
  refused(Uint8Array.of(...V2_SIGNATURE, 0x11, 0x11, 0, 0), /version 1 is not 2/);
  refused(Uint8Array.of(...V2_SIGNATURE, 0x22, 0x11, 0, 0), /command 2 is neither LOCAL nor PROXY/);
  refused(Uint8Array.of(...V2_SIGNATURE, 0x21, 0x41, 0, 0), /address family 4/);
  refused(Uint8Array.of(...V2_SIGNATURE, 0x21, 0x13, 0, 0), /transport 3/);
  refused(v2(1, 0x21, new Array(12).fill(0)), /12 address bytes are too few for family 2/);
  const len = PROXY_HEADER_MAX_BYTES - 15; // one byte over
  refused(Uint8Array.of(...V2_SIGNATURE, 0x21, 0x11, len >> 8, len & 0xff), /more than the \d+ accepted/);
  refused(Uint8Array.of(...V2_SIGNATURE, 0x21, 0x11, 0xff, 0xff), /65551 bytes is more than/);
});

Deno.test("looksLikeProxyHeader spots either version from its first bytes; --proxy-from takes addresses and blocks", () => {
  assert.ok(looksLikeProxyHeader(enc.encode("PROXY TCP4 …")));
  assert.ok(looksLikeProxyHeader(V2_SIGNATURE.subarray(0, 5)));
  assert.ok(!looksLikeProxyHeader(enc.encode("PROXYISH\n")));
  assert.ok(!looksLikeProxyHeader(enc.encode("\r\n\r\nHELLO")));
  const trust = parseProxyFrom("127.0.0.1, 10.0.0.0/8 2001:db8::/32");
  assert.equal(trust.toString(), "127.0.0.1/32,10.0.0.0/8,2001:db8::/32");
  for (const yes of ["127.0.0.1", "10.200.3.4", "::ffff:10.0.0.1", "2001:db8:ffff::1"]) {
    assert.ok(trust.trusts(yes), yes);
  }
  for (const no of ["127.0.0.2", "11.0.0.1", "2001:db9::1", "::1", "not an address"]) {
    assert.ok(!trust.trusts(no), no);
  }
  assert.ok(!parseProxyFrom("").trusts("127.0.0.1"), "off by default");
  assert.throws(
    () => parseProxyFrom("10.0.0.0/33"),
    /--proxy-from takes addresses or CIDR blocks .*"10\.0\.0\.0\/33"/,
  );
  assert.throws(() => parseProxyFrom("localhost"), /"localhost"/);
  assert.equal(formatIp(parseIp("2001:0db8:0000:0000:0001:0000:0000:0001")!), "2001:db8::1:0:0:1");
  assert.equal(formatIp(parseIp("::ffff:192.0.2.1")!), "::ffff:c000:201");
  assert.equal(parseIp("1::2::3"), null);
  assert.equal(parseIp("1:2:3:4:5:6:7:8:9"), null);
});

/** A listener and a connected pair over loopback: the test writes on `client`, reads with `server`. */
async function pair(): Promise<{ client: Deno.TcpConn; server: LineConn; close(): void }> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: l.addr.port });
  const server = new LineConn(await l.accept(), { maxLineBytes: 128 });
  l.close();
  return {
    client,
    server,
    close: () => {
      client.close();
      server.close();
    },
  };
}

Deno.test("LineConn.readHeader: a header split in pieces, then lines; a slow header gets 408, a cut one 400", async () => {
  const p = await pair();
  try {
    const header = v2Tcp("192.0.2.44", 4444);
    const reading = p.server.readHeader(PROXY_HEADER, 5_000);
    for (const part of [header.subarray(0, 3), header.subarray(3, 20)]) {
      await p.client.write(part);
      await new Promise((r) => setTimeout(r, 30));
    }
    await p.client.write(Uint8Array.of(...header.subarray(20), ...enc.encode("HELLO OSPS/1\nQUIT\n")));
    assert.deepEqual((await reading).client, { host: "192.0.2.44", port: 4444 });
    assert.equal(await p.server.readLine(1_000), "HELLO OSPS/1");
    assert.equal(await p.server.readLine(1_000), "QUIT");
  } finally {
    p.close();
  }
  const slow = await pair();
  try {
    await slow.client.write(enc.encode("PROXY TCP4 192.0.2.1"));
    await assert.rejects(slow.server.readHeader(PROXY_HEADER, 300), (err: unknown) => {
      assert.ok(err instanceof ProtocolError && err.status === Status.TIMEOUT, String(err));
      assert.match(err.message, /no complete PROXY protocol header within 300 ms/);
      return true;
    });
  } finally {
    slow.close();
  }
  const cut = await pair();
  try {
    await cut.client.write(v2Tcp("192.0.2.1", 1).subarray(0, 20));
    await cut.client.closeWrite();
    await assert.rejects(
      cut.server.readHeader(PROXY_HEADER, 5_000),
      /the stream ended inside the PROXY protocol header/,
    );
  } finally {
    cut.close();
  }
});

/** Everything a server sends until it closes. */
async function drain(conn: LineConn): Promise<Reply[]> {
  const out: Reply[] = [];
  for (let line; (line = await conn.readLine(10_000)) !== null;) out.push(parseReply(line));
  return out;
}

/** Connects to `port` as a proxy would: the header first (if any), then `lines`. */
async function viaProxy(port: number, header: Uint8Array | string | null, lines = ""): Promise<LineConn> {
  const c = await LineConn.connect("127.0.0.1", port);
  const h = typeof header === "string" ? enc.encode(header) : header ?? new Uint8Array();
  await c.conn.write(Uint8Array.of(...h, ...enc.encode(lines)));
  return c;
}

async function repliesVia(port: number, header: Uint8Array | string | null, lines = ""): Promise<Reply[]> {
  const c = await viaProxy(port, header, lines);
  try {
    return await drain(c);
  } finally {
    c.close();
  }
}

const codes = (rs: Reply[]) => rs.map((r) => r.code);

Deno.test("behind a proxy, limits, tickets and logs see the client the header names, on both roles", async () => {
  await withInstance({
    workers: 1,
    flags: [
      "--proxy-from=127.0.0.1", // every connection of this test comes from the "proxy"
      "--max-conns-per-addr=2",
      "--handshake-timeout-ms=1000",
      "--log-level=debug",
    ],
  }, async (inst) => {
    const worker = inst.port + 1;
    // No header from a trusted proxy: refused before any greeting, and told why.
    for (const port of [inst.port, worker]) {
      const r = await repliesVia(port, null, "HELLO OSPS/1\n");
      assert.deepEqual(codes(r), [Status.BAD_REQUEST], JSON.stringify(r));
      assert.match(r[0]!.text, /expected a PROXY protocol header \(v1 or v2\) first/);
    }
    // A header that never ends: the handshake timeout applies.
    assert.deepEqual(codes(await repliesVia(inst.port, "PROXY TCP4 192.0.2.1 ")), [Status.TIMEOUT]);
    // A LOCAL header (a health check) is the proxy itself: served as loopback.
    assert.deepEqual(codes(await repliesVia(inst.port, v2(0, 0, []), "HELLO OSPS/1\nQUIT\n")), [
      220,
      200,
      221,
    ]);

    // Per-address caps count the real clients: 192.0.2.10 holds two connections that spoke; a third is refused
    // naming it, while another client of the same proxy is served.
    const held = [
      await viaProxy(inst.port, "PROXY TCP4 192.0.2.10 127.0.0.1 1001 2222\r\n", "HELLO OSPS/1\n"),
      await viaProxy(inst.port, v2Tcp("192.0.2.10", 1002), "HELLO OSPS/1\n"),
    ];
    try {
      for (const h of held) {
        checkGreeting(parseReply((await h.readLine(5_000))!));
        assert.equal(parseReply((await h.readLine(5_000))!).code, 200);
      }
      const third = await repliesVia(
        inst.port,
        "PROXY TCP4 192.0.2.10 127.0.0.1 1003 2222\r\n",
        "HELLO OSPS/1\n",
      );
      assert.deepEqual(codes(third), [Status.TOO_MANY]);
      assert.match(third[0]!.text, /too many connections from 192\.0\.2\.10 \(2\)/);
      const other = await repliesVia(inst.port, v2Tcp("198.51.100.7", 7), "HELLO OSPS/1\nQUIT\n");
      assert.deepEqual(codes(other), [220, 200, 221]);
    } finally {
      for (const h of held) h.close();
    }

    // A whole request through the proxy: the ticket is bound to the real client, the worker serves it.
    const client = "2001:db8::5";
    const d = await viaProxy(inst.port, v2Tcp(client, 5555), "REQUEST echo\n");
    try {
      checkGreeting(parseReply((await d.readLine(5_000))!));
      const a = parseAssign(parseReply((await d.readLine(5_000))!));
      const seg = mapTable(inst);
      try {
        const entry = seg.slot(1).tickets.find((t) => t.holds(a.ticket))!; // the ticket's entry in the slot
        assert.equal(entry.text("client_addr"), `${client}:5555`, "the ticket records the real client");
      } finally {
        seg.close();
      }
      const run = await repliesVia(
        a.port,
        v2Tcp(client, 5556),
        formatRun(a.ticket, "echo", "via proxy") + "\n",
      );
      assert.deepEqual(run.map((r) => `${r.code} ${r.code === 200 ? r.text : ""}`), [
        "220 ",
        "200 via proxy",
      ]);
    } finally {
      d.close();
    }
    // A bad ticket at the worker is logged with the client's address, not the proxy's.
    const bad = await repliesVia(
      worker,
      "PROXY TCP4 203.0.113.9 127.0.0.1 4444 2223\r\n",
      formatRun("f".repeat(32), "echo", "x") + "\n",
    );
    assert.deepEqual(codes(bad), [220, Status.BAD_TICKET]);
    await waitForLog(inst, /refused 203\.0\.113\.9:4444: no ticket is pending/);
    const s = await inst.status();
    assert.deepEqual([s.dispatcher.restarts, s.workers[0]!.restarts], [0, 0]);
  });
});

Deno.test("through HAProxy (v1 to the dispatcher, v2 to the worker) the real client is seen; its header from anyone else is refused", async () => {
  const front = freePorts(2);
  let proxy: Awaited<ReturnType<typeof startHaproxy>> | undefined;
  await withInstance({ workers: 1, flags: ["--proxy-from=127.0.0.9"] }, async (inst) => {
    // The operator sees whom osps trusts to name clients, with the limits those clients are counted by.
    assert.equal((await inst.status()).limits["proxy-from"], "127.0.0.9/32");
    proxy = await startHaproxy([
      { listen: front, to: inst.port, version: 1 },
      { listen: front + 1, to: inst.port + 1, version: 2 },
    ], "127.0.0.9");
    if (typeof proxy === "string") {
      console.warn(`proxy_protocol_test: HAProxy part SKIPPED: ${proxy}`);
      return;
    }
    try {
      // A session through the proxy: the dispatcher binds the ticket to this client's own address and port.
      const d = await LineConn.connect("127.0.0.1", front);
      try {
        const mine = `127.0.0.1:${(d.conn.localAddr as Deno.NetAddr).port}`;
        checkGreeting(parseReply((await d.readLine(5_000))!));
        await d.writeLine("REQUEST upper");
        const a = parseAssign(parseReply((await d.readLine(5_000))!));
        assert.equal(a.port, inst.port + 1);
        const seg = mapTable(inst);
        try {
          const entry = seg.slot(1).tickets.find((t) => t.holds(a.ticket))!; // the ticket's entry in the slot
          assert.equal(entry.text("client_addr"), mine, "not HAProxy's 127.0.0.9");
        } finally {
          seg.close();
        }
        const w = await LineConn.connect("127.0.0.1", front + 1); // the worker, through the proxy (v2)
        try {
          await w.writeLine(formatRun(a.ticket, "upper", "through haproxy"));
          assert.deepEqual(
            (await drain(w)).map((r) => `${r.code} ${r.code === 200 ? r.text : ""}`),
            ["220 ", "200 THROUGH HAPROXY"],
          );
        } finally {
          w.close();
        }
      } finally {
        d.close();
      }
      // Directly, without a header, this address (not a trusted proxy) is served as always...
      const o = await inst.client(["--no-retry", "echo", "direct"]);
      assert.equal(o.stdout, "direct\n", o.stderr);
      // ...and a header of its own is refused, v1 or v2, on both roles: it cannot pose as someone else.
      for (const port of [inst.port, inst.port + 1]) {
        for (const header of ["PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n", v2Tcp("192.0.2.1", 1)]) {
          const r = await repliesVia(port, header, "HELLO OSPS/1\n");
          assert.deepEqual(codes(r), [220, Status.BAD_REQUEST], JSON.stringify(r));
          assert.match(r[1]!.text, /PROXY protocol header refused: this address is not a trusted proxy/);
        }
      }
      const s = await inst.status();
      assert.deepEqual([s.dispatcher.restarts, s.workers[0]!.restarts], [0, 0]);
    } finally {
      await proxy.stop();
    }
  });
});

Deno.test("silent connections from many addresses make room at the overall cap for a client that speaks", async () => {
  await withInstance({ workers: 1, flags: ["--proxy-from=127.0.0.1", "--max-conns=20"] }, async (inst) => {
    // Twenty clients the proxy names, remote ones and loopback aliases, that never send a line fill the cap.
    const silent: LineConn[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const who = i % 4 === 0 ? `127.0.0.${2 + (i % 5)}` : `198.18.${i}.1`;
        const c = await viaProxy(inst.port, `PROXY TCP4 ${who} 127.0.0.1 ${1000 + i} 2222\r\n`);
        checkGreeting(parseReply((await c.readLine(5_000))!));
        silent.push(c);
      }
      // A newcomer of yet another address that speaks is served; the oldest silent one made room.
      const r = await repliesVia(inst.port, v2Tcp("203.0.113.50", 50), "HELLO OSPS/1\nQUIT\n");
      assert.deepEqual(codes(r), [220, 200, 221]);
      const told = parseReply((await silent[0]!.readLine(5_000))!);
      assert.equal(told.code, Status.TIMEOUT);
      assert.match(told.text, /no complete line yet, and the server needed the room/);
      assert.equal(await silent[0]!.readLine(5_000), null);
    } finally {
      for (const c of silent) c.close();
    }
  });
});
