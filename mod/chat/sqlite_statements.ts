/**
 * Prepared statements on a `node:sqlite` connection, prepared once each, and
 * write transactions taken at once (`BEGIN IMMEDIATE`: no upgrade deadlock
 * between processes). Used by the SQLite tables kept beside the chat state.
 * @module
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite";

/** A row as `node:sqlite` returns it. */
export type SqliteRow = Record<string, SQLInputValue>;

/** Statements of one connection. */
export class Statements {
  readonly #db: DatabaseSync;
  readonly #cache = new Map<string, StatementSync>();

  constructor(db: DatabaseSync) {
    this.#db = db;
  }

  #prepared(sql: string): StatementSync {
    let st = this.#cache.get(sql);
    if (!st) this.#cache.set(sql, st = this.#db.prepare(sql));
    return st;
  }

  /** The first row, or undefined. */
  get(sql: string, ...args: SQLInputValue[]): SqliteRow | undefined {
    return this.#prepared(sql).get(...args) as SqliteRow | undefined;
  }

  /** Every row. */
  all(sql: string, ...args: SQLInputValue[]): SqliteRow[] {
    return this.#prepared(sql).all(...args) as SqliteRow[];
  }

  /** Runs a statement; returns the rows it changed. */
  run(sql: string, ...args: SQLInputValue[]): number {
    return Number(this.#prepared(sql).run(...args).changes);
  }

  /** Runs `fn` in a write transaction. */
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
}
