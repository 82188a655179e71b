/**
 * The osps wire protocol: the one module every role uses to speak and parse.
 * `docs/PROTOCOL.md` specifies it; tests replay that document's examples
 * against these functions.
 *
 * Text lines ending in LF (a CR before it is dropped), UTF-8, at most
 * {@link Limits.maxLineBytes} bytes. Every server line starts with a 3-digit
 * status: 2xx success, 4xx the client's fault, 5xx the server's.
 * @module
 */
import { ProtocolError } from "../errors.ts";

/** Protocol major version; a greeting carries `OSPS/<version>`. */
export const PROTOCOL_VERSION = 1;
/** The version token in greetings and HELLO. */
export const VERSION_TOKEN = `OSPS/${PROTOCOL_VERSION}`;

/** Status codes, in the spirit of SMTP/FTP. */
export const Status = {
  /** Request result from a worker. */
  OK: 200,
  /** Dispatcher hands off: `200 ASSIGN <host> <port> <ticket>`. */
  ASSIGN: 200,
  /** Waiting in the dispatcher queue: `202 QUEUED <position>`. */
  QUEUED: 202,
  /** Greeting: `220 OSPS/1 <role> ...`. */
  READY: 220,
  /** Goodbye after QUIT. */
  BYE: 221,
  BAD_REQUEST: 400,
  BAD_TICKET: 401,
  UNKNOWN_TYPE: 404,
  TIMEOUT: 408,
  TOO_LONG: 413,
  TOO_MANY: 429,
  INTERNAL: 500,
  BUSY: 503,
  WORKER_LOST: 504,
  BAD_VERSION: 505,
} as const;

/** Default limits; every one is a flag of the role that enforces it. */
export const Limits = {
  maxLineBytes: 64 * 1024,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
} as const;

/** Doorbell bytes on the dispatcher↔worker FIFOs (not on the network). */
export const Doorbell = {
  /** First byte a writer sends after opening: "I am here". */
  HELLO: 0x68, // h
  /** dispatcher → worker: an assignment is in your slot ("ping"). */
  ASSIGN: 0x70, // p
  /** worker → dispatcher: assignment seen ("pong"). */
  ACK: 0x6f, // o
  /** worker → dispatcher: done, idle again. */
  DONE: 0x64, // d
  /** either way: end-to-end probe of the pipe pair; the worker echoes it. */
  PROBE: 0x6b, // k
} as const;

/** A parsed server reply line. */
export interface Reply {
  readonly code: number;
  readonly text: string;
}

/** Formats a reply line (without LF). Line breaks in `text` are escaped so one reply stays one line. */
export function formatReply(code: number, text: string): string {
  return `${code} ${text.replace(/\r/g, "\\r").replace(/\n/g, "\\n")}`;
}

/** Parses `NNN text`; throws {@link ProtocolError} on anything else. */
export function parseReply(line: string): Reply {
  const m = /^([1-5]\d\d)(?: (.*))?$/s.exec(line);
  if (!m) throw new ProtocolError(`malformed reply ${JSON.stringify(line.slice(0, 80))}`);
  return { code: Number(m[1]), text: m[2] ?? "" };
}

/** Greeting line a server sends on connect. */
export function greeting(role: "dispatcher" | "worker", detail = ""): string {
  return formatReply(Status.READY, `${VERSION_TOKEN} ${role}${detail ? ` ${detail}` : ""}`);
}

/** Checks a greeting; returns the role named in it. Throws on a version mismatch. */
export function checkGreeting(reply: Reply): string {
  if (reply.code !== Status.READY) {
    throw new ProtocolError(`expected greeting, got ${reply.code} ${reply.text}`, reply.code);
  }
  const [version, role = ""] = reply.text.split(" ");
  if (version !== VERSION_TOKEN) {
    throw new ProtocolError(
      `server speaks ${version ?? "?"}, this client speaks ${VERSION_TOKEN}`,
      Status.BAD_VERSION,
    );
  }
  return role;
}

/** Request types are short ASCII words. */
export const TYPE_PATTERN = /^[a-z][a-z0-9_-]{0,15}$/;
/** Tickets are 32 lower-case hex digits (128 bits). */
export const TICKET_PATTERN = /^[0-9a-f]{32}$/;

/** A command a client sends to the dispatcher. */
export type DispatcherCommand =
  | { readonly verb: "HELLO"; readonly version: string }
  | { readonly verb: "REQUEST"; readonly type: string }
  | { readonly verb: "QUIT" };

/** A command a client sends to a worker. */
export interface RunCommand {
  readonly verb: "RUN";
  readonly ticket: string;
  readonly type: string;
  readonly arg: string;
}

/** A client line the server rejects, with the status to answer. */
export class BadCommand extends ProtocolError {}

function splitVerb(line: string): [string, string] {
  const sp = line.indexOf(" ");
  return sp < 0 ? [line, ""] : [line.slice(0, sp), line.slice(sp + 1)];
}

function checkType(type: string): string {
  if (!TYPE_PATTERN.test(type)) {
    throw new BadCommand(`bad request type ${JSON.stringify(type.slice(0, 40))}`, Status.BAD_REQUEST);
  }
  return type;
}

/** Parses a client→dispatcher line. Verbs are case-insensitive. */
export function parseDispatcherCommand(line: string): DispatcherCommand {
  const [verb, rest] = splitVerb(line.trim());
  switch (verb.toUpperCase()) {
    case "HELLO":
      if (!/^OSPS\/\d{1,4}$/.test(rest)) {
        throw new BadCommand("usage: HELLO OSPS/<version>", Status.BAD_REQUEST);
      }
      return { verb: "HELLO", version: rest };
    case "REQUEST":
      return { verb: "REQUEST", type: checkType(rest) };
    case "QUIT":
      return { verb: "QUIT" };
    default:
      throw new BadCommand(
        `unknown command ${JSON.stringify(verb.slice(0, 40))}; expected HELLO, REQUEST or QUIT`,
        Status.BAD_REQUEST,
      );
  }
}

/** Parses a client→worker line: `RUN <ticket> <type> [arg]`. */
export function parseRunCommand(line: string): RunCommand {
  const [verb, rest] = splitVerb(line);
  if (verb.toUpperCase() !== "RUN") {
    throw new BadCommand(
      `unknown command ${JSON.stringify(verb.slice(0, 40))}; expected RUN`,
      Status.BAD_REQUEST,
    );
  }
  const [ticket, afterTicket] = splitVerb(rest);
  if (!TICKET_PATTERN.test(ticket)) throw new BadCommand("malformed ticket", Status.BAD_TICKET);
  const [type, arg] = splitVerb(afterTicket);
  return { verb: "RUN", ticket, type: checkType(type), arg };
}

/** A worker hand-off as the dispatcher sends it. */
export interface Assignment {
  readonly host: string;
  readonly port: number;
  readonly ticket: string;
}

/** `200 ASSIGN <host> <port> <ticket>` */
export function formatAssign(a: Assignment): string {
  return formatReply(Status.ASSIGN, `ASSIGN ${a.host} ${a.port} ${a.ticket}`);
}

/** Parses the text of an ASSIGN reply. */
export function parseAssign(reply: Reply): Assignment {
  const m = /^ASSIGN (\S+) (\d{1,5}) ([0-9a-f]{32})$/.exec(reply.text);
  if (reply.code !== Status.ASSIGN || !m) {
    throw new ProtocolError(`malformed ASSIGN ${JSON.stringify(reply.text)}`);
  }
  return { host: m[1]!, port: Number(m[2]), ticket: m[3]! };
}

/** Formats a RUN line. */
export function formatRun(ticket: string, type: string, arg: string): string {
  return arg ? `RUN ${ticket} ${type} ${arg}` : `RUN ${ticket} ${type}`;
}
