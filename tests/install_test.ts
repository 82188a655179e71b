/** `deno task install`: an `osps` command on PATH, with the `osps` task's scoped permissions and never -A. */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("deno task install puts osps on PATH with the osps task's permissions", async () => {
  const home = Deno.makeTempDirSync({ prefix: "osps-install-" });
  try {
    const bin = `${home}/.local/bin`;
    Deno.mkdirSync(bin, { recursive: true });
    // Another HOME, and a PATH whose only candidate is ~/.local/bin; the module cache stays where it is.
    const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
      .output();
    const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir as string;
    const env = { HOME: home, PATH: `${bin}:/usr/bin:/bin`, DENO_DIR: denoDir };
    const install = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "install"],
      cwd: ROOT,
      env,
    })
      .output();
    const said = new TextDecoder().decode(install.stdout) + new TextDecoder().decode(install.stderr);
    assert.equal(install.code, 0, said);
    assert.match(said, new RegExp(`installed ${bin}/osps`));
    const shim = Deno.readTextFileSync(`${bin}/osps`);
    assert.doesNotMatch(shim, /(^|\s)(-A|--allow-all)(\s|=|$)/);
    const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).tasks as Record<string, string>;
    for (const flag of ["--allow-net=127.0.0.1,localhost", "--allow-ffi", "--allow-env=XDG_RUNTIME_DIR"]) {
      assert.ok(tasks["osps"]!.includes(flag) && shim.includes(flag), flag);
    }
    assert.ok(shim.includes(`--allow-read=/tmp,/run/user,/run/osps,/etc/osps,${home}/.config/osps`), shim);

    const run = (args: string[]) =>
      new Deno.Command("osps", {
        args,
        env: { ...env, NO_COLOR: "1" },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      })
        .output();
    const help = await run(["help"]);
    assert.equal(help.code, 0);
    assert.match(new TextDecoder().decode(help.stdout), /osps — a supervised dispatcher\/worker server/);
    const status = await run(["status", "--run-dir=/tmp/osps-install-test-none"]);
    assert.equal(status.code, 1);
    assert.match(new TextDecoder().decode(status.stderr), /no osps instance is running/);
  } finally {
    Deno.removeSync(home, { recursive: true });
  }
});
