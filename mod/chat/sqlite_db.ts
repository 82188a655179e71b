/**
 * One SQLite connection as the chat store uses it: opened in WAL mode,
 * migrated, its statements prepared once, and every access wrapped so that
 * waiting for another process never blocks the event loop.
 *
 * `node:sqlite` is synchronous, and SQLite's own busy handler sleeps inside
 * the call: with two workers writing, a `busy_timeout` turns every wait for
 * the other's transaction (a WAL checkpoint can make one last a hundred
 * milliseconds) into a frozen event loop. So the connection has no busy
 * timeout: a statement or transaction that finds the database locked
 * gives up at once, and {@link SqliteDb.retry} tries it again after a
 * short timer (1, 2, 4 … 16 ms), while the loop serves everyone else.
 * @module
 */
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import { StoreError } from "./chat_store.ts";
import { SCHEMA } from "./store_schema.ts";

/** A row as `node:sqlite` returns it. */
export type Row = Record<string, SQLInputValue>;

/** Longest a statement waits for a lock held by another process before its error is the caller's. */
const BUSY_GIVE_UP_MS = 10_000;

/** SQLITE_BUSY or SQLITE_LOCKED: another connection holds what this one needs. */
function isBusy(err: unknown): boolean {
  const code = (err as { errcode?: number }).errcode;
  return code === 5 || code === 6 || /database is locked|database table is locked/.test(String(err));
}

/** A SQLite connection with prepared statements and non-blocking waits. */
export class SqliteDb {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Opens (creating) `path` in WAL mode and migrates its schema (waiting, at boot, for another migrator). */
  static open(path: string, options: { fsync?: boolean } = {}): SqliteDb {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec("PRAGMA busy_timeout = 5000"); // only while migrating, before serving anyone
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${options.fsync ? "FULL" : "NORMAL"}`);
      // Bans and invitations go with their channel, tokens with their account (ON DELETE CASCADE).
      db.exec("PRAGMA foreign_keys = ON");
    } catch (err) {
      throw new StoreError(`cannot open the chat database ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const conn = new SqliteDb(db);
    conn.tx(() => {
      const at = Number(conn.get("PRAGMA user_version")!["user_version"]);
      if (at > SCHEMA.length) {
        throw new StoreError(
          `the chat database has schema version ${at}, newer than this osps (${SCHEMA.length})`,
        );
      }
      for (let v = at; v < SCHEMA.length; v++) db.exec(SCHEMA[v]!.sqlite);
      db.exec(`PRAGMA user_version = ${SCHEMA.length}`);
    });
    db.exec("PRAGMA busy_timeout = 0");
    return conn;
  }

  /** Runs `fn` in a write transaction, taken at once (no upgrade deadlock between processes). */
  tx<T>(fn: () => T): T {
    this.run("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.run("COMMIT");
      return out;
    } catch (err) {
      this.run("ROLLBACK");
      throw err;
    }
  }

  /** Runs `fn` in a read transaction: every statement sees one state. */
  read<T>(fn: () => T): T {
    this.run("BEGIN");
    try {
      return fn();
    } finally {
      this.run("COMMIT");
    }
  }

  /**
   * Runs `fn` (statements, or a whole {@link tx}) until the database is not
   * locked by another process; waits between attempts on timers, never
   * inside SQLite.
   */
  async retry<T>(fn: () => T): Promise<T> {
    for (let wait = 1, waited = 0;; wait = Math.min(wait * 2, 16)) {
      try {
        return fn();
      } catch (err) {
        if (!isBusy(err) || waited >= BUSY_GIVE_UP_MS) throw err;
      }
      await new Promise((r) => setTimeout(r, wait));
      waited += wait;
    }
  }

  /** A write transaction, retried while another process holds the database. */
  write<T>(fn: () => T): Promise<T> {
    return this.retry(() => this.tx(fn));
  }

  /** Statements are prepared once each (preparing costs more than running most of them). */
  #prepared(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) this.#statements.set(sql, st = this.#db.prepare(sql));
    return st;
  }

  get(sql: string, ...args: SQLInputValue[]): Row | undefined {
    return this.#prepared(sql).get(...args) as Row | undefined;
  }

  all(sql: string, ...args: SQLInputValue[]): Row[] {
    return this.#prepared(sql).all(...args) as Row[];
  }

  /** Runs a statement; returns the number of rows it changed. */
  run(sql: string, ...args: SQLInputValue[]): number {
    return Number(this.#prepared(sql).run(...args).changes);
  }

  close(): void {
    try {
      this.#db.close();
    } catch { /* already closed */ }
  }
}
