/**
 * What the watchdog does for chat before it starts any worker: make the data
 * dir (mode 0700, refusing a symlink or someone else's directory), claim the
 * IRC port and the data dir for this instance, and bring the store's schema
 * to the current version, once, so that workers never race to migrate and a
 * store that cannot open stops the instance at start (exit 100) instead of
 * failing in every worker.
 *
 * Claims. Workers listen on the IRC port with `SO_REUSEPORT`, which the
 * kernel grants to any process of the same user: a second instance started
 * on the same port would silently get half the new connections, and its
 * clients would be in another network. So the watchdog refuses a port
 * something already listens on (a probe bind without `SO_REUSEPORT` fails
 * then), and holds a lock named by the port for as long as it runs (two
 * instances starting at once). Likewise one SQLite chat belongs to one
 * instance: the data dir's lock refuses a second instance on it (its
 * workers would share the file but not the bus).
 * @module
 */
import { CannotBootError } from "../errors.ts";
import * as libc from "../sys/libc.ts";
import type { FlagValues } from "../cli/cli.ts";
import { netScope, type RolePermissions } from "../sys/spawn.ts";
import {
  type ChatConfig,
  chatFlags,
  isPostgres,
  POSTGRES_ENV,
  postgresAddress,
  sqlitePath,
} from "./chat_config.ts";

/** Creates `dir` (and its parents) with mode 0700, or tightens it; refuses a symlink or a foreign owner. */
export function ensureDataDir(dir: string): void {
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = Deno.lstatSync(dir);
  if (st.isSymlink || !st.isDirectory) throw new CannotBootError(`data dir ${dir} is not a directory`);
  if (st.uid !== libc.getuid()) {
    throw new CannotBootError(`data dir ${dir} belongs to uid ${st.uid}, not to us`);
  }
  if ((st.mode! & 0o777) !== 0o700) Deno.chmodSync(dir, 0o700);
}

/** Locks this process holds for its life, by path (a reload does not take them twice). */
const held = new Map<string, number>();

/** Takes an exclusive lock on `path` for the life of this process; false when another process holds it. */
function claim(path: string): boolean {
  if (held.has(path)) return true;
  const fd = libc.open(path, libc.O.RDWR | libc.O.CREAT | libc.O.NOFOLLOW, 0o600);
  if (!libc.tryLockExclusive(fd)) {
    libc.close(fd);
    return false;
  }
  held.set(path, fd);
  return true;
}

/** Refuses an IRC port another process listens on, and claims it for this instance. */
export function claimIrcPort(host: string, port: number): void {
  const lock = `/tmp/osps-${libc.getuid()}-irc-${port}.lock`;
  if (!claim(lock)) {
    throw new CannotBootError(`IRC port ${port} is claimed by another osps instance (${lock} is locked)`);
  }
  try {
    Deno.listen({ hostname: host, port }).close(); // without SO_REUSEPORT: fails if anything listens there
  } catch (err) {
    const why = err instanceof Deno.errors.AddrInUse
      ? "something already listens there"
      : (err as Error).message;
    throw new CannotBootError(
      `IRC port ${host}:${port} cannot be used: ${why} (another osps instance would split the network)`,
      { cause: err },
    );
  }
}

/**
 * The SQLite chat of `dataDir` is this instance's: its lock is taken, and a
 * database of an older osps named by the dispatcher's port
 * (`chat-<port>.sqlite`) becomes `chat.sqlite`.
 */
export function claimDataDir(dataDir: string, port: number): void {
  if (!claim(`${dataDir}/chat.lock`)) {
    throw new CannotBootError(
      `the chat data dir ${dataDir} is used by another osps instance (use another --data-dir)`,
    );
  }
  const target = sqlitePath(dataDir);
  const old = `${dataDir}/chat-${port}.sqlite`;
  if (exists(target) || !exists(old)) return;
  for (const suffix of ["-wal", "-shm", ""]) { // the database last: a crash halfway leaves it under its old name
    if (exists(old + suffix)) Deno.renameSync(old + suffix, target + suffix);
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Prepares the chat of the instance on `host` whose dispatcher port is `port`; throws {@link CannotBootError}. */
export async function prepareChatStore(cfg: ChatConfig, host: string, port: number): Promise<void> {
  try {
    claimIrcPort(host, cfg.ircPort);
    if (!isPostgres(cfg.store)) {
      ensureDataDir(cfg.dataDir);
      claimDataDir(cfg.dataDir, port);
    }
    const { openStore } = await import("./open_store.ts"); // SQLite and the rest only when chat is on
    const store = await openStore(cfg);
    try {
      // A SQLite chat is this instance's alone (claimed above): every worker process it records is
      // dead, and their users leave now, before anyone can find their nicknames taken.
      if (!isPostgres(cfg.store)) {
        for (const { owner } of await store.owners()) {
          while ((await store.reapOwner(owner, "Connection lost (server restarted)", 500)).length === 500);
        }
      }
    } finally {
      await store.close();
    }
  } catch (err) {
    if (err instanceof CannotBootError) throw err;
    throw new CannotBootError(`chat store: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * V8 flags of a worker serving chat. Thousands of connections make garbage in
 * bursts (a JOIN to a channel of 10,000 is 10,000 queued lines); with V8's
 * default young generation (up to 2 × 16 MiB) and its eagerness to keep
 * freed pages, a worker's resident memory stayed at ~100 KiB per connected
 * client where its live objects were ~10 KiB. A 1 MiB young generation, and
 * a heap sized for memory rather than speed, bring it to ~25 KiB
 * (measured: `deno task bench --parts chat-scale`), for a few percent of CPU.
 */
export const CHAT_V8_FLAGS: readonly string[] = ["--max-semi-space-size=1", "--optimize-for-size"];

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
    flags: { ...chatFlags(c), "chat-instance": `${libc.gethostname()}:${port}` },
    permissions: {
      listen: [netScope(host, c.ircPort)],
      v8Flags: CHAT_V8_FLAGS,
      ...(pg ? { connect: [pg], env: POSTGRES_ENV } : { files: [c.dataDir] }),
    },
  };
}
