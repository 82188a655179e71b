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
  writeTimeoutMs: 10_000,
} as const;

/** Largest message on a link's data channel, in bytes. */
export const MAX_LINK_MESSAGE = 64 * 1024;

/** A parsed server reply line. */
export interface Reply {
  readonly code: number;
  readonly text: string;
}

/**
 * Formats a reply line (without LF). In `text`, a backslash is sent as `\\`,
 * a CR as `\r` and a LF as `\n`, so one reply is always one line and
 * {@link unescapeText} gives the exact text back.
 */
export function formatReply(code: number, text: string): string {
  return `${code} ${escapeText(text)}`;
}

const ESCAPES: Record<string, string> = { "\\": "\\\\", "\r": "\\r", "\n": "\\n" };
const UNESCAPES: Record<string, string> = { "\\\\": "\\", "\\r": "\r", "\\n": "\n" };
const NEEDS_ESCAPE = /[\\\r\n]/;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/**
 * Escapes backslash, CR and LF (see {@link formatReply}). On the bytes: a
 * string replace that calls back for each of 64 Ki CRs took tens of ms of a
 * worker's event loop for one echoed line; a pass over the UTF-8 takes a
 * fraction of a ms, as an ordinary line does.
 */
export function escapeText(text: string): string {
  if (!NEEDS_ESCAPE.test(text)) return text;
  if (!text.isWellFormed()) return text.replace(/[\\\r\n]/g, (c) => ESCAPES[c]!); // lone surrogates: not UTF-8
  const raw = utf8.encode(text);
  const out = new Uint8Array(raw.length * 2);
  let j = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === 0x5c || c === 0x0d || c === 0x0a) {
      out[j++] = 0x5c;
      out[j++] = c === 0x5c ? 0x5c : c === 0x0d ? 0x72 : 0x6e;
    } else out[j++] = c;
  }
  return fromUtf8.decode(out.subarray(0, j));
}

/** Undoes {@link escapeText}; a backslash before any other character is kept as it is. */
export function unescapeText(text: string): string {
  return text.includes("\\") ? text.replace(/\\[\\rn]/g, (e) => UNESCAPES[e]!) : text;
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
  | { readonly verb: "OUTCOME"; readonly ticket: string }
  | { readonly verb: "HOSTS" }
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

function splitVerb(line: string): [string, string | undefined] {
  const sp = line.indexOf(" ");
  return sp < 0 ? [line, undefined] : [line.slice(0, sp), line.slice(sp + 1)];
}

/** The longest verb (`REQUEST`, `OUTCOME`): a longer word is no verb, and is not folded. */
const LONGEST_VERB = 7;

/**
 * A verb in upper case, folding ASCII letters only: `toUpperCase()` would
 * turn the dotless ı into I and the long ſ into S, so that `QUıT` meant QUIT.
 */
function verbOf(word: string): string {
  if (word.length > LONGEST_VERB || !LOWER.test(word)) return word;
  return word.replace(/[a-z]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 32));
}
const LOWER = /[a-z]/;

/**
 * The line without the SP and HTAB around it (only those: not every Unicode
 * space). By index, one pass from each end: a regular expression such as
 * `/^[ \t]+|[ \t]+$/g` retries its second branch at every blank of a run
 * that does not end the line, which is quadratic (a 64 KiB line of blanks
 * took seconds of a blocked event loop).
 */
export function trimBlanks(line: string): string {
  let start = 0, end = line.length;
  while (start < end && isBlank(line.charCodeAt(start))) start++;
  while (end > start && isBlank(line.charCodeAt(end - 1))) end--;
  return start === 0 && end === line.length ? line : line.slice(start, end);
}

function isBlank(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

function noArgument(verb: string, rest: string | undefined): void {
  if (rest !== undefined) throw new BadCommand(`${verb} takes no argument`, Status.BAD_REQUEST);
}

function checkType(type: string | undefined): string {
  if (type === undefined || !TYPE_PATTERN.test(type)) {
    throw new BadCommand(`bad request type ${JSON.stringify((type ?? "").slice(0, 40))}`, Status.BAD_REQUEST);
  }
  return type;
}

/**
 * Parses a client→dispatcher line. SP and HTAB around the line are ignored;
 * verbs are case-insensitive in ASCII; words are separated by one SP.
 */
export function parseDispatcherCommand(line: string): DispatcherCommand {
  const [verb, rest] = splitVerb(trimBlanks(line));
  switch (verbOf(verb)) {
    case "HELLO":
      // The version token is case-sensitive: "OSPS/1", as in every greeting.
      if (rest === undefined || !/^OSPS\/\d{1,4}$/.test(rest)) {
        throw new BadCommand("usage: HELLO OSPS/<version>", Status.BAD_REQUEST);
      }
      return { verb: "HELLO", version: rest };
    case "REQUEST":
      return { verb: "REQUEST", type: checkType(rest) };
    case "OUTCOME":
      if (rest === undefined || !TICKET_PATTERN.test(rest)) {
        throw new BadCommand("usage: OUTCOME <ticket>", Status.BAD_REQUEST);
      }
      return { verb: "OUTCOME", ticket: rest };
    case "HOSTS":
      noArgument("HOSTS", rest);
      return { verb: "HOSTS" };
    case "QUIT":
      noArgument("QUIT", rest);
      return { verb: "QUIT" };
    default:
      throw new BadCommand(
        `unknown command ${
          JSON.stringify(verb.slice(0, 40))
        }; expected HELLO, REQUEST, OUTCOME, HOSTS or QUIT`,
        Status.BAD_REQUEST,
      );
  }
}

/**
 * Parses a client→worker line: `RUN <ticket> <type>[ <arg>]`. Nothing is
 * trimmed: the argument is everything after the SP that follows the type,
 * passed to the service unchanged.
 */
export function parseRunCommand(line: string): RunCommand {
  const [verb, rest] = splitVerb(line);
  if (verbOf(verb) !== "RUN") {
    throw new BadCommand(
      `unknown command ${JSON.stringify(verb.slice(0, 40))}; expected RUN`,
      Status.BAD_REQUEST,
    );
  }
  const [ticket, afterTicket] = splitVerb(rest ?? "");
  if (!TICKET_PATTERN.test(ticket)) throw new BadCommand("malformed ticket", Status.BAD_TICKET);
  const [type, arg] = splitVerb(afterTicket ?? "");
  return { verb: "RUN", ticket, type: checkType(type), arg: arg ?? "" };
}

/** `200 HOSTS <host>…`: the hosts of the workers a dispatcher may assign (see PROTOCOL.md, HOSTS). */
export function formatHosts(hosts: readonly string[]): string {
  return formatReply(Status.OK, ["HOSTS", ...hosts].join(" "));
}

/** Parses the text of a HOSTS reply. */
export function parseHosts(reply: Reply): string[] {
  const [word, ...hosts] = reply.text.split(" ");
  if (reply.code !== Status.OK || word !== "HOSTS") {
    throw new ProtocolError(`malformed HOSTS ${JSON.stringify(reply.text)}`);
  }
  return hosts.filter((h) => h !== "");
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
