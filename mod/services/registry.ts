/**
 * The service registry: every request type a worker serves, in one place.
 * Add a service here and every role knows it (the dispatcher validates types
 * against this table, the client's help lists it).
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { Status } from "../net/protocol.ts";
import { validNick } from "../chat/irc_message.ts";

/** What a service may know about the worker running it. */
export interface ServiceContext {
  readonly workerId: number;
  readonly pid: number;
  /** How long this worker process has run, ms. */
  readonly uptimeMs: number;
  readonly served: number;
}

/** One request type. */
export interface Service {
  /** Argument synopsis for help text. */
  readonly usage: string;
  /** One-line description. */
  readonly doc: string;
  /** Computes the one-line answer; throws {@link ProtocolError} 400 for a bad argument. */
  run(arg: string, ctx: ServiceContext): string | Promise<string>;
  /**
   * After the answer the connection is handed to the worker's session code
   * for this type (chat: it speaks IRC from then on), and the worker is free
   * for other requests at once: a long session does not hold one of its places.
   */
  readonly handover?: boolean;
  /**
   * Bounded work that never waits (linear in an argument the transports
   * already bound): the HTTP API runs it in the worker that received the
   * request instead of through a ticket, since it cannot block a worker,
   * outlive a deadline or be killed for it. It takes none of the worker's
   * `--worker-concurrency` places (it holds none across time) and is not
   * counted in its busy/N.
   */
  readonly inline?: boolean;
  /** No effect beyond the answer (nothing kept): may be repeated, and fetched with HTTP GET. */
  readonly safe?: boolean;
}

/** Longest `sleep` accepted, in ms. */
export const SLEEP_CAP_MS = 30_000;
/** Largest `fib` argument (fib(78) is the largest exact in a double). */
export const FIB_CAP = 78;
/** Most MiB one `hold` request keeps. */
export const HOLD_CAP_MB = 64;
/** Most MiB one worker process holds for `hold` requests in all. */
export const HOLD_TOTAL_MB = 256;

/** What `hold` keeps, for the life of this worker process. */
const held: Uint8Array[] = [];

/**
 * Allocates `mb` MiB and writes every page (so it is resident, not only
 * reserved), and keeps it: a leak on purpose, bounded per process.
 */
function hold(mb: number): string {
  const total = held.reduce((n, b) => n + b.length, 0) / 1048576;
  if (total + mb > HOLD_TOTAL_MB) {
    throw new ProtocolError(
      `this worker already holds ${total} MiB; hold stops at ${HOLD_TOTAL_MB} MiB per worker process`,
      Status.BAD_REQUEST,
    );
  }
  const block = new Uint8Array(mb * 1048576);
  for (let i = 0; i < block.length; i += 4096) block[i] = 1;
  held.push(block);
  return `holding ${total + mb} MiB`;
}

/** A number argument: 1 to 10 ASCII digits, nothing else (no sign, no spaces). */
function intArg(type: string, arg: string, max: number): number {
  if (!/^[0-9]{1,10}$/.test(arg)) {
    throw new ProtocolError(
      `${type} takes a whole number from 0 to ${max}, got ${JSON.stringify(arg.slice(0, 40))}`,
      Status.BAD_REQUEST,
    );
  }
  const n = Number(arg);
  if (n > max) {
    throw new ProtocolError(`${type} takes a whole number from 0 to ${max}, got ${n}`, Status.BAD_REQUEST);
  }
  return n;
}

function noArg(type: string, arg: string): void {
  if (arg !== "") throw new ProtocolError(`${type} takes no argument`, Status.BAD_REQUEST);
}

/** Naive on purpose: a large n blocks the event loop, the hang the watchdog must catch. */
function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

/** Every request type, by name. */
export const SERVICES: Readonly<Record<string, Service>> = {
  chat: {
    usage: "NICK",
    doc: "joins the chat as NICK (osps chat); the connection then speaks IRC",
    handover: true,
    run: (arg) => {
      if (!validNick(arg)) {
        throw new ProtocolError(
          `chat takes a nickname, got ${JSON.stringify(arg.slice(0, 40))}`,
          Status.BAD_REQUEST,
        );
      }
      return `chat ${arg}`;
    },
  },
  echo: { usage: "TEXT", doc: "answers TEXT unchanged", inline: true, safe: true, run: (arg) => arg },
  upper: {
    usage: "TEXT",
    doc: "answers TEXT in upper case",
    inline: true,
    safe: true,
    run: (arg) => arg.toUpperCase(),
  },
  time: {
    usage: "",
    inline: true,
    safe: true,
    doc: "answers the worker's clock (ISO 8601, UTC, milliseconds)",
    run: (arg) => {
      noArg("time", arg);
      return new Date().toISOString();
    },
  },
  sha256: {
    usage: "TEXT",
    inline: true,
    safe: true,
    doc: "answers the SHA-256 of TEXT (UTF-8), hex",
    run: async (arg) => {
      const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(arg));
      return Array.from(new Uint8Array(d), (b) => b.toString(16).padStart(2, "0")).join("");
    },
  },
  sleep: {
    usage: "MS",
    safe: true,
    doc: `waits MS milliseconds (0..${SLEEP_CAP_MS}) without blocking, answers "slept MS"`,
    run: async (arg) => {
      const ms = intArg("sleep", arg, SLEEP_CAP_MS);
      await new Promise((r) => setTimeout(r, ms));
      return `slept ${ms}`;
    },
  },
  fib: {
    usage: "N",
    safe: true,
    doc: `computes fib(N) naively (0..${FIB_CAP}); a large N blocks the worker`,
    run: (arg) => String(fib(intArg("fib", arg, FIB_CAP))),
  },
  hold: {
    usage: "MB",
    doc: `keeps MB MiB (0..${HOLD_CAP_MB}) allocated for the worker's life, at most ${HOLD_TOTAL_MB} MiB ` +
      "per worker: a leak on purpose, to watch --max-worker-rss-mb replace it",
    run: (arg) => hold(intArg("hold", arg, HOLD_CAP_MB)),
  },
  stats: {
    usage: "",
    inline: true,
    safe: true,
    doc: 'answers the worker\'s counters as JSON: {"worker":I,"pid":P,"served":N,"uptime_ms":MS}',
    run: (arg, ctx) => {
      noArg("stats", arg);
      return JSON.stringify({
        worker: ctx.workerId,
        pid: ctx.pid,
        served: ctx.served,
        uptime_ms: Math.round(ctx.uptimeMs),
      });
    },
  },
};

/** Names of all request types, sorted. */
export function serviceNames(): string[] {
  return Object.keys(SERVICES).sort();
}

/** Looks up a service; throws {@link ProtocolError} 404 naming the known types. */
export function lookupService(type: string): Service {
  const s = Object.hasOwn(SERVICES, type) ? SERVICES[type] : undefined;
  if (!s) {
    throw new ProtocolError(
      `unknown request type ${JSON.stringify(type)}; known: ${serviceNames().join(", ")}`,
      Status.UNKNOWN_TYPE,
    );
  }
  return s;
}
