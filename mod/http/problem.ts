/**
 * Errors of the HTTP API as `application/problem+json` (RFC 9457), with the
 * texts the line protocol sends, and the one mapping from osps status codes
 * (docs/PROTOCOL.md) to HTTP statuses.
 * @module
 */
import { OspsError } from "../errors.ts";
import { Status } from "../net/protocol.ts";

/** The media type of every error body. */
export const PROBLEM_TYPE = "application/problem+json";

/** An error an API route answers with: its HTTP status, the text, and extra headers (Retry-After). */
export class ApiError extends OspsError {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  /** The osps status code behind it, when it came from the line protocol. */
  readonly code: number | undefined;
  constructor(
    status: number,
    message: string,
    o: { headers?: Record<string, string>; code?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: o.cause });
    this.status = status;
    this.headers = o.headers ?? {};
    this.code = o.code;
  }
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  417: "Expectation Failed",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** The body of a problem response. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  /** The osps status code of the line protocol, when the problem came from it. */
  readonly osps_code?: number;
}

/** A problem+json response. */
export function problemResponse(
  status: number,
  detail: string,
  o: { headers?: Record<string, string>; code?: number } = {},
): Response {
  const body: Problem = {
    type: "about:blank",
    title: TITLES[status] ?? "Error",
    status,
    detail,
    ...(o.code ? { osps_code: o.code } : {}),
  };
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": PROBLEM_TYPE, ...retryAfter(status, detail), ...o.headers },
  });
}

/** `Retry-After` for 429 and 503: the seconds the text names (a quarantine, a bad-ticket lockout), else 1. */
function retryAfter(status: number, detail: string): Record<string, string> {
  if (status !== 429 && status !== 503) return {};
  const s = /(?:for|in) (\d+) s\b/.exec(detail)?.[1];
  return { "retry-after": s ?? "1" };
}

/**
 * The HTTP status for an osps reply code and its text. 504 from the
 * dispatcher (the worker died holding the request) becomes 504 when the
 * request ran past its deadline, else 500: the worker died under it.
 */
export function httpStatusOf(code: number, text: string): number {
  switch (code) {
    case Status.BAD_REQUEST:
    case Status.UNKNOWN_TYPE:
    case Status.TIMEOUT:
    case Status.TOO_LONG:
    case Status.TOO_MANY:
    case Status.INTERNAL:
    case Status.BUSY:
      return code;
    case Status.WORKER_LOST:
      return /past its \d+ ms deadline/.test(text) ? 504 : /nothing ran/.test(text) ? 503 : 500;
    case Status.BAD_TICKET: // a ticket this server fetched itself was refused: the instance's fault
    case Status.BAD_VERSION:
      return 500;
  }
  return code >= 500 ? 500 : 400;
}
