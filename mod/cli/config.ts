/**
 * Typed configuration of each role, built from parsed flags, and the paths of
 * an instance (run dir, FIFOs, lock, shm name), derived in one place.
 * @module
 */
import type { FlagValues } from "./cli.ts";
import { UsageError } from "../errors.ts";
import { getuid } from "../sys/libc.ts";
import type { AdmissionLimits } from "../net/admission.ts";
import { parseProxyFrom, type ProxyTrust } from "../net/proxy_protocol.ts";
import { serviceNames, SERVICES } from "../services/registry.ts";
import { type ChatConfig, chatConfig } from "../chat/chat_config.ts";
import { type HttpConfig, httpConfig } from "../http/http_config.ts";

/**
 * Local slots kept free beside the workers: a worker being replaced (reload,
 * `--max-worker-rss-mb`) hands over to a new process started in the spare
 * slot, on its own port and FIFO pair, so that capacity never drops and no
 * client is turned away; the old slot becomes the spare.
 */
export const SPARE_SLOTS = 1;

/** Local worker slots for `workers` workers: theirs and the spare (none without local workers). */
export function localSlots(workers: number): number {
  return workers > 0 ? workers + SPARE_SLOTS : 0;
}

/** Log settings shared by every role. */
export interface LogConfig {
  readonly logLevel: string;
  readonly logFormat: "text" | "json";
}

/** Protocol limits a server enforces. */
export interface LimitsConfig extends AdmissionLimits {
  readonly maxLineBytes: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Time one answer may take to be taken by the client's TCP (0 = no limit). */
  readonly writeTimeoutMs: number;
  /** Proxies that must send a PROXY protocol header (`--proxy-from`); none by default. */
  readonly proxyFrom: ProxyTrust;
}

/** Queueing and ticket settings of the pool. */
export interface PoolConfig {
  readonly queueSize: number;
  readonly queueTimeoutMs: number;
  readonly ticketTtlMs: number;
  readonly graceMs: number;
  /** Tickets (unused or running) one network address may hold at most, below its fair share (0: no more limit). */
  readonly maxTicketsPerAddr: number;
}

/** Heartbeats of TCP worker links. */
export interface LinkTimingConfig {
  readonly linkHeartbeatMs: number;
  readonly linkTimeoutMs: number;
}

/** A `host:port` address. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Quarantine of request types that keep killing workers. */
export interface QuarantineSettings {
  readonly quarantineKills: number;
  readonly quarantineWindowMs: number;
  readonly quarantineMs: number;
}

/** `osps watchdog`. */
export interface WatchdogConfig
  extends LogConfig, LimitsConfig, PoolConfig, QuarantineSettings, LinkTimingConfig {
  readonly workers: number;
  /** Tickets one worker may hold at once (the segment's ticket entries per slot). */
  readonly workerConcurrency: number;
  readonly host: string;
  readonly port: number;
  readonly runDir: string;
  readonly heartbeatMs: number;
  readonly hangTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Per request type deadlines (`--request-timeout-for`), overriding `requestTimeoutMs`. */
  readonly requestTimeoutFor: Readonly<Record<string, number>>;
  readonly exitAfter: number;
  /** A worker resident over this many MiB is replaced the graceful way (0 = no limit). */
  readonly maxWorkerRssMb: number;
  /** Keep the spare slot's worker running, ready to take a dead or replaced worker's place at once. */
  readonly warmSpare: boolean;
  /** Recycle a worker after this many requests (0 = never); each spawn adds up to 10% jitter. */
  readonly maxRequests: number;
  /** Interval of the dispatcher's FIFO probes (0 = off). */
  readonly probeMs: number;
  readonly restartBudget: number;
  /** Restarts of all workers together within the window. */
  readonly poolRestartBudget: number;
  readonly restartWindowMs: number;
  readonly failedRetryMs: number;
  /** True when `--max-conns` was given (a value that cannot fit is then an error, not lowered). */
  readonly maxConnsGiven: boolean;
  /** Port the dispatcher accepts remote workers on (0 = none). */
  readonly linkPort: number;
  /** Remote worker slots of the dispatcher (with `linkPort`). */
  readonly remoteSlots: number;
  /** Join mode: no dispatcher here; workers attach to this link address. */
  readonly join: Endpoint | null;
  /** The link secret's file ("" when no link is used). */
  readonly secretFile: string;
  /** Port of the operators' HTTP endpoint (metrics, health, status page); 0 = off. */
  readonly metricsPort: number;
  readonly metricsHost: string;
  /** Log file reopened on SIGUSR2; "" = stderr. */
  readonly logFile: string;
  /** The config file the values came from (re-read by a reload); "" = none. */
  readonly configFile: string;
  /** The command line this configuration was built from, so a reload can build it again with the file re-read. */
  readonly source: ConfigSource;
  /** The flag values it was built from (command line over config file over defaults). */
  readonly flags: FlagValues;
  /** The chat service (`chat.ircPort` 0: off). */
  readonly chat: ChatConfig;
  /** The HTTP API (`http.port` 0: off). */
  readonly http: HttpConfig;
}

/** Where a watchdog's configuration comes from: the command line (and the `--config` file it names). */
export interface ConfigSource {
  /** Parsed command-line flags (defaults filled in). */
  readonly flags: FlagValues;
  /** Flags given on the command line (they win over the file). */
  readonly given: ReadonlySet<string>;
}

/** What a child needs to find its instance. */
export interface ChildInstanceConfig extends LogConfig, LimitsConfig {
  readonly host: string;
  readonly port: number;
  readonly runDir: string;
  readonly shm: string;
  readonly instance: number;
  readonly parentPid: number;
  readonly heartbeatMs: number;
}

/** `osps dispatcher`. */
export interface DispatcherConfig
  extends ChildInstanceConfig, PoolConfig, QuarantineSettings, LinkTimingConfig {
  readonly workers: number;
  readonly linkPort: number;
  readonly remoteSlots: number;
  readonly probeMs: number;
  readonly probeTimeoutMs: number;
}

/** `osps worker`. */
export interface WorkerConfig extends ChildInstanceConfig, LinkTimingConfig {
  readonly id: number;
  /** Attach to this dispatcher link address over TCP instead of the local FIFOs. */
  readonly join: Endpoint | null;
  /** Time in-flight requests get to finish on stop. */
  readonly graceMs: number;
  /** Retire after this many requests (0 = never). */
  readonly maxRequests: number;
  /** The chat service (`chat.ircPort` 0: off). */
  readonly chat: ChatConfig;
  /** `HOSTNAME:PORT` naming the instance in the chat store. */
  readonly chatInstance: string;
  /** The HTTP API (`http.port` 0: off). */
  readonly http: HttpConfig;
  /** The instance's dispatcher port (the HTTP API sends ticketed types there). */
  readonly dispatcherPort: number;
}

/** `osps chat`. */
export interface ChatClientConfig {
  readonly host: string;
  readonly port: number;
  readonly nick: string;
  readonly history: number;
}

/** `osps client`. */
export interface ClientConfig {
  readonly host: string;
  readonly port: number;
  readonly repeat: number;
  readonly json: boolean;
  readonly retry: boolean;
  readonly timeoutMs: number;
}

const num = (v: FlagValues, k: string) => Number(v[k]);
const str = (v: FlagValues, k: string) => String(v[k] ?? "");

function logConfig(v: FlagValues): LogConfig {
  return { logLevel: str(v, "log-level"), logFormat: str(v, "log-format") === "json" ? "json" : "text" };
}

function limitsConfig(v: FlagValues): LimitsConfig {
  return {
    maxLineBytes: num(v, "max-line-bytes"),
    handshakeTimeoutMs: num(v, "handshake-timeout-ms"),
    idleTimeoutMs: num(v, "idle-timeout-ms"),
    writeTimeoutMs: num(v, "write-timeout-ms"),
    proxyFrom: parseProxyFrom(str(v, "proxy-from")),
    maxConns: num(v, "max-conns"),
    maxConnsPerAddr: num(v, "max-conns-per-addr"),
    ratePerSec: num(v, "rate-per-addr"),
    rateBurst: num(v, "rate-burst"),
    badTicketLimit: num(v, "bad-ticket-limit"),
    badTicketWindowMs: num(v, "bad-ticket-window-ms"),
  };
}

function poolConfig(v: FlagValues): PoolConfig {
  return {
    queueSize: num(v, "queue-size"),
    queueTimeoutMs: num(v, "queue-timeout-ms"),
    ticketTtlMs: num(v, "ticket-ttl-ms"),
    graceMs: num(v, "grace-ms"),
    maxTicketsPerAddr: num(v, "max-tickets-per-addr"),
  };
}

function linkTiming(v: FlagValues): LinkTimingConfig {
  const c = { linkHeartbeatMs: num(v, "link-heartbeat-ms"), linkTimeoutMs: num(v, "link-timeout-ms") };
  if (c.linkTimeoutMs <= c.linkHeartbeatMs) {
    throw new UsageError(
      `--link-timeout-ms (${c.linkTimeoutMs}) must exceed --link-heartbeat-ms (${c.linkHeartbeatMs})`,
    );
  }
  return c;
}

/** Parses `ADDR:PORT` (IPv6 as `[ADDR]:PORT`). */
export function parseEndpoint(flag: string, text: string): Endpoint {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) throw new UsageError(`--${flag} takes ADDR:PORT, got "${text}"`);
  return { host: m[1] ?? m[2]!, port };
}

function quarantineConfig(v: FlagValues): QuarantineSettings {
  return {
    quarantineKills: num(v, "quarantine-kills"),
    quarantineWindowMs: num(v, "quarantine-window-ms"),
    quarantineMs: num(v, "quarantine-ms"),
  };
}

/** The pool and quarantine flags' names and values, as passed on to the dispatcher and shown by `status`. */
export function poolFlags(c: PoolConfig & QuarantineSettings): Record<string, number> {
  return {
    "queue-size": c.queueSize,
    "queue-timeout-ms": c.queueTimeoutMs,
    "ticket-ttl-ms": c.ticketTtlMs,
    "max-tickets-per-addr": c.maxTicketsPerAddr,
    "quarantine-kills": c.quarantineKills,
    "quarantine-window-ms": c.quarantineWindowMs,
    "quarantine-ms": c.quarantineMs,
  };
}

/** The default run dir for a port: `$XDG_RUNTIME_DIR/osps-<port>`, else `/tmp/osps-<uid>-<port>`. */
export function defaultRunDir(port: number): string {
  let xdg: string | undefined;
  try {
    xdg = Deno.env.get("XDG_RUNTIME_DIR");
  } catch { /* no env permission: use /tmp */ }
  return xdg ? `${xdg.replace(/\/+$/, "")}/osps-${port}` : `/tmp/osps-${getuid()}-${port}`;
}

/** Resolves the run dir flag (absolute, no trailing slash) or the default for the port. */
export function resolveRunDir(v: FlagValues): string {
  const given = v["run-dir"];
  if (given === undefined || given === "") return defaultRunDir(num(v, "port"));
  const dir = String(given).replace(/\/+$/, "");
  if (!dir.startsWith("/")) {
    try {
      return `${Deno.cwd()}/${dir}`;
    } catch (err) {
      throw new UsageError(`--run-dir must be absolute, got "${dir}"`, { cause: err });
    }
  }
  return dir;
}

/** The limit flags' names and values, as passed on to children and shown by `status`. */
export function limitFlags(c: LimitsConfig): Record<string, number> {
  return {
    "max-line-bytes": c.maxLineBytes,
    "handshake-timeout-ms": c.handshakeTimeoutMs,
    "idle-timeout-ms": c.idleTimeoutMs,
    "write-timeout-ms": c.writeTimeoutMs,
    "max-conns": c.maxConns,
    "max-conns-per-addr": c.maxConnsPerAddr,
    "rate-per-addr": c.ratePerSec,
    "rate-burst": c.rateBurst,
    "bad-ticket-limit": c.badTicketLimit,
    "bad-ticket-window-ms": c.badTicketWindowMs,
  };
}

/** Parses `--request-timeout-for`: `TYPE:MS[,TYPE:MS…]`, e.g. `sleep:40000,fib:2000`. */
export function parseTimeoutsFor(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const m = /^([a-z][a-z0-9_-]{0,15}):(\d{1,9})$/.exec(item);
    if (!m || Number(m[2]) < 10) {
      throw new UsageError(`--request-timeout-for takes TYPE:MS[,TYPE:MS…] with MS ≥ 10, got "${item}"`);
    }
    if (!Object.hasOwn(SERVICES, m[1]!)) {
      throw new UsageError(
        `--request-timeout-for: unknown request type "${m[1]}"; known: ${serviceNames().join(", ")}`,
      );
    }
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

/**
 * Builds the watchdog's configuration from flag values `v` (`given`: the flags
 * given on the command line; `source`: the command line itself, when `v`
 * also holds values from a config file).
 */
export function watchdogConfig(
  v: FlagValues,
  given: ReadonlySet<string> = new Set(),
  source: ConfigSource = { flags: v, given },
): WatchdogConfig {
  const c: WatchdogConfig = {
    source,
    flags: v,
    maxConnsGiven: given.has("max-conns"),
    workers: num(v, "workers"),
    workerConcurrency: num(v, "worker-concurrency"),
    host: str(v, "host"),
    port: num(v, "port"),
    runDir: resolveRunDir(v),
    heartbeatMs: num(v, "heartbeat-ms"),
    hangTimeoutMs: num(v, "hang-timeout-ms"),
    requestTimeoutMs: num(v, "request-timeout-ms"),
    requestTimeoutFor: parseTimeoutsFor(str(v, "request-timeout-for")),
    exitAfter: num(v, "exit-after"),
    maxWorkerRssMb: num(v, "max-worker-rss-mb"),
    warmSpare: v["warm-spare"] === true,
    maxRequests: num(v, "max-requests"),
    probeMs: num(v, "probe-ms"),
    restartBudget: num(v, "restart-budget"),
    poolRestartBudget: num(v, "pool-restart-budget") || 3 * num(v, "workers"),
    restartWindowMs: num(v, "restart-window-ms"),
    failedRetryMs: num(v, "failed-retry-ms"),
    metricsPort: num(v, "metrics-port"),
    metricsHost: str(v, "metrics-host"),
    logFile: str(v, "log-file"),
    configFile: str(v, "config"),
    chat: chatConfig(v),
    http: httpConfig(v),
    ...poolConfig(v),
    ...quarantineConfig(v),
    ...limitsConfig(v),
    ...logConfig(v),
    ...linkTiming(v),
    linkPort: num(v, "link-port"),
    remoteSlots: num(v, "remote-slots"),
    join: str(v, "join") ? parseEndpoint("join", str(v, "join")) : null,
    secretFile: str(v, "secret-file"),
  };
  if (c.join && c.linkPort) {
    throw new UsageError(
      "--join and --link-port exclude each other: a host either runs the dispatcher or joins one",
    );
  }
  if ((c.join || c.linkPort) && !c.secretFile) {
    throw new UsageError(
      `--${c.join ? "join" : "link-port"} needs --secret-file (osps secret > FILE; chmod 600 FILE)`,
    );
  }
  if (c.warmSpare && (c.join || c.workers === 0)) {
    throw new UsageError(
      "--warm-spare needs local workers and the dispatcher on this host (a joined host's spare would be routed to)",
    );
  }
  if (c.workers === 0 && !c.linkPort) {
    throw new UsageError(
      "--workers 0 needs --link-port: a dispatcher with no local workers serves only remote ones",
    );
  }
  const last = c.port + localSlots(c.workers); // the workers' ports and the spare's
  if (c.linkPort && c.linkPort >= c.port && c.linkPort <= last) {
    throw new UsageError(
      `--link-port ${c.linkPort} collides with the dispatcher's or a worker's port (${c.port}…${last})`,
    );
  }
  if (last > 65535) {
    throw new UsageError(`--port ${c.port} leaves no room for ${c.workers} worker ports and the spare`);
  }
  if (c.metricsPort >= c.port && c.metricsPort <= last) {
    throw new UsageError(
      `--metrics-port ${c.metricsPort} is one of the instance's ports (${c.port}-${last})`,
    );
  }
  if (c.chat.ircPort > 0 && c.chat.ircPort >= c.port && c.chat.ircPort <= c.port + c.workers) {
    throw new UsageError(`--irc-port ${c.chat.ircPort} is one of the dispatcher's or workers' ports`);
  }
  if (c.http.port > 0 && c.http.port >= c.port && c.http.port <= last) {
    throw new UsageError(`--http-port ${c.http.port} is one of the instance's ports (${c.port}-${last})`);
  }
  if (c.http.port > 0 && (c.http.port === c.chat.ircPort || c.http.port === c.metricsPort)) {
    throw new UsageError(`--http-port ${c.http.port} is also --irc-port or --metrics-port`);
  }
  if (c.http.port > 0 && c.join) {
    throw new UsageError("--http-port needs the dispatcher on this host (not --join)");
  }
  if (c.hangTimeoutMs <= c.heartbeatMs) {
    throw new UsageError(
      `--hang-timeout-ms (${c.hangTimeoutMs}) must exceed --heartbeat-ms (${c.heartbeatMs})`,
    );
  }
  return c;
}

function childConfig(v: FlagValues): ChildInstanceConfig {
  if (!v["shm"] || !v["run-dir"]) {
    throw new UsageError("--shm and --run-dir are required (the watchdog passes them)");
  }
  return {
    host: str(v, "host"),
    port: num(v, "port"),
    runDir: resolveRunDir(v),
    shm: str(v, "shm"),
    instance: num(v, "instance"),
    parentPid: num(v, "parent-pid"),
    heartbeatMs: num(v, "heartbeat-ms"),
    ...limitsConfig(v),
    ...logConfig(v),
  };
}

/** Builds a dispatcher's configuration. */
export function dispatcherConfig(v: FlagValues): DispatcherConfig {
  return {
    ...childConfig(v),
    ...poolConfig(v),
    ...quarantineConfig(v),
    ...linkTiming(v),
    workers: num(v, "workers"),
    linkPort: num(v, "link-port"),
    remoteSlots: num(v, "remote-slots"),
    probeMs: num(v, "probe-ms"),
    probeTimeoutMs: num(v, "probe-timeout-ms"),
  };
}

/** Builds a worker's configuration. */
export function workerConfig(v: FlagValues): WorkerConfig {
  return {
    ...childConfig(v),
    ...linkTiming(v),
    id: num(v, "id"),
    maxRequests: num(v, "max-requests"),
    graceMs: num(v, "grace-ms"),
    join: str(v, "join") ? parseEndpoint("join", str(v, "join")) : null,
    chat: chatConfig(v),
    chatInstance: str(v, "chat-instance"),
    http: httpConfig(v),
    dispatcherPort: num(v, "dispatcher-port"),
  };
}

/** Builds `osps chat`'s configuration. */
export function chatClientConfig(v: FlagValues): ChatClientConfig {
  const nick = str(v, "nick");
  if (nick === "") throw new UsageError("chat: --nick is required");
  return { host: str(v, "host"), port: num(v, "port"), nick, history: num(v, "history") };
}

/** Builds the client's configuration. */
export function clientConfig(v: FlagValues): ClientConfig {
  return {
    host: str(v, "host"),
    port: num(v, "port"),
    repeat: num(v, "repeat"),
    json: v["json"] === true,
    retry: v["no-retry"] !== true,
    timeoutMs: num(v, "timeout-ms"),
  };
}

/** Every path and name of one instance, derived from its run dir. */
export interface InstancePaths {
  readonly runDir: string;
  /** flock(2)ed by the live watchdog. */
  readonly lock: string;
  /** JSON record of the instance (pid, start time, shm, FIFOs), written atomically. */
  readonly record: string;
  /** What the watchdog says that shared memory has no room for (the last reload's result), written atomically. */
  readonly notes: string;
  /** POSIX shm name. */
  readonly shm: string;
  /** dispatcher → worker i doorbell. */
  dwtube(i: number): string;
  /** worker i → dispatcher doorbell. */
  wdtube(i: number): string;
}

function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** Paths of the instance living in `runDir`. The shm name is `/osps-<uid>-<hash of runDir>`. */
export function instancePaths(runDir: string): InstancePaths {
  return {
    runDir,
    lock: `${runDir}/lock`,
    record: `${runDir}/instance.json`,
    notes: `${runDir}/watchdog.json`,
    shm: `/osps-${getuid()}-${fnv1a(runDir)}`,
    dwtube: (i) => `${runDir}/dwtube${i}`,
    wdtube: (i) => `${runDir}/wdtube${i}`,
  };
}
