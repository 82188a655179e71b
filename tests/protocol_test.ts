/**
 * Unit tests of the protocol module (parse/format) and of line framing over a
 * real loopback socket.
 */
import assert from "node:assert/strict";
import { ProtocolError } from "../mod/errors.ts";
import { LineBuffer } from "../mod/net/line_buffer.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import {
  BadCommand,
  checkGreeting,
  formatAssign,
  formatReply,
  formatRun,
  greeting,
  parseAssign,
  parseDispatcherCommand,
  parseReply,
  parseRunCommand,
  Status,
} from "../mod/net/protocol.ts";

const T = "0123456789abcdef0123456789abcdef";

function throwsStatus(fn: () => unknown, status: number, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, String(err));
    assert.equal(err.status, status, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

Deno.test("formatReply escapes line breaks so one reply is one line, and parseReply reads it back", () => {
  const line = formatReply(200, "a\nb\r\nc");
  assert.equal(line, "200 a\\nb\\r\\nc");
  assert.deepEqual(parseReply(line), { code: 200, text: "a\\nb\\r\\nc" });
  assert.deepEqual(parseReply("221"), { code: 221, text: "" });
});

Deno.test("parseReply refuses anything that is not a status line", () => {
  for (const bad of ["", "20 ok", "2000 ok", "600 no", "099 x", "abc", " 200 ok", "200ok"]) {
    throwsStatus(() => parseReply(bad), 0, /malformed reply/);
  }
});

Deno.test("greetings carry the version; a different version is a 505", () => {
  assert.equal(greeting("worker", "3"), "220 OSPS/1 worker 3");
  assert.equal(checkGreeting(parseReply(greeting("dispatcher"))), "dispatcher");
  throwsStatus(() => checkGreeting(parseReply("220 OSPS/2 dispatcher")), Status.BAD_VERSION, /OSPS\/2/);
  throwsStatus(() => checkGreeting(parseReply("429 too many")), 429, /expected greeting/);
});

Deno.test("parseDispatcherCommand: verbs are case-insensitive, types and versions are checked", () => {
  assert.deepEqual(parseDispatcherCommand("HELLO OSPS/1"), { verb: "HELLO", version: "OSPS/1" });
  assert.deepEqual(parseDispatcherCommand("  request echo "), { verb: "REQUEST", type: "echo" });
  assert.deepEqual(parseDispatcherCommand("quit"), { verb: "QUIT" });
  throwsStatus(() => parseDispatcherCommand("HELLO OSPS/12345"), 400, /usage/);
  throwsStatus(() => parseDispatcherCommand("REQUEST Echo"), 400, /bad request type/);
  throwsStatus(() => parseDispatcherCommand("REQUEST echo extra"), 400);
  throwsStatus(() => parseDispatcherCommand(`REQUEST ${"a".repeat(17)}`), 400);
  throwsStatus(() => parseDispatcherCommand("FROB"), 400, /unknown command "FROB"/);
  throwsStatus(() => parseDispatcherCommand(""), 400);
  assert.ok(
    (() => {
      try {
        parseDispatcherCommand("x".repeat(5000));
      } catch (err) {
        return err instanceof BadCommand && err.message.length < 200;
      }
    })(),
    "an echoed bad verb is truncated",
  );
});

Deno.test("parseRunCommand: ticket is 32 lower-case hex digits; the argument is kept verbatim", () => {
  assert.deepEqual(parseRunCommand(`RUN ${T} echo  two  spaces `), {
    verb: "RUN",
    ticket: T,
    type: "echo",
    arg: " two  spaces ",
  });
  assert.deepEqual(parseRunCommand(formatRun(T, "time", "")), {
    verb: "RUN",
    ticket: T,
    type: "time",
    arg: "",
  });
  throwsStatus(() => parseRunCommand(`RUN ${T.toUpperCase()} echo x`), 401, /malformed ticket/);
  throwsStatus(() => parseRunCommand(`RUN ${T}0 echo x`), 401);
  throwsStatus(() => parseRunCommand(`RUN ${T}`), 400, /bad request type/);
  throwsStatus(() => parseRunCommand(`REQUEST echo`), 400, /expected RUN/);
});

Deno.test("formatAssign and parseAssign round-trip; a damaged ASSIGN is refused", () => {
  const a = { host: "127.0.0.1", port: 2223, ticket: T };
  assert.deepEqual(parseAssign(parseReply(formatAssign(a))), a);
  throwsStatus(() => parseAssign(parseReply(`200 ASSIGN 127.0.0.1 2223 ${T.slice(1)}`)), 0);
  throwsStatus(() => parseAssign(parseReply(`503 ASSIGN 127.0.0.1 2223 ${T}`)), 0);
});

/** A connected pair over loopback: the test writes on `client`, reads with a LineConn on the server side. */
async function pair(maxLineBytes = 64): Promise<{ client: Deno.TcpConn; server: LineConn; close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port });
  const server = new LineConn(await listener.accept(), { maxLineBytes });
  listener.close();
  return {
    client,
    server,
    close: () => {
      server.close();
      client.close();
    },
  };
}

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("LineConn: LF and CRLF end lines, a lone CR is data, the last line needs no LF", async () => {
  const p = await pair();
  try {
    await p.client.write(bytes("one\r\ntwo\nthr\ree\r\rfour"));
    await p.client.closeWrite();
    assert.equal(await p.server.readLine(), "one");
    assert.equal(await p.server.readLine(), "two");
    assert.equal(await p.server.readLine(), "thr\ree\r\rfour");
    assert.equal(await p.server.readLine(), null);
  } finally {
    p.close();
  }
});

Deno.test("LineConn: a line split over many tiny writes is one line; pipelined lines come out in order", async () => {
  const p = await pair();
  try {
    for (const ch of "REQUEST echo\n") await p.client.write(bytes(ch));
    assert.equal(await p.server.readLine(1000), "REQUEST echo");
    await p.client.write(bytes("a\nb\nc\n"));
    assert.deepEqual([await p.server.readLine(), await p.server.readLine(), await p.server.readLine()], [
      "a",
      "b",
      "c",
    ]);
  } finally {
    p.close();
  }
});

Deno.test("LineConn: 413 past the limit (with or without LF), 400 for invalid UTF-8 or NUL, 408 on silence", async () => {
  const cases: Array<[Uint8Array, number]> = [
    [bytes("x".repeat(65) + "\n"), Status.TOO_LONG],
    [bytes("x".repeat(100)), Status.TOO_LONG],
    [new Uint8Array([0x61, 0xff, 0x0a]), Status.BAD_REQUEST],
    [new Uint8Array([0xed, 0xa0, 0x80, 0x0a]), Status.BAD_REQUEST], // a UTF-16 surrogate, not UTF-8
    [new Uint8Array([0x61, 0x00, 0x62, 0x0a]), Status.BAD_REQUEST],
    [bytes("no end in sight"), Status.TIMEOUT],
  ];
  for (const [input, status] of cases) {
    const p = await pair();
    try {
      await p.client.write(input);
      await assert.rejects(p.server.readLine(200), (err: unknown) => {
        assert.ok(err instanceof ProtocolError && err.status === status, `${input}: ${err}`);
        return true;
      });
    } finally {
      p.close();
    }
  }
  const exact = await pair();
  try {
    await exact.client.write(bytes("x".repeat(64) + "\r\n"));
    assert.equal(
      await exact.server.readLine(200),
      "x".repeat(64),
      "exactly the limit is fine, CR not counted",
    );
  } finally {
    exact.close();
  }
});

Deno.test("LineConn: writeLine reports a vanished peer instead of throwing", async () => {
  const p = await pair();
  p.client.close();
  let ok = true;
  for (let i = 0; i < 50 && ok; i++) ok = await p.server.writeLine("x".repeat(10_000));
  assert.equal(ok, false);
  p.server.close();
});

Deno.test("LineConn: the timeout covers the whole line, so a byte-at-a-time drip still gets 408", async () => {
  const p = await pair();
  let dripping = true;
  const drip = (async () => {
    while (dripping) {
      await p.client.write(bytes("x")).catch(() => (dripping = false));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    const started = Date.now();
    await assert.rejects(p.server.readLine(300), (err: unknown) => {
      assert.ok(err instanceof ProtocolError && err.status === Status.TIMEOUT, String(err));
      return true;
    });
    assert.ok(Date.now() - started < 5_000, "a drip does not extend the deadline");
  } finally {
    dripping = false;
    await drip;
    p.close();
  }
});

/** Feeds `text` to a LineBuffer in chunks of `chunk` bytes; returns the lines, or the status that ended it. */
function framed(text: string, max: number, chunk: number, ended = false): Array<string | number> {
  const lines = new LineBuffer(max);
  const bytes = new TextEncoder().encode(text);
  const out: Array<string | number> = [];
  try {
    for (let off = 0;;) {
      const line = lines.next(ended && off >= bytes.length);
      if (line === null) return out;
      if (line !== undefined) {
        out.push(line);
        continue;
      }
      if (off >= bytes.length) return out;
      const space = lines.space();
      const n = Math.min(space.length, chunk, bytes.length - off);
      space.set(bytes.subarray(off, off + n));
      lines.filled(n);
      off += n;
    }
  } catch (err) {
    assert.ok(err instanceof ProtocolError, String(err));
    return [...out, err.status];
  }
}

Deno.test("LineBuffer: 413 as soon as a line is known too long, not before (N bytes and a CR may still be a line)", () => {
  for (const chunk of [1, 3, 4096]) {
    assert.deepEqual(framed("x".repeat(9), 8, chunk), [413], `9 bytes, no CR, chunks of ${chunk}`);
    assert.deepEqual(framed("x".repeat(8) + "\r", 8, chunk), [], "8 bytes and a CR: wait for more");
    assert.deepEqual(framed("x".repeat(8) + "\r\n", 8, chunk), ["x".repeat(8)]);
    assert.deepEqual(framed("x".repeat(8) + "\r\r", 8, chunk), [413], "a CR that is not before the LF");
    assert.deepEqual(framed("ab\nx".repeat(50) + "\n", 8, chunk).length, 51, "pipelined lines, all read");
    assert.deepEqual(framed("x".repeat(8) + "\r", 8, chunk, true), [413], "at the end, the CR is data");
  }
});

Deno.test("LineBuffer: short and long lines, ASCII or not, decode alike; NUL and bad UTF-8 are 400 in either", () => {
  for (const len of [0, 1, 255, 256, 257, 1000]) {
    const ascii = "a".repeat(len);
    assert.deepEqual(framed(`${ascii}\n`, 4096, 4096), [ascii], `ASCII, ${len} bytes`);
    const mixed = `${"a".repeat(len)}é€𝄞 \\ \rz`;
    assert.deepEqual(framed(`${mixed}\n`, 4096, 7), [mixed], `not ASCII, ${len} + 11 bytes`);
    assert.deepEqual(framed(`${ascii}\0b\n`, 4096, 4096), [400], `NUL after ${len} bytes`);
  }
  for (const at of [0, 10, 300]) {
    const bad = new Uint8Array([...new TextEncoder().encode("a".repeat(at)), 0xc3, 0x28, 0x0a]);
    const lines = new LineBuffer(4096);
    lines.space().set(bad);
    lines.filled(bad.length);
    assert.throws(
      () => lines.next(false),
      (err: unknown) => err instanceof ProtocolError && err.status === 400,
    );
  }
});

Deno.test("LineConn: writeLine sends ASCII and non-ASCII lines as UTF-8 with one LF", async () => {
  const p = await pair(4096);
  try {
    const peer = new LineConn(p.client);
    for (
      const line of ["200 ASSIGN 127.0.0.1 1 ab", "", "ünïcødé ✓ 𝄞", "x".repeat(300), `${"y".repeat(300)}é`]
    ) {
      assert.ok(await p.server.writeLine(line));
      assert.equal(await peer.readLine(1000), line);
    }
  } finally {
    p.close();
  }
});
