/**
 * The stores kept beside the chat state, on the chat store's own database
 * connection: accounts (`AccountStore`) and the server's lists (`ListStore`).
 * @module
 */
import type { DatabaseSync } from "node:sqlite";
import type postgres from "postgres";
import type { AccountStore } from "./account_store.ts";
import type { ChatStore } from "./chat_store.ts";
import type { ListStore } from "./list_store.ts";
import { PostgresAccounts } from "./postgres_accounts.ts";
import { PostgresLists } from "./postgres_lists.ts";
import { SqliteAccounts } from "./sqlite_accounts.ts";
import { SqliteLists } from "./sqlite_lists.ts";

/** The account and list stores on `store`'s database. */
export function storesBeside(store: ChatStore): { accounts: AccountStore; lists: ListStore } {
  if ("db" in store) {
    const db = store.db as DatabaseSync;
    return { accounts: new SqliteAccounts(db), lists: new SqliteLists(db) };
  }
  if ("sql" in store) {
    const sql = store.sql as postgres.Sql;
    return { accounts: new PostgresAccounts(sql), lists: new PostgresLists(sql) };
  }
  throw new TypeError(`no account tables for a ${store.kind} store`);
}
