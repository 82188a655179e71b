/**
 * Opens the chat store the flags name: SQLite in the data dir (default), or
 * PostgreSQL for `--store postgres://…`, together with the bus that suits
 * it. PostgreSQL's client is loaded only when asked for.
 * @module
 */
import { type ChatBus, LinkBus } from "./chat_bus.ts";
import { type ChatConfig, isPostgres, sqlitePath } from "./chat_config.ts";
import type { ChatStore } from "./chat_store.ts";
import { SqliteStore } from "./sqlite_store.ts";

/** Opens (and migrates) the store. */
export async function openStore(cfg: ChatConfig): Promise<ChatStore> {
  if (isPostgres(cfg.store)) {
    const { PostgresStore } = await import("./postgres_store.ts");
    return await PostgresStore.open(cfg.store);
  }
  return SqliteStore.open(sqlitePath(cfg.dataDir), { fsync: cfg.fsync });
}

/**
 * The bus between workers: over the link (the dispatcher relays) for SQLite,
 * whose workers are all on this host; over LISTEN/NOTIFY for PostgreSQL,
 * which also reaches other instances' workers. `owner` stamps what it sends.
 */
export async function openBus(cfg: ChatConfig, link: LinkBus, owner: string): Promise<ChatBus> {
  if (!isPostgres(cfg.store)) return link;
  const { PostgresBus } = await import("./postgres_bus.ts");
  return await PostgresBus.open(cfg.store, owner);
}
