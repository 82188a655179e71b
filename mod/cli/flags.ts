/**
 * Flags that several subcommands share, grouped by concern (logging, the
 * instance, limits, the pool, supervision, the link, operations, chat,
 * HTTP): each defined once, spread into the commands of mod/cli/commands.ts.
 * @module
 */
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

/** Logging: level and format, for every long-running role. */
export const LOG: Record<string, FlagSpec> = {
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
/** `--host` of the commands that listen. */
export const HOST: FlagSpec = {
  type: "string",
  default: "127.0.0.1",
  doc: "address to listen on / connect to",
};
/** `--host` of the commands that talk to a dispatcher. */
export const DISPATCHER_HOST: FlagSpec = {
  ...HOST,
  doc: "the dispatcher's address (name or IP); another host's is reached with permissions scoped to it",
};
/** The dispatcher's TCP port. */
export const PORT: FlagSpec = { type: "int", default: 2222, min: 1, max: 65535, doc: "dispatcher TCP port" };
/** Where an instance keeps its record, FIFOs and lock. */
export const RUN_DIR: FlagSpec = {
  type: "string",
  doc: "instance directory (default $XDG_RUNTIME_DIR/osps-<port>, else /tmp/osps-<uid>-<port>)",
};
/** What a spawned child is told of its instance: run dir, shm segment, instance id, parent, heartbeat. */
export const INSTANCE: Record<string, FlagSpec> = {
  "run-dir": { ...RUN_DIR, doc: "instance directory holding the FIFOs" },
  shm: { type: "string", doc: "shared-memory segment name" },
  instance: { type: "int", min: 0, doc: "instance id (checked against the segment)" },
  "parent-pid": { type: "int", min: 0, default: 0, doc: "exit if this process is not the parent" },
  "heartbeat-ms": { type: "int", default: 500, min: 10, max: 60_000, doc: "heartbeat interval" },
};
/** What one client may cost: line size, timeouts, connections, rates, bad tickets; trusted proxies. */
export const LIMITS: Record<string, FlagSpec> = {
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
/** The dispatcher's pool: the wait queue, tickets and their grace, per-address tickets, quarantine. */
export const POOL: Record<string, FlagSpec> = {
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
/** Recycling a worker after N requests. */
export const MAX_REQUESTS: FlagSpec = {
  type: "int",
  default: 0,
  live: "respawn",
  min: 0,
  doc: "recycle a worker after N requests, plus up to 10% random jitter (0 = never)",
};
/** The end-to-end probe of each idle worker's link. */
export const PROBE: Record<string, FlagSpec> = {
  "probe-ms": {
    type: "int",
    default: 1_000,
    min: 0,
    max: 600_000,
    doc: "end-to-end probe of each idle worker's FIFO pair every MS (0 = off)",
  },
};
/** The watchdog's restarts: recycling, budgets, their window, the retry of a failing child. */
export const SUPERVISION: Record<string, FlagSpec> = {
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
/** The TCP worker link's heartbeat and loss time. */
export const LINK_TIMING: Record<string, FlagSpec> = {
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
/** The dispatcher's port for workers of other hosts. */
export const LINK_PORT: FlagSpec = {
  type: "int",
  default: 0,
  min: 0,
  max: 65535,
  doc: "also accept workers of other hosts on --host:PORT over TCP (0 = off; needs --secret-file)",
};
/** How many workers of other hosts may attach at once. */
export const REMOTE_SLOTS: FlagSpec = {
  type: "int",
  default: 64,
  min: 1,
  max: 512,
  doc: "remote workers the dispatcher can hold (with --link-port)",
};
/** The config file, the metrics/health/status endpoint and the log file. */
export const OPERATIONS: Record<string, FlagSpec> = {
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
export const CHAT: Record<string, FlagSpec> = {
  "irc-port": {
    type: "int",
    default: 0,
    min: 0,
    max: 65535,
    doc: "IRC port every worker serves on --host (SO_REUSEPORT: the kernel spreads clients; 0 = chat off)",
  },
  "irc-io": {
    type: "string",
    default: "epoll",
    choices: ["epoll", "deno"],
    doc: "how workers drive IRC sockets: epoll (libc, synchronous writes) or deno (the runtime's async I/O)",
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
export const HTTP: Record<string, FlagSpec> = {
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
/** Which running instance a command (status, reload, stop) speaks to. */
export const SELECT: Record<string, FlagSpec> = {
  "run-dir": RUN_DIR,
  port: { ...PORT, doc: "dispatcher port of the instance (finds the default run dir)" },
  json: { type: "boolean", default: false, doc: "print JSON" },
};
