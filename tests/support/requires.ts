/**
 * Tests that drive a program from a Debian package (a browser, a terminal)
 * skip, saying why, where it is missing: `deno task test` installs these
 * packages first when it runs as root (scripts/test_deps.ts), and says what
 * it could not install.
 * @module
 */

/** Why a test that runs `program` cannot run here ("" when it can): not installed, or it does not start. */
export async function missingProgram(
  program: string,
  versionFlag = "--version",
  pkg = program,
): Promise<string> {
  try {
    const o = await new Deno.Command(program, {
      args: [versionFlag],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    })
      .output();
    return o.success ? "" : `${program} ${versionFlag} exits ${o.code}`;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    return `${program} is not installed (Debian package ${pkg}; deno task test installs it when run as root)`;
  }
}
