/**
 * The HTTP head parser (mod/http/http_head.ts) on its own: what it reads
 * from a head, and the status of each refusal.
 * @module
 */
import assert from "node:assert/strict";
import { HttpError, parseHead } from "../mod/http/http_head.ts";

const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const limits = { maxHeaders: 4 };

function refusal(head: string): { status: number; message: string } {
  try {
    parseHead(bytes(head), limits);
  } catch (err) {
    assert.ok(err instanceof HttpError, String(err));
    return { status: err.status, message: err.message };
  }
  assert.fail(`accepted ${JSON.stringify(head)}`);
}

Deno.test("parseHead reads the request line, fields with lower-case names, the body's length and keep-alive", () => {
  const h = parseHead(
    bytes(
      "POST /v1/requests/echo?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type:  text/plain \t\r\nCONTENT-LENGTH: 5",
    ),
    limits,
  );
  assert.equal(h.method, "POST");
  assert.equal(h.target, "/v1/requests/echo?x=1");
  assert.equal(h.minor, 1);
  assert.deepEqual(h.headers, [["host", "a"], ["content-type", "text/plain"], ["content-length", "5"]]);
  assert.equal(h.contentLength, 5);
  assert.equal(h.keepAlive, true);
  assert.equal(parseHead(bytes("GET / HTTP/1.1\r\nHost: a\r\nConnection: Close"), limits).keepAlive, false);
  assert.equal(parseHead(bytes("GET / HTTP/1.0"), limits).keepAlive, false);
  assert.equal(parseHead(bytes("GET / HTTP/1.0\r\nConnection: keep-alive"), limits).keepAlive, true);
  const up = parseHead(
    bytes("GET /v1/irc HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: WebSocket"),
    limits,
  );
  assert.equal(up.upgrade, "websocket");
  assert.equal(parseHead(bytes("GET http://h:1/p?q HTTP/1.1\r\nHost: h"), limits).target, "/p?q");
  assert.equal(
    parseHead(bytes("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked"), limits).contentLength,
    -1,
  );
});

Deno.test("parseHead keeps bytes 0x80-0xFF of a field value (obs-text) as one character each", () => {
  const value = "caf\xe9 \x80\x85\x9f\xff";
  const h = parseHead(bytes(`GET / HTTP/1.1\r\nHost: a\r\nX-Note: ${value}`), limits);
  assert.equal(h.headers[1]![1], value);
  // Such a value can go on into a Request's headers (a ByteString: every character at most U+00FF).
  assert.equal(new Headers(h.headers as [string, string][]).get("x-note"), value);
});

Deno.test("parseHead refuses malformed heads with the status each deserves", () => {
  const cases: Array<[string, number, RegExp]> = [
    ["", 400, /malformed request line/],
    ["GET  / HTTP/1.1\r\nHost: a", 400, /malformed request line/],
    ["GET /a\tb HTTP/1.1\r\nHost: a", 400, /malformed request line/],
    ["GET / HTTP/1.1 \r\nHost: a", 400, /malformed request line/],
    ["G(T / HTTP/1.1\r\nHost: a", 400, /malformed request line/],
    ["GET / HTTP/2.0\r\nHost: a", 505, /HTTP\/2\.0 is not supported/],
    ["GET /a#b HTTP/1.1\r\nHost: a", 400, /must be percent-encoded/],
    ["GET /\x01 HTTP/1.1\r\nHost: a", 400, /must be percent-encoded/],
    ["GET a/b HTTP/1.1\r\nHost: a", 400, /must be a path/],
    ["GET / HTTP/1.1", 400, /exactly one Host/],
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400, /exactly one Host/],
    ["GET / HTTP/1.1\r\nHost: a\r\n folded", 400, /folded header lines/],
    ["GET / HTTP/1.1\r\nHost : a", 400, /malformed header field "Host : a"/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b", 400, /control character in header X/],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\rb", 400, /control character in header X/],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +5", 400, /bad Content-Length/],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456", 400, /bad Content-Length/],
    [
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6",
      400,
      /conflicting Content-Length/,
    ],
    ["GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip", 501, /only chunked/],
    ["GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5", 400, /together/],
    ["GET / HTTP/1.1\r\nHost: a\r\nExpect: magic", 417, /Expect "magic"/],
    ["GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4", 431, /more than 4 header fields/],
    // Too many fields is the answer even when an earlier one is malformed.
    ["GET / HTTP/1.1\r\nHost: a\r\nA : 1\r\nB: 2\r\nC: 3\r\nD: 4", 431, /more than 4 header fields/],
  ];
  for (const [head, status, message] of cases) {
    const r = refusal(head);
    assert.equal(r.status, status, `${JSON.stringify(head)}: ${r.message}`);
    assert.match(r.message, message, JSON.stringify(head));
  }
});
