/**
 * Logging through `@logtape/logtape`: one line per event on stderr, tagged with
 * the role and pid, as text for people or JSON lines for machines. Children
 * inherit the watchdog's stderr, so every role's lines reach one stream.
 * (stdout is not used for logs: a child's stdout is its control channel.)
 *
 * Lines are written asynchronously through a bounded queue ({@link LineSink}):
 * a stderr nobody reads (a stopped pager, a full pipe) costs log lines, never
 * a role's heartbeat. Call {@link flushLogs} before exiting.
 * @module
 */
import {
  configureSync,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";

import { LineSink, type SinkTarget } from "./line_sink.ts";

let role = "osps";
const sink = new LineSink(Deno.stderr, {
  maxQueued: 2_000,
  droppedNotice: (n) =>
    `${
      new Date().toISOString()
    } WARNING ${role}[${Deno.pid}] ${n} log lines dropped: stderr is not being read fast enough\n`,
});

/** Longest value, in characters, one log line shows of a placeholder (the rest is counted, not shown). */
export const LOG_VALUE_MAX_CHARS = 2048;

/**
 * What makes text unsafe in a log line: the backslash (so escapes stay
 * unambiguous), C0 controls (a LF would forge a line, an ESC drive the
 * terminal), DEL, C1 controls (U+009B is a terminal's CSI), the Unicode line
 * and paragraph separators, and the bidirectional overrides and isolates
 * (which reorder what a reader sees).
 */
// deno-lint-ignore no-control-regex -- control characters are what it finds
const UNSAFE = /[\\\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
const UNSAFE_ALL = new RegExp(UNSAFE.source, "g");
const NAMED: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * Text from outside (a client's line, a peer's refusal reason) made safe for
 * one log line in every format: a backslash, C0 and C1 controls, DEL, the
 * Unicode line separators and the bidirectional controls are written as `\\`, `\n`, `\r`, `\t`, `\xNN` or `\uNNNN`; text past `maxChars`
 * is cut and the cut counted. One pass over the text (linear in its length).
 * Every placeholder value of every log line goes through it; call it yourself
 * only to build a value from several pieces.
 * @example
 * ```ts
 * escapeLogText("QUIT\nFAKE LINE"); // "QUIT\\nFAKE LINE"
 * ```
 */
export function escapeLogText(text: string, maxChars = LOG_VALUE_MAX_CHARS): string {
  const cut = text.length > maxChars ? text.slice(0, maxChars) : text;
  const safe = UNSAFE.test(cut) ? cut.replace(UNSAFE_ALL, escapeChar) : cut;
  return cut === text ? safe : `${safe}…(${text.length - maxChars} more chars)`;
}

function escapeChar(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const code = c.charCodeAt(0);
  return code < 0x100
    ? `\\x${code.toString(16).padStart(2, "0")}`
    : `\\u${code.toString(16).padStart(4, "0")}`;
}

/** A placeholder's value as log text: strings as they are, anything else as JSON, then escaped. */
function logValue(value: unknown): string {
  return escapeLogText(typeof value === "string" ? value : String(JSON.stringify(value)));
}

function render(record: LogRecord): string {
  return record.message.map((part, i) => (i % 2 === 0 ? String(part) : logValue(part))).join("");
}

/** The record's properties with every string escaped as in the text ({@link escapeLogText}). */
function safeProperties(props: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(props)) {
    out[k] = typeof v === "string" ? escapeLogText(v) : v === null || typeof v !== "object" ? v : logValue(v);
  }
  return out;
}

/**
 * One log line (LF-terminated) in `format`: every placeholder value escaped
 * with {@link escapeLogText}, in the message and, for JSON, in the properties.
 */
export function formatLogLine(format: "text" | "json", record: LogRecord): string {
  return format === "json" ? jsonLine(record) : textLine(record);
}

function textLine(record: LogRecord): string {
  const level = record.level.toUpperCase().padEnd(7);
  return `${new Date(record.timestamp).toISOString()} ${level} ${role}[${Deno.pid}] ${render(record)}\n`;
}

function jsonLine(record: LogRecord): string {
  return JSON.stringify({
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    role,
    pid: Deno.pid,
    msg: render(record),
    ...safeProperties(record.properties),
  }) + "\n";
}

/**
 * Sets up logging for this process. Call once, early, from the role's entry.
 * @example
 * ```ts
 * setupLogging("worker 1", { logLevel: "info", logFormat: "text" });
 * logger().info("listening on {port}", { port: 2223 });
 * ```
 */
export function setupLogging(
  roleName: string,
  options: { logLevel: string; logFormat: "text" | "json" },
): void {
  role = roleName;
  const format = options.logFormat === "json" ? jsonLine : textLine; // see formatLogLine
  resetSync();
  configureSync({
    sinks: {
      stderr: (record: LogRecord) => void sink.write(format(record)),
    },
    loggers: [
      { category: ["osps"], lowestLevel: options.logLevel as LogLevel, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/**
 * Sends every log line from now on to `target` (a log file; `Deno.stderr`
 * again). Resolves once the previous target has no write in progress, so the
 * caller may close it.
 */
export function logTo(target: SinkTarget): Promise<void> {
  return sink.retarget(target);
}

/** Queues lines another process formatted (a child's stderr relayed by the watchdog); false when dropped. */
export function relayLogLines(text: string): boolean {
  return sink.write(text);
}

/** Waits (at most `timeoutMs`) until every queued log line is written; call before exiting. */
export function flushLogs(timeoutMs = 1_000): Promise<void> {
  return sink.flush(timeoutMs);
}

/** The osps logger. */
export function logger(): Logger {
  return getLogger(["osps"]);
}
