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

function render(record: LogRecord): string {
  return record.message.map((
    part,
    i,
  ) => (i % 2 === 0 ? String(part) : typeof part === "string" ? part : JSON.stringify(part)))
    .join("");
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
    ...record.properties,
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
  const format = options.logFormat === "json" ? jsonLine : textLine;
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
