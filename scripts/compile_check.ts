/**
 * The first step of `deno task compile`: `deno compile` needs Deno's runtime
 * for compiled programs (`denort`), which it downloads from dl.deno.land when
 * it is not cached. Offline it would try for over a minute and leave an empty
 * `dist/`; this says at once why it cannot, and what to do instead.
 * @module
 */
const version = Deno.version.deno;
const file = `denort-${Deno.build.target}.zip`;
const url = `https://dl.deno.land/release/v${version}/${file}`;

/** Why `deno compile` cannot get its runtime here, or "" when it can. */
export async function denortMissing(): Promise<string> {
  if (Deno.env.get("DENORT_BIN")) return ""; // deno compile takes this runtime as it is
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
    .output();
  const denoDir = info.success ? JSON.parse(new TextDecoder().decode(info.stdout)).denoDir : "";
  try {
    Deno.statSync(`${denoDir}/dl/release/v${version}/${file}`);
    return ""; // cached by an earlier compile
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) return ""; // a DENO_DIR elsewhere: deno compile will see
  }
  try {
    const r = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(5_000) });
    await r.body?.cancel();
    return r.ok ? "" : `${url} answers ${r.status}`;
  } catch (err) {
    const e = err as Error & { cause?: { message?: string } };
    return `${url} cannot be reached (${e.cause?.message ?? e.message})`;
  }
}

if (import.meta.main) {
  const why = await denortMissing();
  if (why) {
    console.error(
      `osps compile: deno compile needs Deno's runtime for compiled programs (denort ${version}), which is not ` +
        `cached here, and ${why}.\nCompile on a machine that reaches dl.deno.land, or set DENORT_BIN to a ` +
        `denort ${version} binary; without compiling, \`deno task install\` puts an osps command on PATH.`,
    );
    Deno.exit(1);
  }
}
