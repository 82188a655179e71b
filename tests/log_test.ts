/**
 * Log lines carry text from outside (a client's line, a peer's reason): in
 * every format it is escaped, so it can neither forge a line nor drive the
 * reader's terminal, and a huge value is cut.
 */
import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { escapeLogText, formatLogLine, LOG_VALUE_MAX_CHARS } from "../mod/log.ts";

const HOSTILE =
  "QUIT\n2026-01-01T00:00:00.000Z ERROR   watchdog[1] forged\r\x1b[31m\u009b2J\u202eevil\u2028\\x";
/** Characters that must never reach a log line raw. */
// deno-lint-ignore no-control-regex -- control characters are what it finds
const RAW = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

function record(peer: string): LogRecord {
  return {
    category: ["osps"],
    level: "warning",
    message: ["refused ", peer, ": ", { why: peer }],
    rawMessage: "refused {peer}: {why}",
    timestamp: Date.now(),
    properties: { peer, n: 3 },
  };
}

Deno.test("escapeLogText writes controls, separators and bidi overrides as escapes", () => {
  assert.equal(escapeLogText("plain text é 😀"), "plain text é 😀");
  assert.equal(
    escapeLogText(HOSTILE),
    "QUIT\\n2026-01-01T00:00:00.000Z ERROR   watchdog[1] forged\\r\\x1b[31m\\x9b2J\\u202eevil\\u2028\\\\x",
  );
  assert.equal(escapeLogText("a\tb\x00c\x7f"), "a\\tb\\x00c\\x7f");
  const long = escapeLogText("x".repeat(LOG_VALUE_MAX_CHARS + 5));
  assert.equal(long, `${"x".repeat(LOG_VALUE_MAX_CHARS)}…(5 more chars)`);
});

Deno.test("a hostile value stays inside one log line in the text and the JSON format", () => {
  for (const format of ["text", "json"] as const) {
    const line = formatLogLine(format, record(HOSTILE));
    assert.equal(line.indexOf("\n"), line.length - 1, `${format}: one line, LF-terminated: ${line}`);
    assert.doesNotMatch(line.slice(0, -1), RAW, `${format}: no raw control character`);
    if (format === "json") {
      const o = JSON.parse(line);
      assert.equal(o.peer, escapeLogText(HOSTILE));
      assert.equal(o.n, 3);
      assert.ok(String(o.msg).startsWith(`refused ${escapeLogText(HOSTILE)}: {`));
    } else {
      assert.match(line, /WARNING .*refused QUIT\\n2026.*forged\\r\\x1b\[31m\\x9b2J\\u202eevil/);
    }
  }
});

Deno.test("a huge value is cut in the log line, with the count of what was left out", () => {
  const line = formatLogLine("text", record("y".repeat(100_000)));
  assert.ok(line.length < 3 * LOG_VALUE_MAX_CHARS + 200, `line of ${line.length} chars`);
  assert.match(line, /…\(\d+ more chars\)/);
});
