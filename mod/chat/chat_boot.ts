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
import { type FlagValues, toArgv } from "../cli/cli.ts";
import { netScope, type RolePermissions, selfCommand } from "../sys/spawn.ts";
import { type ChatConfig, chatFlags, isPostgres, POSTGRES_ENV, postgresAddress } from "./chat_config.ts";

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
  if (st.uid !== getuid()) throw new CannotBootError(`data dir ${dir} belongs to uid ${st.uid}, not to us`);
  if ((st.mode! & 0o777) !== 0o700) Deno.chmodSync(dir, 0o700);
}

/**
 * Prepares the store of the instance whose dispatcher port is `port`, in a
 * child process run with the chat's own permissions ({@link chatPermissions}),
 * as the workers are: the watchdog itself may then not touch the data dir or
 * reach the database, and any `--data-dir` or database host works, under
 * `deno run` and compiled alike. Throws {@link CannotBootError} with the
 * child's reason.
 */
export async function prepareChatStore(cfg: ChatConfig, port: number): Promise<void> {
  const { program, args } = selfCommand(
    toArgv("chat-prepare", { ...chatFlags(cfg), port }),
    { ...chatPermissions(cfg), listen: [] },
  );
  const o = await new Deno.Command(program, { args, stdin: "null", stdout: "null", stderr: "piped" })
    .output();
  if (o.success) return;
  const said = new TextDecoder().decode(o.stderr).trim();
  const why = /^osps chat-prepare: error: (.*)$/m.exec(said)?.[1] ?? `chat store: exit ${o.code}: ${said}`;
  throw new CannotBootError(why);
}

/** `osps chat-prepare`: does what {@link prepareChatStore} asks, in this process. */
export async function prepareChatStoreHere(cfg: ChatConfig, port: number): Promise<number> {
  try {
    if (!isPostgres(cfg.store)) ensureDataDir(cfg.dataDir);
    const { openStore } = await import("./open_store.ts"); // SQLite and the rest only when chat is on
    const store = await openStore(cfg, port);
    await store.close();
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
    flags: { ...chatFlags(c), "chat-instance": `${gethostname()}:${port}` },
    permissions: { listen: [netScope(host, c.ircPort)], ...chatPermissions(c) },
  };
}
