/**
 * `deno task install`: puts an `osps` command on PATH with `deno install`,
 * under exactly the scoped permissions of the `osps` task in deno.json (read
 * from there, so the two cannot drift; never -A).
 *
 * Where: `$DENO_INSTALL_ROOT/bin` when set, else the first directory on PATH
 * that is writable and is one of: the directory holding `deno`,
 * `~/.deno/bin`, `~/.local/bin`, `/usr/local/bin`; else `~/.deno/bin`, with a
 * hint to add it to PATH.
 * @module
 */
const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const deno = Deno.execPath();
const env = (k: string) => Deno.env.get(k) ?? "";
const home = env("HOME");

/** The permission flags of the `osps` task, with its shell substitutions done. */
export function taskPermissions(task: string): string[] {
  const words = task.split(/\s+/).filter((w) => w.startsWith("--no-prompt") || w.startsWith("--allow-"));
  return words.map((w) =>
    w.startsWith("--allow-run=") ? `--allow-run=${deno}` : w.replaceAll("$HOME", home).replaceAll('"', "")
  );
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

function binDir(): { dir: string; onPath: boolean } {
  if (env("DENO_INSTALL_ROOT")) return { dir: `${env("DENO_INSTALL_ROOT")}/bin`, onPath: false };
  const path = env("PATH").split(":").filter(Boolean);
  const wanted = [
    deno.slice(0, deno.lastIndexOf("/")),
    `${home}/.deno/bin`,
    `${home}/.local/bin`,
    "/usr/local/bin",
  ];
  const dir = path.find((d) => d.endsWith("/bin") && wanted.includes(d) && writableDir(d));
  return dir
    ? { dir, onPath: true }
    : { dir: `${home}/.deno/bin`, onPath: path.includes(`${home}/.deno/bin`) };
}

if (import.meta.main) {
  const tasks = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks as Record<string, string>;
  const flags = taskPermissions(tasks["osps"]!);
  const { dir, onPath } = binDir();
  const args = [
    "install",
    "--global",
    "--force",
    "--quiet",
    "--name",
    "osps",
    "--root",
    dir.replace(/\/bin$/, ""),
  ];
  const out = await new Deno.Command(deno, {
    args: [...args, `--config=${root}/deno.json`, ...flags, `${root}/main.ts`],
  }).output();
  if (!out.success) Deno.exit(out.code);
  console.log(`installed ${dir}/osps (${flags.join(" ")})`);
  if (!onPath) console.log(`note: ${dir} is not on PATH; add it: export PATH="${dir}:$PATH"`);
}
