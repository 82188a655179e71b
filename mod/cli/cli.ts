/**
 * The command-line table: every subcommand, its flags, defaults and help, in
 * one place. Parsing (`node:util` parseArgs), help text and the argv the
 * watchdog builds for its children are all derived from it.
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";
import { Limits } from "../net/protocol.ts";

/** One flag of a subcommand. */
export interface FlagSpec {
  readonly type: "string" | "int" | "boolean";
  readonly doc: string;
  readonly default?: string | number | boolean;
  readonly min?: number;
  readonly max?: number;
  readonly choices?: readonly string[];
  readonly short?: string;
  /**
   * What a reload (`osps reload`, SIGHUP: the config file re-read) does with a
   * changed value: `now` applies in the running watchdog at once, `respawn`
   * applies to every child started from then on (a reload replaces every
   * worker; the dispatcher keeps its value until it restarts). Without it, a
   * change needs a full restart and a reload only logs that it was not applied.
   */
  readonly live?: "now" | "respawn";
}

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

const LOG: Record<string, FlagSpec> = {
  "log-level": {
    type: "string",
    default: "info",
    choices: ["trace", "debug", "info", "warning", "error", "fatal"],
    live: "respawn",
    doc: "least severe level logged",
  },
  "log-format": {
    type: "string",
    default: "text",
    choices: ["text", "json"],
    live: "respawn",
    doc: "log line format (stderr, or --log-file)",
  },
};
const HOST: FlagSpec = { type: "string", default: "127.0.0.1", doc: "address to listen on / connect to" };
/** `--host` of the commands that talk to a dispatcher. */
const DISPATCHER_HOST: FlagSpec = {
  ...HOST,
  doc: "the dispatcher's address (name or IP); another host's is reached with permissions scoped to it",
};
const PORT: FlagSpec = { type: "int", default: 2222, min: 1, max: 65535, doc: "dispatcher TCP port" };
const RUN_DIR: FlagSpec = {
  type: "string",
  doc: "instance directory (default $XDG_RUNTIME_DIR/osps-<port>, else /tmp/osps-<uid>-<port>)",
};
const INSTANCE: Record<string, FlagSpec> = {
  "run-dir": { ...RUN_DIR, doc: "instance directory holding the FIFOs" },
  shm: { type: "string", doc: "shared-memory segment name" },
  instance: { type: "int", min: 0, doc: "instance id (checked against the segment)" },
  "parent-pid": { type: "int", min: 0, default: 0, doc: "exit if this process is not the parent" },
  "heartbeat-ms": { type: "int", default: 500, min: 10, max: 60_000, doc: "heartbeat interval" },
};
const LIMITS: Record<string, FlagSpec> = {
  "max-line-bytes": {
    type: "int",
    live: "respawn",
    default: Limits.maxLineBytes,
    min: 64,
    max: 16 << 20,
    doc: "longest request line accepted",
  },
  "handshake-timeout-ms": {
    type: "int",
    live: "respawn",
    default: Limits.handshakeTimeoutMs,
    min: 10,
    doc: "time a new connection has to send its first line",
  },
  "idle-timeout-ms": {
    type: "int",
    live: "respawn",
    default: Limits.idleTimeoutMs,
    min: 10,
    doc: "time a connection may stay silent",
  },
  "write-timeout-ms": {
    type: "int",
    live: "respawn",
    default: Limits.writeTimeoutMs,
    min: 0,
    doc: "time one answer may take to be taken by a client that does not read; then its connection is " +
      "closed (0 = no limit)",
  },
  "proxy-from": {
    type: "string",
    live: "respawn",
    default: "",
    doc: "addresses or CIDR blocks of proxies that send the PROXY protocol (v1 or v2) on the client ports " +
      "(comma-separated; they must, and nobody else may; empty: none)",
  },
  "max-conns": {
    type: "int",
    live: "respawn",
    default: 1024,
    min: 1,
    max: 1_000_000,
    doc: "connections open at once (beyond: the oldest that sent no line makes room, else 429)",
  },
  "max-conns-per-addr": {
    type: "int",
    live: "respawn",
    default: 256,
    min: 1,
    max: 1_000_000,
    doc:
      "connections open at once from one client address (beyond: its oldest that sent no line makes room, " +
      "else 429)",
  },
  "rate-per-addr": {
    type: "int",
    live: "respawn",
    default: 50_000,
    min: 0,
    doc: "connections + request lines per second from one address (0 = unlimited; 429 beyond); " +
      "the default is far above what a host serves, lower it for public addresses",
  },
  "rate-burst": {
    type: "int",
    live: "respawn",
    default: 50_000,
    min: 1,
    doc: "how many of those may come at once",
  },
  "bad-ticket-limit": {
    type: "int",
    live: "respawn",
    default: 20,
    min: 1,
    doc: "bad tickets one address may present per window before it gets 429",
  },
  "bad-ticket-window-ms": {
    type: "int",
    live: "respawn",
    default: 60_000,
    min: 10,
    doc: "window of --bad-ticket-limit",
  },
};
const POOL: Record<string, FlagSpec> = {
  "queue-size": {
    type: "int",
    default: 64,
    min: 0,
    max: 100_000,
    doc: "clients that may wait for a free worker",
  },
  "queue-timeout-ms": { type: "int", default: 30_000, min: 1, doc: "longest wait in the queue before 503" },
  "ticket-ttl-ms": {
    type: "int",
    default: 5_000,
    min: 10,
    max: 600_000,
    doc: "time a client has to present its ticket",
  },
  "grace-ms": {
    type: "int",
    default: 5_000,
    min: 0,
    live: "respawn",
    doc: "time in-flight sessions get to finish on stop",
  },
  "max-tickets-per-addr": {
    type: "int",
    default: 0,
    min: 0,
    max: 1024,
    doc: "tickets (unused or running) one network address may hold at once, at most; each address gets its " +
      "fair share of the workers anyway (0 = that share alone; loopback clients hold one unused ticket per " +
      "connection instead)",
  },
  "quarantine-kills": {
    type: "int",
    default: 3,
    min: 0,
    doc: "workers a request type may cost (killed by its requests) within the window before it is " +
      "refused for a while (0 = never)",
  },
  "quarantine-window-ms": { type: "int", default: 10_000, min: 100, doc: "window of --quarantine-kills" },
  "quarantine-ms": {
    type: "int",
    default: 30_000,
    min: 100,
    doc: "how long a quarantined request type is refused",
  },
};
const MAX_REQUESTS: FlagSpec = {
  type: "int",
  default: 0,
  live: "respawn",
  min: 0,
  doc: "recycle a worker after N requests, plus up to 10% random jitter (0 = never)",
};
const PROBE: Record<string, FlagSpec> = {
  "probe-ms": {
    type: "int",
    default: 1_000,
    min: 0,
    max: 600_000,
    doc: "end-to-end probe of each idle worker's FIFO pair every MS (0 = off)",
  },
};
const SUPERVISION: Record<string, FlagSpec> = {
  "max-requests": MAX_REQUESTS,
  ...PROBE,
  "restart-budget": {
    type: "int",
    default: 5,
    min: 1,
    live: "now",
    doc: "restarts one child may have within the window",
  },
  "pool-restart-budget": {
    type: "int",
    default: 0,
    min: 0,
    live: "now",
    doc: "restarts all workers together may have within the window (0 = 3 per worker)",
  },
  "restart-window-ms": {
    type: "int",
    default: 30_000,
    min: 100,
    live: "now",
    doc: "window of the restart budgets",
  },
  "failed-retry-ms": {
    type: "int",
    default: 30_000,
    min: 100,
    live: "now",
    doc: "a child failed over its budget or unable to boot is tried again after this long",
  },
};
const LINK_TIMING: Record<string, FlagSpec> = {
  "link-heartbeat-ms": {
    type: "int",
    default: 1_000,
    min: 10,
    max: 60_000,
    doc: "heartbeat interval of TCP worker links",
  },
  "link-timeout-ms": {
    type: "int",
    default: 5_000,
    min: 50,
    max: 600_000,
    doc: "a TCP worker link silent this long is lost: not routed to, its unused ticket dies",
  },
};
const LINK_PORT: FlagSpec = {
  type: "int",
  default: 0,
  min: 0,
  max: 65535,
  doc: "also accept workers of other hosts on --host:PORT over TCP (0 = off; needs --secret-file)",
};
const REMOTE_SLOTS: FlagSpec = {
  type: "int",
  default: 64,
  min: 1,
  max: 512,
  doc: "remote workers the dispatcher can hold (with --link-port)",
};
const OPERATIONS: Record<string, FlagSpec> = {
  config: {
    type: "string",
    doc: "read flags from a TOML or JSON file (same names as the flags; flags given here win)",
  },
  "metrics-port": {
    type: "int",
    default: 0,
    min: 0,
    max: 65535,
    doc: "serve /metrics, /healthz, /readyz and a status page on this port (0 = off)",
  },
  "metrics-host": { type: "string", default: "127.0.0.1", doc: "address of --metrics-port" },
  "log-file": {
    type: "string",
    default: "",
    doc: "write every role's log lines to this file (reopened on SIGUSR2) instead of stderr",
  },
};
/** The chat service (IRC in the workers); the watchdog passes them on to every worker. */
const CHAT: Record<string, FlagSpec> = {
  "irc-port": {
    type: "int",
    default: 0,
    min: 0,
    max: 65535,
    doc: "IRC port every worker serves on --host (SO_REUSEPORT: the kernel spreads clients; 0 = chat off)",
  },
  "data-dir": {
    type: "string",
    default: "",
    doc: "chat database directory, mode 0700 (default $XDG_STATE_HOME/osps, else ~/.local/state/osps)",
  },
  store: {
    type: "string",
    default: "sqlite",
    doc: "chat store: sqlite (a file in --data-dir) or postgres://user[:password]@host:port/db",
  },
  "chat-fsync": {
    type: "boolean",
    default: false,
    doc: "SQLite: fsync every commit (survives a power cut; default: survives a kill -9 of every process)",
  },
  "irc-password": {
    type: "string",
    default: "",
    doc: "password IRC clients must give with PASS (empty: none)",
  },
  "irc-server-name": { type: "string", default: "osps.local", doc: "name the IRC server gives itself" },
  "irc-motd": { type: "string", default: "", doc: "message of the day, lines separated by \\n (empty: 422)" },
  "irc-max-line-bytes": {
    type: "int",
    default: 512,
    min: 512,
    max: 8192,
    doc: "longest IRC line without tags, CR LF included (tags: up to 8191 more)",
  },
  "irc-sendq-bytes": {
    type: "int",
    default: 256 * 1024,
    min: 1024,
    max: 64 << 20,
    doc: "output queued for one IRC client before it is disconnected (a client that does not read)",
  },
  "irc-flood-burst": {
    type: "int",
    default: 20,
    min: 1,
    max: 100_000,
    doc: "lines an IRC client may send at once",
  },
  "irc-flood-rate": {
    type: "int",
    default: 5,
    min: 0,
    max: 1_000_000,
    doc: "lines per second after the burst; faster lines are delayed, not refused (0 = no flood control)",
  },
  "irc-register-timeout-ms": {
    type: "int",
    default: 30_000,
    min: 100,
    doc: "time an IRC connection has to register (NICK and USER)",
  },
  "irc-ping-ms": {
    type: "int",
    default: 120_000,
    min: 100,
    doc: "IRC silence after which the server sends PING",
  },
  "irc-ping-timeout-ms": {
    type: "int",
    default: 60_000,
    min: 100,
    doc: "time to answer that PING before the client is dropped",
  },
  "irc-max-clients": {
    type: "int",
    default: 20_000,
    min: 1,
    max: 1_000_000,
    doc: "IRC connections one worker holds at once (past it, the longest-idle one that never sent a line " +
      "is closed for a new one, else the new one is refused)",
  },
  "irc-max-clients-per-addr": {
    type: "int",
    default: 32,
    min: 1,
    max: 1_000_000,
    doc: "IRC connections one worker holds from one address (loopback is one address; IPv6: a /64)",
  },
  "chat-history-days": {
    type: "int",
    default: 0,
    min: 0,
    max: 100_000,
    doc: "chat events older than N days are removed (0 = kept)",
  },
  "chat-history-max": {
    type: "int",
    default: 0,
    min: 0,
    max: 1_000_000_000,
    doc: "at most N events are kept per channel, the oldest removed first (0 = no limit)",
  },
  "irc-register": {
    type: "string",
    default: "open",
    choices: ["open", "verify", "closed"],
    doc:
      "account registration: open (verified at once), verify (a code in the server log, for VERIFY), closed",
  },
  "irc-password-min": {
    type: "int",
    default: 8,
    min: 1,
    max: 300,
    doc: "shortest account password accepted",
  },
  "irc-auth-rate": {
    type: "int",
    default: 10,
    min: 0,
    max: 100_000,
    doc: "password attempts per minute per client address (SASL, IDENTIFY, REGISTER; 0 = no limit)",
  },
  "irc-nick-grace-ms": {
    type: "int",
    default: 30_000,
    min: 0,
    doc: "time to identify before a registered nickname held by someone else is renamed",
  },
};
/** The HTTP API (in the workers); the watchdog passes them on to every worker. */
const HTTP: Record<string, FlagSpec> = {
  "http-port": {
    type: "int",
    default: 0,
    min: 0,
    max: 65535,
    doc: "HTTP API every worker serves (SO_REUSEPORT: the kernel spreads clients): /v1 requests and chat, " +
      "the web chat page at /, IRC over WebSocket at /v1/irc (0 = off)",
  },
  "http-host": { type: "string", default: "", doc: "address of --http-port (default: --host)" },
  "http-cors-origin": {
    type: "string",
    default: "",
    doc: "origins browsers may call the API from, comma-separated, or * (default: none, CORS off)",
  },
  "http-max-header-bytes": {
    type: "int",
    default: 16_384,
    min: 1024,
    max: 1 << 20,
    doc: "request line and headers of one HTTP request (431 beyond)",
  },
  "http-max-body-bytes": {
    type: "int",
    default: Limits.maxLineBytes,
    min: 1024,
    max: 16 << 20,
    doc: "body of one HTTP request (413 beyond; never buffered past it)",
  },
};
const SELECT: Record<string, FlagSpec> = {
  "run-dir": RUN_DIR,
  port: { ...PORT, doc: "dispatcher port of the instance (finds the default run dir)" },
  json: { type: "boolean", default: false, doc: "print JSON" },
};

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

/** Values of parsed flags, keyed by flag name. */
export type FlagValues = Record<string, string | number | boolean | undefined>;

/** Result of {@link parseCommandLine}. */
export interface ParsedCommand {
  readonly command: string;
  readonly flags: FlagValues;
  /** Flags given on the command line (the others hold their defaults). */
  readonly given: ReadonlySet<string>;
  readonly positionals: string[];
  readonly help: boolean;
}

/** Parses `argv` (without the program name): first positional is the subcommand. */
export function parseCommandLine(argv: string[]): ParsedCommand {
  const [first, ...rest] = argv;
  if (first === undefined || first === "help" || first === "--help" || first === "-h") {
    const topic = first === "help" ? rest[0] : undefined;
    if (topic !== undefined && !Object.hasOwn(COMMANDS, topic)) {
      throw new UsageError(`unknown command "${topic}"`);
    }
    return { command: topic ?? "", flags: {}, given: new Set(), positionals: [], help: true };
  }
  const spec = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (!spec) {
    const near = nearest(first, Object.keys(COMMANDS));
    throw new UsageError(
      `unknown command "${first}"${near ? `; did you mean "${near}"?` : ""} (osps help lists them)`,
    );
  }
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = {
      type: f.type === "boolean" ? "boolean" : "string",
      ...(f.short ? { short: f.short } : {}),
    };
  }
  // For commands that take TYPE ARG…, everything from TYPE on is the request, even "-5".
  let args = rest, tail: string[] = [];
  if (spec.positionals) {
    const at = firstPositional(rest, spec);
    if (at >= 0) [args, tail] = [rest.slice(0, at), rest.slice(at)];
  }
  checkFlags(first, spec, args);
  let parsed;
  try {
    parsed = parseArgs({ args: joinValues(spec, args), options, allowPositionals: true, strict: true });
    parsed.positionals.push(...tail);
  } catch (err) {
    throw new UsageError(`${first}: ${(err as Error).message}; see "osps help ${first}"`, { cause: err });
  }
  if (!spec.positionals && parsed.positionals.length > 0) {
    throw new UsageError(`${first}: unexpected argument "${parsed.positionals[0]}"`);
  }
  const flags: FlagValues = {};
  const given = new Set<string>();
  for (const [name, f] of Object.entries(spec.flags)) {
    const raw = (parsed.values as Record<string, string | boolean | undefined>)[name];
    if (raw !== undefined) given.add(name);
    flags[name] = raw === undefined ? f.default : convert(first, name, f, raw);
  }
  return { command: first, flags, given, positionals: parsed.positionals, help: parsed.values.help === true };
}

/** Refuses unknown flags with the nearest known name, before parseArgs words it its own way. */
function checkFlags(command: string, spec: CommandSpec, args: string[]): void {
  const names = [...Object.keys(spec.flags), "help"];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (!a.startsWith("-") || a === "-") continue;
    const long = a.startsWith("--");
    const name = long ? a.slice(2).split("=")[0]! : a.slice(1, 2);
    const flag = long ? (name === "help" ? { type: "boolean" } : spec.flags[name]) : shortFlag(spec, name);
    if (!flag) {
      const near = nearest(name, names);
      throw new UsageError(
        `${command}: unknown flag ${long ? "--" : "-"}${name}${near ? `; did you mean --${near}?` : ""} ` +
          `(osps help ${command} lists every flag)`,
      );
    }
    if (flag.type !== "boolean" && !a.includes("=") && (!long ? a.length === 2 : true)) {
      if (i + 1 >= args.length) {
        throw new UsageError(`${command}: ${a} needs a value (see "osps help ${command}")`);
      }
      i++; // its value, even one that starts with "-"
    }
  }
}

function shortFlag(spec: CommandSpec, letter: string): FlagSpec | { type: "boolean" } | undefined {
  if (letter === "h") return { type: "boolean" };
  return Object.values(spec.flags).find((f) => f.short === letter);
}

/** `--flag value` → `--flag=value`, so that a value starting with "-" (say -5) is read as a value. */
function joinValues(spec: CommandSpec, args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    const long = a.startsWith("--") && !a.includes("=") ? spec.flags[a.slice(2)] : undefined;
    const short = /^-[a-zA-Z]$/.test(a) ? shortFlag(spec, a.slice(1)) : undefined;
    const f = long ?? short;
    if (f && f.type !== "boolean" && i + 1 < args.length) {
      const name = long ? a.slice(2) : Object.entries(spec.flags).find(([, x]) => x === short)![0];
      out.push(`--${name}=${args[++i]}`);
    } else out.push(a);
  }
  return out;
}

/** The candidate closest to `word` by edit distance, if close enough to be a likely typo. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function firstPositional(args: string[], spec: CommandSpec): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") return i + 1 < args.length ? i + 1 : -1;
    if (!a.startsWith("-") || a === "-") return i;
    if (a.includes("=")) continue;
    const name = a.startsWith("--")
      ? a.slice(2)
      : Object.entries(spec.flags).find(([, f]) => f.short === a.slice(1))?.[0];
    const flag = name === undefined ? undefined : spec.flags[name];
    if (flag && flag.type !== "boolean") i++; // its value
  }
  return -1;
}

/** Checks and converts one value of `command`'s flag `name` as given in a config file (same rules as argv). */
export function flagValue(
  command: string,
  name: string,
  raw: string | number | boolean,
): string | number | boolean {
  const f = COMMANDS[command]?.flags[name];
  if (!f) throw new UsageError(`${command}: unknown flag --${name}`);
  if (f.type === "boolean" && typeof raw !== "boolean") {
    throw new UsageError(`${command}: --${name} takes true or false, got ${JSON.stringify(raw)}`);
  }
  if (f.type !== "boolean" && typeof raw === "boolean") {
    throw new UsageError(
      `${command}: --${name} takes a ${f.type === "int" ? "whole number" : "string"}, got ${raw}`,
    );
  }
  return convert(command, name, f, typeof raw === "number" ? String(raw) : raw);
}

function convert(
  command: string,
  name: string,
  f: FlagSpec,
  raw: string | boolean,
): string | number | boolean {
  if (f.type === "boolean") return raw;
  const text = String(raw);
  if (f.type === "string") {
    if (f.choices && !f.choices.includes(text)) {
      throw new UsageError(`${command}: --${name} must be one of ${f.choices.join(", ")}, got "${text}"`);
    }
    return text;
  }
  if (!/^-?\d+$/.test(text)) {
    throw new UsageError(`${command}: --${name} takes a whole number, got "${text}"`);
  }
  const n = Number(text);
  if ((f.min !== undefined && n < f.min) || (f.max !== undefined && n > f.max)) {
    throw new UsageError(
      `${command}: --${name} must be between ${f.min ?? "-∞"} and ${f.max ?? "∞"}, got ${n}`,
    );
  }
  return n;
}

/** Builds the argv that reproduces `values` for `command` (the watchdog uses it for its children). */
export function toArgv(command: string, values: FlagValues): string[] {
  const spec = COMMANDS[command];
  if (!spec) throw new UsageError(`unknown command "${command}"`);
  const out = [command];
  for (const [name, f] of Object.entries(spec.flags)) {
    const v = values[name];
    if (v === undefined || v === f.default) continue;
    if (f.type === "boolean") {
      if (v) out.push(`--${name}`);
    } else out.push(`--${name}=${v}`);
  }
  return out;
}

/** Help text: the command list, or one command's flags. */
export function helpText(command = ""): string {
  const spec = command ? COMMANDS[command] : undefined;
  if (!spec) {
    const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
    const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)} ${c.summary}`);
    return [
      "osps — a supervised dispatcher/worker server",
      "",
      "Usage: osps <command> [flags]   (osps help <command> for its flags)",
      "",
      "Commands:",
      ...rows,
      "",
    ].join("\n");
  }
  const rows = Object.entries(spec.flags).map(([n, f]) => {
    const left = `${f.short ? `-${f.short}, ` : "    "}--${n}${
      f.type === "boolean" ? "" : f.type === "int" ? " N" : " VALUE"
    }`;
    const def = f.default !== undefined && f.default !== false && f.default !== ""
      ? ` (default ${f.default})`
      : "";
    const choices = f.choices ? ` [${f.choices.join("|")}]` : "";
    return `  ${left.padEnd(30)} ${f.doc}${choices}${def}`;
  });
  return [
    `Usage: ${spec.usage}`,
    "",
    spec.summary,
    "",
    "Flags:",
    ...rows,
    "  -h, --help".padEnd(32) + " show this help",
    "",
  ]
    .join("\n");
}
