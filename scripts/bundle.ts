/**
 * `deno task bundle [--outdir DIR]`: osps as a bundle, in `dist/bundle/` by
 * default: `main.js` and a chunk per part (`deno bundle --code-splitting`:
 * each role loads only its own), every import inside, no TypeScript or npm
 * resolution left to do when it starts; and `osps`, a short sh script that
 * runs it under the `osps` task's permissions (read from deno.json, never -A)
 * plus what deno.json itself gives the source (`--no-config` and its
 * unstable APIs: {@link BUNDLE_FLAGS}), on the Deno that wrote it.
 *
 * Each role run this way takes ~6 MiB less memory and an instance starts
 * sooner (`deno task bench --parts memory`). A bundle is a snapshot of the
 * code: after pulling new code, bundle again.
 * @module
 */
import { BUNDLE_FLAGS } from "../mod/sys/spawn.ts";
import { shWord, taskPermissions } from "./install.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The launcher: `deno run` of `main.js` beside it, with `flags`. */
export function launcher(deno: string, flags: readonly string[]): string {
  return [
    "#!/bin/sh",
    `# osps from the bundle beside this file, written by \`deno task bundle\` with Deno ${Deno.version.deno};`,
    "# the osps task's permissions (deno.json; never -A). After pulling new code, run `deno task bundle` again.",
    `exec ${
      [deno, "run", "--quiet", "--no-config", ...BUNDLE_FLAGS, ...flags].map(shWord).join(" ")
    } "$(dirname "$0")/main.js" "$@"`,
    "",
  ].join("\n");
}

/** Writes the bundle and its launcher into `outDir` (replacing what was there); returns the launcher's path. */
export async function bundle(outDir: string): Promise<string> {
  const deno = Deno.execPath();
  try {
    Deno.removeSync(outDir, { recursive: true }); // no chunks of an older bundle left beside the new one
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const out = await new Deno.Command(deno, {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "--code-splitting",
      "--minify",
      "--outdir",
      outDir,
      "main.ts",
    ],
    cwd: root,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`deno bundle failed (exit ${out.code})`);
  const tasks = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks as Record<string, string>;
  const path = `${outDir}/osps`;
  Deno.writeTextFileSync(path, launcher(deno, taskPermissions(tasks["osps"]!, deno)), { mode: 0o755 });
  Deno.chmodSync(path, 0o755);
  return path;
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--outdir");
  const outDir = at >= 0 ? Deno.args[at + 1]! : `${root}/dist/bundle`;
  try {
    console.log(`wrote ${await bundle(outDir)} (run it as osps: ${outDir}/osps watchdog …)`);
  } catch (err) {
    console.error(`osps bundle: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
