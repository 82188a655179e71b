/**
 * scripts/test_deps.ts, the first step of `deno task test`: it asks dpkg what
 * is missing and has apt-get install exactly that when root; otherwise it says
 * what it skips. Run against stand-ins for dpkg-query, apt-get and systemctl
 * (first on PATH), which record how they were called.
 */
import assert from "node:assert/strict";
import { TEST_DEPS } from "../scripts/test_deps.ts";
import { getuid } from "../mod/sys/libc.ts";

const SCRIPT = new URL("../scripts/test_deps.ts", import.meta.url).pathname;

/** Runs the script with stand-ins that report `installed` as the only installed packages. */
async function withStandIns(installed: string[], aptWorks = true) {
  const dir = Deno.makeTempDirSync({ prefix: "osps-testdeps-" });
  try {
    const log = `${dir}/calls`;
    const stub = (name: string, body: string) =>
      Deno.writeTextFileSync(`${dir}/${name}`, `#!/bin/sh\necho "${name} $*" >> ${log}\n${body}\n`, {
        mode: 0o755,
      });
    stub(
      "dpkg-query",
      [
        `for p in "$@"; do case "$p" in -*) continue;; esac`,
        `  case " ${installed.join(" ")} " in *" $p "*) echo "$p installed";;`,
        `  *) echo "dpkg-query: no packages found matching $p" >&2;; esac; done`,
      ].join("\n"),
    );
    stub("apt-get", aptWorks ? "exit 0" : "echo 'E: Unable to locate package' >&2; exit 100");
    stub("systemctl", "exit 0");
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--allow-run=dpkg-query,apt-get,systemctl",
        "--allow-sys=uid",
        SCRIPT,
      ],
      env: { PATH: `${dir}:/usr/bin:/bin`, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    let calls = "";
    try {
      calls = Deno.readTextFileSync(log);
    } catch { /* none */ }
    return { code: o.code, out: new TextDecoder().decode(o.stdout), calls };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

const all = TEST_DEPS.map((d) => d.pkg);

Deno.test("test deps: nothing to do and nothing said when dpkg has every package", async () => {
  const r = await withStandIns(all);
  assert.equal(r.code, 0);
  assert.equal(r.out, "");
  assert.doesNotMatch(r.calls, /apt-get/);
});

Deno.test("test deps: as root, apt-get installs exactly what dpkg says is missing", {
  ignore: getuid() !== 0,
}, async () => {
  const r = await withStandIns(all.filter((p) => p !== "chromium" && p !== "tmux"));
  assert.equal(r.code, 0, r.out);
  assert.match(r.calls, /^apt-get update/m);
  assert.match(r.calls, /^apt-get install -y -q --no-install-recommends chromium tmux$/m);
  assert.match(r.out, /installing chromium, tmux from Debian/);
});

Deno.test(
  "test deps: as root, when apt-get fails it says so and which tests will be skipped, and does not fail the run",
  {
    ignore: getuid() !== 0,
  },
  async () => {
    const r = await withStandIns(all.filter((p) => p !== "tmux"), false);
    assert.equal(r.code, 0);
    assert.match(r.out, /tmux not installed \(apt-get failed: E: Unable to locate package\)/);
    assert.match(r.out, /tmux: tests\/status_watch_test\.ts/);
  },
);

Deno.test("test deps: not root, it installs nothing and says what to run as root", {
  ignore: getuid() === 0,
}, async () => {
  const r = await withStandIns(all.filter((p) => p !== "podman"));
  assert.doesNotMatch(r.calls, /apt-get/);
  assert.match(r.out, /podman not installed \(not root; as root: apt-get install podman\)/);
});
