/**
 * The chat's settings (from the `--irc-*`, `--data-dir`, `--store` flags) as
 * every chat module sees them, and where the SQLite database lives.
 * @module
 */

/** Settings of the IRC service in a worker. */
export interface ChatConfig {
  /** TCP port IRC clients connect to (0: chat off). */
  readonly ircPort: number;
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
}

/** The SQLite database of the instance whose dispatcher listens on `port`. */
export function sqlitePath(dataDir: string, port: number): string {
  return `${dataDir}/chat-${port}.sqlite`;
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
