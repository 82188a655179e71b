/**
 * A module cache (`DENO_DIR`) that carries everything this checkout's
 * `main.ts` needs, for a command that must run without reaching npm and for
 * users who have no cache of their own: the installed `osps` command
 * (scripts/install.ts) and the container image (scripts/image.ts).
 * @module
 */

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const REGISTRY = "npm/registry.npmjs.org";
const decoder = new TextDecoder();

/** The npm packages deno.lock pins, as the cache names their directories. */
export function lockedPackages(lockText: string): { name: string; version: string }[] {
  const lock = JSON.parse(lockText) as { npm?: Record<string, unknown> };
  return Object.keys(lock.npm ?? {}).map((key) => {
    // "name@version" then, for packages resolved against peers, "_peer@version…": the name ends at the first "@"
    // after its scope's.
    const at = key.indexOf("@", 1);
    return { name: key.slice(0, at), version: key.slice(at + 1).split("_")[0]! };
  });
}

/** Copies the directory tree `from` to `to` (files, directories, symbolic links). */
export function copyTree(from: string, to: string): void {
  Deno.mkdirSync(to, { recursive: true });
  for (const e of Deno.readDirSync(from)) {
    const a = `${from}/${e.name}`, b = `${to}/${e.name}`;
    if (e.isDirectory) copyTree(a, b);
    else if (e.isSymlink) {
      try {
        Deno.removeSync(b);
      } catch { /* not there */ }
      Deno.symlinkSync(Deno.readLinkSync(a), b);
    } else Deno.copyFileSync(a, b);
  }
}

/** Makes every file under `dir` readable, and every directory searchable, by every user. */
export function makeReadable(dir: string): void {
  const st = Deno.lstatSync(dir);
  if (st.isSymlink) return;
  Deno.chmodSync(dir, (st.mode ?? 0) & 0o7777 | (st.isDirectory ? 0o555 : 0o444));
  if (st.isDirectory) { for (const e of Deno.readDirSync(dir)) makeReadable(`${dir}/${e.name}`); }
}

function realPathOrSelf(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

async function run(deno: string, args: string[], env: Record<string, string> = {}) {
  const o = await new Deno.Command(deno, { args, env, stdout: "piped", stderr: "piped" }).output();
  return { ok: o.success, out: decoder.decode(o.stdout), err: decoder.decode(o.stderr) };
}

/**
 * Fills `denoDir` with what main.ts needs: first the locked packages found in
 * the running Deno's own cache (so a machine that ran osps once can do this
 * offline), then `deno cache`, which fetches anything still missing. Leaves
 * it readable by every user. Throws with Deno's reason when it cannot.
 */
export async function fillDenoDir(denoDir: string, deno = Deno.execPath()): Promise<void> {
  const info = await run(deno, ["info", "--json"]);
  const current = info.ok ? (JSON.parse(info.out).denoDir as string) : "";
  let lock = "{}";
  try {
    lock = Deno.readTextFileSync(`${ROOT}/deno.lock`);
  } catch { /* no lock: deno cache resolves */ }
  const same = current !== "" && Deno.realPathSync(current) === realPathOrSelf(denoDir);
  for (const { name, version } of same ? [] : lockedPackages(lock)) {
    const from = `${current}/${REGISTRY}/${name}`, to = `${denoDir}/${REGISTRY}/${name}`;
    try {
      Deno.statSync(`${from}/${version}/package.json`);
    } catch {
      continue; // not in this cache: deno cache downloads it
    }
    copyTree(`${from}/${version}`, `${to}/${version}`);
    try {
      // Only where Deno resolved the name itself; packages installed from deno.lock have none, and need none.
      Deno.copyFileSync(`${from}/registry.json`, `${to}/registry.json`);
    } catch { /* none */ }
  }
  const cached = await run(deno, ["cache", "--quiet", `--config=${ROOT}/deno.json`, `${ROOT}/main.ts`], {
    DENO_DIR: denoDir,
    DENO_NO_UPDATE_CHECK: "1",
  });
  if (!cached.ok) {
    throw new Error(
      `cannot fill the module cache ${denoDir}: the npm registry is out of reach and the packages deno.lock ` +
        `pins are not all in ${
          current || "this Deno's cache"
        } (run any deno task once where npm is reachable)\n` +
        cached.err.trim(),
    );
  }
  makeReadable(denoDir);
}
