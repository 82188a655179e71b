/**
 * What the watchdog does for chat before it starts any worker: make the data
 * dir (mode 0700, refusing a symlink or someone else's directory) and bring
 * the store's schema to the current version, once, so that workers never
 * race to migrate and a store that cannot open stops the instance at start
 * (exit 100) instead of failing in every worker.
 * @module
 */
import { CannotBootError } from "../errors.ts";
import { gethostname, getuid } from "../sys/libc.ts";
import type { FlagValues } from "../cli/cli.ts";
import { netScope, type RolePermissions } from "../sys/spawn.ts";
import { type ChatConfig, chatFlags, isPostgres, POSTGRES_ENV, postgresAddress } from "./chat_config.ts";

/** Creates `dir` (and its parents) with mode 0700, or tightens it; refuses a symlink or a foreign owner. */
export function ensureDataDir(dir: string): void {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = Deno.lstatSync(dir);
  if (st.isSymlink || !st.isDirectory) throw new CannotBootError(`data dir ${dir} is not a directory`);
  if (st.uid !== getuid()) throw new CannotBootError(`data dir ${dir} belongs to uid ${st.uid}, not to us`);
  if ((st.mode! & 0o777) !== 0o700) Deno.chmodSync(dir, 0o700);
}

/** Prepares the store of the instance whose dispatcher port is `port`; throws {@link CannotBootError}. */
export async function prepareChatStore(cfg: ChatConfig, port: number): Promise<void> {
  try {
    if (!isPostgres(cfg.store)) ensureDataDir(cfg.dataDir);
    const { openStore } = await import("./open_store.ts"); // SQLite and the rest only when chat is on
    const store = await openStore(cfg, port);
    await store.close();
  } catch (err) {
    if (err instanceof CannotBootError) throw err;
    throw new CannotBootError(`chat store: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * What every worker needs for chat: its flags (through the flag table), and
 * permission for the IRC port and either the data dir (SQLite) or the
 * database's address and the client's two variables (PostgreSQL).
 */
export function chatForWorkers(
  c: ChatConfig,
  host: string,
  port: number,
): { flags: FlagValues; permissions: RolePermissions } {
  if (c.ircPort === 0) return { flags: {}, permissions: { listen: [] } };
  const pg = postgresAddress(c.store);
  return {
    flags: { ...chatFlags(c), "chat-instance": `${gethostname()}:${port}` },
    permissions: {
      listen: [netScope(host, c.ircPort)],
      ...(pg ? { connect: [pg], env: POSTGRES_ENV } : { files: [c.dataDir] }),
    },
  };
}
