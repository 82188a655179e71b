/**
 * The chat's settings (from the `--irc-*`, `--data-dir`, `--store` flags) as
 * every chat module sees them, and where the SQLite database lives.
 * @module
 */
import type { FlagValues } from "../cli/cli.ts";
import { UsageError } from "../errors.ts";
import type { IrcIo } from "./irc_port.ts";

const num = (v: FlagValues, k: string) => Number(v[k]);
const str = (v: FlagValues, k: string) => String(v[k] ?? "");

/** Settings of the IRC service in a worker. */
export interface ChatConfig {
  /** TCP port IRC clients connect to (0: chat off). */
  readonly ircPort: number;
  /** How the IRC port's sockets are driven (`irc_port.ts`). */
  readonly ircIo: IrcIo;
  /** Name the server gives itself in replies. */
  readonly serverName: string;
  /** Network name (ISUPPORT NETWORK). */
  readonly network: string;
  /** Connection password (PASS), "" for none. */
  readonly password: string;
  /** Message of the day, "" for none (then 422). */
  readonly motd: string;
  /** Longest line without tags, CR LF included. */
  readonly maxLineBytes: number;
  /** Send queue cap per client, bytes. */
  readonly sendqBytes: number;
  /** Lines a client may send at once before flood control slows it. */
  readonly floodBurst: number;
  /** Lines per second after the burst (0: no flood control). */
  readonly floodRate: number;
  /** Time a connection has to register (NICK + USER). */
  readonly registerTimeoutMs: number;
  /** Silence after which the server sends PING. */
  readonly pingMs: number;
  /** Silence after that PING before the client is dropped. */
  readonly pingTimeoutMs: number;
  /** Directory of the SQLite database (0700). */
  readonly dataDir: string;
  /** "sqlite" or a `postgres://` URL. */
  readonly store: string;
  /** SQLite: fsync every commit (power-cut durability) instead of at checkpoints. */
  readonly fsync: boolean;
  /** IRC connections one worker holds at once. */
  readonly maxClients: number;
  /** IRC connections one worker holds from one address. */
  readonly maxClientsPerAddr: number;
  /** Events older than this are removed (0: kept). */
  readonly historyMaxAgeMs: number;
  /** Events kept per channel (0: no limit). */
  readonly historyMaxPerChannel: number;
  /** Account registration: open, verify, closed (`accounts.ts`). */
  readonly register: "open" | "verify" | "closed";
  /** Shortest account password. */
  readonly passwordMin: number;
  /** Password attempts per minute per client address (0: no limit). */
  readonly authRate: number;
  /** Time to identify before a registered nickname held by someone else is renamed. */
  readonly nickGraceMs: number;
}

/**
 * The SQLite database in a data dir. One chat per data dir, whatever the
 * dispatcher's port (osps up to 0.1 named it `chat-<port>.sqlite`: such a
 * file is renamed to this name at start, see `chat_boot.ts`).
 */
export function sqlitePath(dataDir: string): string {
  return `${dataDir}/chat.sqlite`;
}

/** True when `store` names a PostgreSQL database. */
export function isPostgres(store: string): boolean {
  return /^postgres(ql)?:\/\//.test(store);
}

/** `host:port` of a `postgres://` URL (for the workers' `--allow-net`); null for SQLite. */
export function postgresAddress(store: string): string | null {
  if (!isPostgres(store)) return null;
  const url = new URL(store.replace(/^postgres(ql)?:/, "http:"));
  return `${url.hostname}:${url.port || "5432"}`;
}

/**
 * The environment variables the npm `postgres` client reads whatever it is
 * told: the roles that open PostgreSQL get `--allow-env` for these only.
 */
export const POSTGRES_ENV: readonly string[] = ["PGAPPNAME", "PGTARGETSESSIONATTRS"];

/**
 * The chat settings. `dataDir` is resolved: `--data-dir`, else
 * `$XDG_STATE_HOME/osps`, else `~/.local/state/osps` (only looked up when
 * chat is on and the store is SQLite).
 */
export function chatConfig(v: FlagValues): ChatConfig {
  const store = str(v, "store");
  if (store !== "sqlite" && !isPostgres(store)) {
    throw new UsageError(`--store takes sqlite or a postgres:// URL, got "${store}"`);
  }
  const ircPort = num(v, "irc-port");
  return {
    ircPort,
    ircIo: str(v, "irc-io") === "deno" ? "deno" : "epoll",
    serverName: str(v, "irc-server-name"),
    network: "osps",
    password: str(v, "irc-password"),
    motd: str(v, "irc-motd").replaceAll("\\n", "\n"),
    maxLineBytes: num(v, "irc-max-line-bytes"),
    sendqBytes: num(v, "irc-sendq-bytes"),
    floodBurst: num(v, "irc-flood-burst"),
    floodRate: num(v, "irc-flood-rate"),
    registerTimeoutMs: num(v, "irc-register-timeout-ms"),
    pingMs: num(v, "irc-ping-ms"),
    pingTimeoutMs: num(v, "irc-ping-timeout-ms"),
    dataDir: ircPort > 0 && store === "sqlite" ? resolveDataDir(str(v, "data-dir")) : str(v, "data-dir"),
    store,
    fsync: v["chat-fsync"] === true,
    maxClients: num(v, "irc-max-clients"),
    maxClientsPerAddr: num(v, "irc-max-clients-per-addr"),
    historyMaxAgeMs: num(v, "chat-history-days") * 86_400_000,
    historyMaxPerChannel: num(v, "chat-history-max"),
    register: str(v, "irc-register") as ChatConfig["register"],
    passwordMin: num(v, "irc-password-min"),
    authRate: num(v, "irc-auth-rate"),
    nickGraceMs: num(v, "irc-nick-grace-ms"),
  };
}

function resolveDataDir(given: string): string {
  const env = (k: string) => {
    try {
      return Deno.env.get(k);
    } catch {
      return undefined; // no permission for it: as if unset
    }
  };
  let dir = given;
  if (dir === "") {
    const state = env("XDG_STATE_HOME") ?? (env("HOME") ? `${env("HOME")}/.local/state` : undefined);
    if (!state) throw new UsageError("--data-dir is needed: neither XDG_STATE_HOME nor HOME is set");
    dir = `${state}/osps`;
  }
  if (!dir.startsWith("/")) dir = `${Deno.cwd()}/${dir}`;
  return dir.replace(/\/+$/, "");
}

/**
 * The chat flags' names and values, as passed on to workers, or as shown by
 * `status` (`shown`: without the password, the MOTD, or the store URL's credentials).
 */
export function chatFlags(c: ChatConfig, shown = false): Record<string, string | number | boolean> {
  const secret: Record<string, string> = shown
    ? {}
    : { "irc-password": c.password, "irc-motd": c.motd.replaceAll("\n", "\\n") };
  return {
    ...secret,
    "irc-port": c.ircPort,
    "irc-io": c.ircIo,
    "irc-server-name": c.serverName,
    "irc-max-line-bytes": c.maxLineBytes,
    "irc-sendq-bytes": c.sendqBytes,
    "irc-flood-burst": c.floodBurst,
    "irc-flood-rate": c.floodRate,
    "irc-register-timeout-ms": c.registerTimeoutMs,
    "irc-ping-ms": c.pingMs,
    "irc-ping-timeout-ms": c.pingTimeoutMs,
    "data-dir": c.dataDir,
    store: shown ? c.store.replace(/\/\/[^@/]*@/, "//…@") : c.store,
    "chat-fsync": c.fsync,
    "irc-max-clients": c.maxClients,
    "irc-max-clients-per-addr": c.maxClientsPerAddr,
    "chat-history-days": c.historyMaxAgeMs / 86_400_000,
    "chat-history-max": c.historyMaxPerChannel,
    "irc-register": c.register,
    "irc-password-min": c.passwordMin,
    "irc-auth-rate": c.authRate,
    "irc-nick-grace-ms": c.nickGraceMs,
  };
}
