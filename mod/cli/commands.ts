/**
 * The command-line table: every subcommand, its flags, defaults and help, in
 * one place. Parsing, help text and the argv the watchdog builds for its
 * children (mod/cli/cli.ts) are all derived from it.
 * @module
 */
import {
  CHAT,
  DISPATCHER_HOST,
  type FlagSpec,
  HOST,
  HTTP,
  INSTANCE,
  LIMITS,
  LINK_PORT,
  LINK_TIMING,
  LOG,
  MAX_REQUESTS,
  OPERATIONS,
  POOL,
  PORT,
  PROBE,
  REMOTE_SLOTS,
  RUN_DIR,
  SELECT,
  SUPERVISION,
} from "./flags.ts";

/** One subcommand. */
export interface CommandSpec {
  readonly summary: string;
  readonly usage: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Accepts positionals (the client's TYPE ARG…). */
  readonly positionals?: boolean;
  /** Spawned by the watchdog, not usually typed by people. */
  readonly internal?: boolean;
}

/** Every subcommand of osps. */
export const COMMANDS: Readonly<Record<string, CommandSpec>> = {
  watchdog: {
    summary: "supervise a dispatcher and N workers (runs in the foreground)",
    usage: "osps watchdog [flags]",
    flags: {
      workers: {
        type: "int",
        default: 2,
        min: 0,
        max: 64,
        short: "n",
        doc: "number of workers on this host (0 only with --link-port: a dispatcher for remote workers)",
      },
      "worker-concurrency": {
        type: "int",
        default: 32,
        min: 1,
        max: 64,
        doc: "tickets one worker may hold at once, so clients it serves at once (1: one client per worker, " +
          "the seeds' model; with more, a request that blocks its worker or runs past its deadline takes " +
          "the others on that worker down with it, and each client is told which request did)",
      },
      host: HOST,
      port: { ...PORT, doc: "dispatcher port; workers use port+1 … port+N+1 (one spare for replacements)" },
      "run-dir": RUN_DIR,
      "link-port": LINK_PORT,
      join: {
        type: "string",
        default: "",
        doc: "run no dispatcher here: this host's workers attach to the dispatcher's link port ADDR:PORT",
      },
      "secret-file": {
        type: "string",
        default: "",
        doc:
          "file with the secret worker links authenticate with (mode 0600, ≥ 32 bytes; osps secret makes one)",
      },
      "remote-slots": REMOTE_SLOTS,
      ...LINK_TIMING,
      "heartbeat-ms": INSTANCE["heartbeat-ms"]!,
      "hang-timeout-ms": {
        type: "int",
        default: 3_000,
        min: 50,
        live: "now",
        doc: "no heartbeat for this long = hung: kill, restart",
      },
      "request-timeout-ms": {
        type: "int",
        default: 60_000,
        min: 10,
        live: "now",
        doc: "longest a single request may run",
      },
      "request-timeout-for": {
        type: "string",
        default: "",
        live: "now",
        doc: "deadlines of particular request types, overriding --request-timeout-ms: TYPE:MS[,TYPE:MS…]",
      },
      ...SUPERVISION,
      "max-worker-rss-mb": {
        type: "int",
        default: 0,
        min: 0,
        max: 1_048_576,
        live: "now",
        doc: "a worker resident over N MiB is replaced gracefully: a new one starts, the old one finishes " +
          "its requests and exits (0 = no limit)",
      },
      "warm-spare": {
        type: "boolean",
        default: false,
        doc: "keep the spare slot's worker running, ready but routed nothing: it takes a dead or replaced " +
          "worker's place at once (one more idle process)",
      },
      "exit-after": {
        type: "int",
        default: 0,
        min: 0,
        live: "now",
        doc: "stop cleanly after N requests served (0 = never)",
      },
      ...POOL,
      ...LIMITS,
      ...CHAT,
      ...HTTP,
      ...LOG,
      ...OPERATIONS,
    },
  },
  dispatcher: {
    summary: "accept clients and hand them to free workers (spawned by the watchdog)",
    usage: "osps dispatcher --shm NAME --run-dir DIR --workers N [flags]",
    internal: true,
    flags: {
      host: HOST,
      port: PORT,
      workers: {
        type: "int",
        default: 3,
        min: 0,
        max: 65,
        doc: "local worker slots (the watchdog's workers and its spare slot)",
      },
      "link-port": LINK_PORT,
      "remote-slots": REMOTE_SLOTS,
      ...LINK_TIMING,
      ...INSTANCE,
      ...PROBE,
      "probe-timeout-ms": {
        type: "int",
        default: 3_000,
        min: 10,
        doc: "a probe unanswered this long marks the worker's pipes wedged",
      },
      ...POOL,
      ...LIMITS,
      ...LOG,
    },
  },
  worker: {
    summary: "serve clients that hold a ticket (spawned by the watchdog)",
    usage: "osps worker --id I --port P --shm NAME --run-dir DIR [flags]",
    internal: true,
    flags: {
      id: { type: "int", min: 1, max: 65, default: 1, doc: "worker number (its shm slot)" },
      host: HOST,
      port: { type: "int", default: 2223, min: 1, max: 65535, doc: "TCP port for clients" },
      ...INSTANCE,
      "max-requests": { ...MAX_REQUESTS, doc: "retire (drain and exit 0) after N requests (0 = never)" },
      join: { type: "string", default: "", doc: "attach to the dispatcher's link port ADDR:PORT over TCP" },
      ...LINK_TIMING,
      "grace-ms": POOL["grace-ms"]!,
      ...LIMITS,
      ...CHAT,
      "chat-instance": {
        type: "string",
        default: "",
        doc: "HOSTNAME:PORT naming the instance in the chat store",
      },
      ...HTTP,
      "dispatcher-port": {
        type: "int",
        default: 0,
        min: 0,
        max: 65535,
        doc: "the instance's dispatcher port",
      },
      ...LOG,
    },
  },
  "chat-prepare": {
    summary: "make the chat's data dir and bring its store's schema up to date (run by the watchdog)",
    usage: "osps chat-prepare --host H --port P [chat flags]",
    internal: true,
    flags: { host: HOST, port: PORT, ...CHAT },
  },
  client: {
    summary: "send a request (or several, or read them from a prompt)",
    usage: "osps client [flags] [TYPE [ARG…]]",
    positionals: true,
    flags: {
      host: DISPATCHER_HOST,
      port: PORT,
      repeat: {
        type: "int",
        default: 1,
        min: 1,
        max: 1_000_000,
        doc: "send the request N times on one dispatcher connection",
      },
      json: { type: "boolean", default: false, doc: "print one JSON object per answer" },
      "no-retry": {
        type: "boolean",
        default: false,
        doc: "do not retry once when the dispatcher connection drops",
      },
      "timeout-ms": { type: "int", default: 30_000, min: 1, doc: "give up on an answer after this long" },
    },
  },
  chat: {
    summary: "chat: join channels with a nickname, through the dispatcher (IRC clients see you too)",
    usage: "osps chat [--host H] [--port P] --nick NICK [#channel…]",
    positionals: true,
    flags: {
      host: DISPATCHER_HOST,
      port: PORT,
      nick: { type: "string", default: "", doc: "your nickname (required)" },
      history: { type: "int", default: 20, min: 0, max: 100, doc: "messages of each channel shown on join" },
    },
  },
  hosts: {
    summary: "print the hosts of the workers a dispatcher may assign (run by client, chat and bench)",
    usage: "osps hosts [--host H] [--port P]",
    internal: true,
    flags: { host: DISPATCHER_HOST, port: PORT },
  },
  secret: {
    summary: "print a new random secret for --secret-file (osps secret > FILE; chmod 600 FILE)",
    usage: "osps secret > FILE",
    flags: {},
  },
  status: {
    summary: "show the instance's processes, read from shared memory",
    usage: "osps status [--run-dir DIR | --port P] [--json | --watch]",
    flags: {
      ...SELECT,
      watch: {
        type: "boolean",
        default: false,
        short: "w",
        doc: "redraw the table every second until Ctrl-C",
      },
    },
  },
  stop: {
    summary: "stop an instance gracefully and wait until it is gone",
    usage: "osps stop [--run-dir DIR | --port P]",
    flags: {
      "run-dir": RUN_DIR,
      port: SELECT.port!,
      "timeout-ms": { type: "int", default: 30_000, min: 1, doc: "give up waiting after this long (exit 1)" },
    },
  },
  reload: {
    summary: "replace every worker one by one with no request lost, re-reading the config file (as SIGHUP)",
    usage: "osps reload [--run-dir DIR | --port P]",
    flags: {
      "run-dir": RUN_DIR,
      port: SELECT.port!,
      "timeout-ms": {
        type: "int",
        default: 300_000,
        min: 1,
        doc: "give up waiting for the reload to finish after this long (exit 1; it goes on)",
      },
    },
  },
  bench: {
    summary: "load-generate against a running instance and report latency",
    usage: "osps bench [flags] [TYPE [ARG…]]   (default: echo bench)",
    positionals: true,
    flags: {
      host: DISPATCHER_HOST,
      port: PORT,
      clients: { type: "int", default: 8, min: 1, max: 4096, short: "c", doc: "concurrent clients" },
      duration: { type: "int", default: 5, min: 1, max: 86_400, doc: "seconds to run (unless --requests)" },
      requests: { type: "int", default: 0, min: 0, doc: "total requests to send (0 = use --duration)" },
      session: {
        type: "boolean",
        default: false,
        doc: "each client reuses one dispatcher connection (like client --repeat); default: one per request",
      },
      json: { type: "boolean", default: false, doc: "print the report as JSON" },
    },
  },
};
