/**
 * `deno task install`: puts an `osps` command on PATH. The command is a small
 * sh script that runs this checkout's `main.ts` under exactly the permissions
 * of the `osps` task in deno.json (read from there, so the two cannot drift;
 * never -A), and carries what it needs to run for any user:
 *
 * - **the Deno it was installed with, pinned**: a copy at
 *   `<root>/lib/osps/deno`. Under `npx deno …` the
 *   running Deno lives in the installing user's npm cache, which other users
 *   cannot read and npm prunes; an upgrade of the system's Deno does not
 *   change what osps runs on either;
 * - **its own module cache** (`DENO_DIR`), `<root>/lib/osps/deno_dir`, filled
 *   here (from the installing user's cache when it has the locked packages, so
 *   an offline machine installs too) and readable by every user: a service
 *   user with no home runs it, and nothing is downloaded when it runs
 *   (`--cached-only`);
 * - **paths named when it runs**: `$HOME` in the task's permissions stays
 *   `$HOME` in the script, so they name the user who runs it, not the one who
 *   installed it.
 *
 * Where: `$DENO_INSTALL_ROOT/bin` when set, else the first directory on PATH
 * that is writable and is one of: the directory holding `deno`,
 * `~/.deno/bin`, `~/.local/bin`, `/usr/local/bin`; else `~/.deno/bin`, with a
 * hint to add it to PATH.
 *
 * It runs in two steps so that it may write only where it installs: the task
 * runs it with read permissions to choose the place, then it runs itself again
 * with `--allow-write` for that place alone (`--into ROOT`).
 * @module
 */
import { fillDenoDir } from "./deno_dir.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const deno = Deno.execPath();
const env = (k: string) => Deno.env.get(k) ?? "";
const home = env("HOME");
const decoder = new TextDecoder();

/** The permission flags of the `osps` task, as written there (`$HOME` unexpanded), with `--allow-run` for `deno`. */
export function taskPermissions(task: string, denoPath: string): string[] {
  const words = task.split(/\s+/).filter((w) => w.startsWith("--no-prompt") || w.startsWith("--allow-"));
  return words.map((w) => w.startsWith("--allow-run=") ? `--allow-run=${denoPath}` : w.replaceAll('"', ""));
}

/** One word for sh: single-quoted, except that `$HOME` is left for the shell to expand when the command runs. */
export function shWord(word: string): string {
  if (!word.includes("$HOME")) return `'${word.replaceAll("'", `'\\''`)}'`;
  const parts = word.split("$HOME").map((p) => p.replace(/[\\"`$]/g, (c) => `\\${c}`));
  return `"${parts.join("${HOME}")}"`;
}

/** The `osps` script: runs `main` with `flags` on the pinned `deno`, with the carried module cache. */
export function shim(
  o: { deno: string; denoDir: string; config: string; main: string; flags: string[]; version: string },
): string {
  return [
    "#!/bin/sh",
    `# osps, installed by \`deno task install\` from ${
      o.main.replace(/\/main\.ts$/, "")
    } with Deno ${o.version}.`,
    "# It runs main.ts with the osps task's permissions (deno.json; never -A) on that Deno, pinned here, and its own",
    "# module cache; $HOME below is the home of whoever runs it. After moving the checkout, changing its",
    "# dependencies or to use another Deno: run `deno task install` again.",
    `DENO_DIR=${shWord(o.denoDir)}`,
    "DENO_NO_UPDATE_CHECK=1",
    "export DENO_DIR DENO_NO_UPDATE_CHECK",
    [
      "exec",
      shWord(o.deno),
      "run",
      "--quiet",
      "--cached-only",
      shWord(`--config=${o.config}`),
      ...o.flags.map(shWord),
      shWord(o.main),
      '"$@"',
    ].join(" "),
    "",
  ].join("\n");
}

function writableDir(dir: string): boolean {
  try {
    const st = Deno.statSync(dir);
    const uid = Deno.uid();
    return st.isDirectory && (uid === 0 || (st.uid === uid && ((st.mode ?? 0) & 0o200) !== 0));
  } catch {
    return false;
  }
}

/** Where to install (the root: `<root>/bin/osps`, `<root>/lib/osps/`), and whether `<root>/bin` is on PATH. */
export function installRoot(): { root: string; onPath: boolean } {
  const path = env("PATH").split(":").filter(Boolean).map((d) => d.replace(/(.)\/+$/, "$1"));
  const given = env("DENO_INSTALL_ROOT").replace(/(.)\/+$/, "$1");
  if (given) return { root: given, onPath: path.includes(`${given}/bin`) };
  const wanted = [
    deno.slice(0, deno.lastIndexOf("/")),
    `${home}/.deno/bin`,
    `${home}/.local/bin`,
    "/usr/local/bin",
  ];
  const dir = path.find((d) => d.endsWith("/bin") && wanted.includes(d) && writableDir(d));
  return dir
    ? { root: dir.replace(/\/bin$/, ""), onPath: true }
    : { root: `${home}/.deno`, onPath: path.includes(`${home}/.deno/bin`) };
}

/** Pins `deno` at `to`: a copy, replaced atomically (a running osps keeps its file); nothing when it is `to`. */
function pinDeno(to: string): void {
  const from = Deno.realPathSync(deno);
  try {
    if (Deno.realPathSync(to) === from) return; // reinstalling with the pinned Deno itself (the image does)
  } catch { /* not pinned yet */ }
  const tmp = `${to}.new`;
  Deno.copyFileSync(from, tmp);
  Deno.chmodSync(tmp, 0o755);
  Deno.renameSync(tmp, to);
}

/** Step two: writes `<into>/lib/osps/{deno,deno_dir}` and `<into>/bin/osps`. */
async function installInto(into: string): Promise<string> {
  const lib = `${into}/lib/osps`, bin = `${into}/bin`;
  Deno.mkdirSync(bin, { recursive: true, mode: 0o755 });
  Deno.mkdirSync(lib, { recursive: true, mode: 0o755 });
  const pinned = `${lib}/deno`;
  pinDeno(pinned);
  const denoDir = `${lib}/deno_dir`;
  await fillDenoDir(denoDir, deno);
  const tasks = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks as Record<string, string>;
  const flags = taskPermissions(tasks["osps"]!, pinned);
  const text = shim({
    deno: pinned,
    denoDir,
    config: `${root}/deno.json`,
    main: `${root}/main.ts`,
    flags,
    version: Deno.version.deno,
  });
  Deno.writeTextFileSync(`${bin}/.osps.new`, text, { mode: 0o755 });
  Deno.chmodSync(`${bin}/.osps.new`, 0o755);
  Deno.renameSync(`${bin}/.osps.new`, `${bin}/osps`);
  return flags.join(" ");
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--into");
  if (at >= 0) {
    try {
      console.log(await installInto(Deno.args[at + 1]!));
    } catch (err) {
      console.error(`osps install: ${(err as Error).message}`);
      Deno.exit(1);
    }
  } else {
    const { root: into, onPath } = installRoot();
    const step = await new Deno.Command(deno, {
      args: [
        "run",
        "--no-prompt",
        "--allow-read",
        `--allow-write=${into}/bin,${into}/lib/osps`,
        "--allow-env=HOME,PATH,DENO_INSTALL_ROOT",
        `--allow-run=${deno}`,
        "--allow-sys=uid",
        import.meta.filename!,
        "--into",
        into,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    if (!step.success) Deno.exit(step.code);
    const flags = decoder.decode(step.stdout).trim();
    console.log(
      `installed ${into}/bin/osps (Deno ${Deno.version.deno} pinned in ${into}/lib/osps; ${flags})`,
    );
    if (!onPath) console.log(`note: ${into}/bin is not on PATH; add it: export PATH="${into}/bin:$PATH"`);
  }
}
