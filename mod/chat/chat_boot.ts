/**
 * What the watchdog does for chat before it starts any worker: claim the
 * IRC port and the data dir for this instance, make the data dir (mode
 * 0700, refusing a symlink or someone else's directory), and bring the
 * store's schema to the current version, once, so that workers never race
 * to migrate and a store that cannot open stops the instance at start (exit
 * 100) instead of failing in every worker.
 *
 * Claims. Workers listen on the IRC port with `SO_REUSEPORT`, which the
 * kernel grants to any process of the same user: a second instance started
 * on the same port would silently get half the new connections, and its
 * clients would be in another network. So the watchdog holds a lock named
 * by the port for as long as it runs (two instances starting at once), and
 * the preparation refuses a port something already listens on (a probe
 * bind without `SO_REUSEPORT` fails then). Likewise one SQLite chat belongs
 * to one instance: a lock named by the data dir refuses a second instance
 * on it (its workers would share the file but not the bus). The locks are
 * in `/tmp` (per user): the watchdog itself never touches the data dir.
 * @module
 */
import { CannotBootError } from "../errors.ts";
import * as libc from "../sys/libc.ts";
import { type FlagValues, toArgv } from "../cli/cli.ts";
import { netScope, type RolePermissions, selfCommand } from "../sys/spawn.ts";
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
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    if (!(err instanceof Deno.errors.PermissionDenied) && !(err instanceof Deno.errors.NotFound)) throw err;
    throw new CannotBootError(
      `cannot make the data dir ${dir} (${err.message}): set --data-dir (data-dir in the config file) to a ` +
        `directory this user may create, e.g. /var/lib/osps/chat for a service`,
      { cause: err },
    );
  }
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

/** A lock file's name for `what` (`irc-<port>`, `chat-<hash of the data dir>`): per user, in /tmp. */
function lockPath(what: string): string {
  return `/tmp/osps-${libc.getuid()}-${what}.lock`;
}

/** FNV-1a of `text` (a data dir's path as a short file name), in hex. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/**
 * Claims the IRC port and (SQLite) the data dir for this instance, for the
 * life of this process; throws {@link CannotBootError} when another instance
 * holds either.
 */
export function claimChat(cfg: ChatConfig): void {
  const port = lockPath(`irc-${cfg.ircPort}`);
  if (!claim(port)) {
    throw new CannotBootError(
      `IRC port ${cfg.ircPort} is claimed by another osps instance (${port} is locked)`,
    );
  }
  if (isPostgres(cfg.store)) return;
  const dir = lockPath(`chat-${fnv1a(cfg.dataDir)}`); // the path is absolute (chat_config.ts)
  if (!claim(dir)) {
    throw new CannotBootError(
      `the chat data dir ${cfg.dataDir} is used by another osps instance (use another --data-dir)`,
    );
  }
}

/**
 * Prepares the chat of the instance on `host` whose dispatcher port is
 * `port`: claims it ({@link claimChat}), then does the rest in a child
 * process run with the chat's own permissions ({@link chatPermissions}), as
 * the workers are: the watchdog itself may then not touch the data dir or
 * reach the database, and any `--data-dir` or database host works, under
 * `deno run` and compiled alike. Throws {@link CannotBootError} with the
 * child's reason.
 */
export async function prepareChatStore(cfg: ChatConfig, host: string, port: number): Promise<void> {
  claimChat(cfg);
  const { program, args } = selfCommand(
    toArgv("chat-prepare", { ...chatFlags(cfg), host, port }),
    { ...chatPermissions(cfg), listen: [netScope(host, cfg.ircPort)] },
  );
  const o = await new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .output();
  if (o.success) return;
  const said = new TextDecoder().decode(o.stderr).trim();
  const why = /^osps chat-prepare: error: (.*)$/m.exec(said)?.[1] ?? `chat store: exit ${o.code}: ${said}`;
  throw new CannotBootError(why);
}

/** Refuses an IRC port something already listens on (another instance would split the network). */
function probeIrcPort(host: string, port: number): void {
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
 * A database of an older osps named by the dispatcher's port
 * (`chat-<port>.sqlite`) becomes `chat.sqlite`: the chat is named by its
 * data dir, so that another `--port` finds the same chat.
 */
function renameOldDatabase(dataDir: string, port: number): void {
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

/** `osps chat-prepare`: does what {@link prepareChatStore} asks, in this process. */
export async function prepareChatStoreHere(cfg: ChatConfig, host: string, port: number): Promise<number> {
  try {
    probeIrcPort(host, cfg.ircPort);
    if (!isPostgres(cfg.store)) {
      ensureDataDir(cfg.dataDir);
      renameOldDatabase(cfg.dataDir, port);
    }
    const { openStore } = await import("./open_store.ts"); // SQLite and the rest only when chat is on
    const store = await openStore(cfg);
    try {
      // A SQLite chat is this instance's alone (claimed by the watchdog): every worker process it records
      // is dead, and their users leave now, before anyone can find their nicknames taken.
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
  return 0;
}

/** What opening the store needs: the data dir (SQLite), or the database's address and its client's variables. */
function chatPermissions(c: ChatConfig): Omit<RolePermissions, "listen"> {
  const pg = postgresAddress(c.store);
  return pg ? { connect: [pg], env: POSTGRES_ENV } : { files: [c.dataDir] };
}

/**
 * V8 flags of a worker serving chat. Thousands of connections make garbage in
 * bursts (a JOIN to a channel of 10,000 is 10,000 queued lines); with V8's
 * default young generation (up to 2 × 16 MiB) and its eagerness to keep
 * freed pages, a worker's resident memory stayed at ~100 KiB per connected
 * client where its live objects were ~10 KiB. A smaller young generation
 * brings it to ~50 KiB at 10,000 members in one channel. Not 1 MiB: every
 * turn's shared output (kept until thousands of sockets took it) was
 * promoted to the old generation, whose collections stopped the loop for up
 * to 0.85 s. Not `--optimize-for-size` as well, though it halves memory
 * again (21–34 KiB per client): measured with a CPU profile at 10,000, it
 * spent a third of the worker's CPU time in the garbage collector — joins
 * took 63–83 s instead of 38, a message's fan-out p99 2–8 s instead of
 * 0.9, a PING's round trip up to 18 s — and a server that answers is worth
 * more than the memory (`deno task bench --parts chat-scale`).
 *
 * What the storm leaves is given back once the worker is calm: V8's memory
 * reducer (incremental collections that shrink the young generation and
 * release the old generation's empty pages, started only while the
 * allocation rate is low) runs 2 s after the last full collection instead
 * of V8's 30 s (`--gc-memory-reducer-start-delay-ms`), then every 2 s while
 * still needed (`--memory-reducer-delay-ms`, 8 s). Measured 10 s after the
 * fan-out, a client: 2,000 members 52.6–55.7 → 24.2–27.0 KiB, 10,000
 * 36.8–61.7 → 13.9–17.5 KiB with glibc's trim (`MallocTrim`,
 * `chat_server.ts`); joins and fan-out within the noise (docs/CHAT.md).
 *
 * During the storm the old generation grows by half of what is live at each
 * collection (`--heap-growing-percent=50`) instead of V8's default factor
 * (up to 4× when it thinks memory is plentiful): at 10,000 members the peak
 * fell from 35.1–35.6 to 21.0–22.6 KiB a client in three same-session pairs,
 * fan-out p99 113–138 against 119–234 ms, joins 20.2–22.8 against 18.6–20.1 s.
 * Under `deno run` as `--v8-flags`; a compiled binary's workers get them as
 * `DENO_V8_FLAGS` (`mod/sys/spawn.ts`).
 */
export const CHAT_V8_FLAGS: readonly string[] = [
  "--max-semi-space-size=8",
  "--gc-memory-reducer-start-delay-ms=2000",
  "--memory-reducer-delay-ms=2000",
  "--heap-growing-percent=50",
];

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
  return {
    flags: { ...chatFlags(c), "chat-instance": `${libc.gethostname()}:${port}` },
    permissions: { listen: [netScope(host, c.ircPort)], v8Flags: CHAT_V8_FLAGS, ...chatPermissions(c) },
  };
}
