/**
 * `deno task install`: an `osps` command on PATH, with the `osps` task's
 * scoped permissions and never -A, that works however Deno came: from `npx`
 * (a binary in the installing user's npm cache, nowhere on PATH, pruned
 * later), for another user than the installer (a service user with no home),
 * and with `DENO_INSTALL_ROOT`.
 */
import assert from "node:assert/strict";
import { getuid } from "../mod/sys/libc.ts";
import { freePorts, waitFor } from "./harness.ts";
import { copyTree, lockedPackages, makeReadable } from "../scripts/deno_dir.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** The test runner's module cache: the installer copies the locked packages from it (no npm needed). */
async function denoDir(): Promise<string> {
  const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
    .output();
  return JSON.parse(dec(info.stdout)).denoDir as string;
}

/** A copy of this Deno where `npx deno` keeps it: in the npm cache of the user whose home is `home`. */
function npxDeno(home: string): string {
  const dir = `${home}/.npm/_npx/9f8e7d6c5b4a3921/node_modules/deno`;
  Deno.mkdirSync(dir, { recursive: true });
  try {
    Deno.linkSync(Deno.realPathSync(Deno.execPath()), `${dir}/deno`);
  } catch {
    Deno.copyFileSync(Deno.execPath(), `${dir}/deno`);
  }
  return `${dir}/deno`;
}

async function install(deno: string, env: Record<string, string>, checkout = ROOT) {
  const o = await new Deno.Command(deno, {
    args: ["task", "-q", "install"],
    cwd: checkout,
    env,
    clearEnv: true,
  })
    .output();
  return { code: o.code, said: dec(o.stdout) + dec(o.stderr) };
}

/** Runs the installed `osps` as `user` (or as us), found on `PATH` alone; `HOME` is the runner's. */
function osps(args: string[], env: Record<string, string>, user?: string) {
  const [program, ...pre] = user
    ? ["runuser", "-u", user, "--", "env", "-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`), "osps"]
    : ["osps"];
  return new Deno.Command(program!, {
    args: [...pre, ...args],
    cwd: user ? "/" : undefined, // where the user may be: this test's own directory may be root's alone
    env: user ? {} : { ...env, NO_COLOR: "1" },
    clearEnv: !user,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Starts `osps watchdog` from the installed command; resolves once it is ready. */
async function watchdog(args: string[], env: Record<string, string>, user?: string) {
  const child = osps(["watchdog", ...args], env, user).spawn();
  let stderr = "";
  const stderrDone = (async () => {
    for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) stderr += c;
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const r = await reader.read();
    if (r.done) {
      await child.status;
      await stderrDone;
      throw new Error(`watchdog ended before ready:\n${stderr}`);
    }
    out += r.value;
  }
  const drained = (async () => {
    while (!(await reader.read()).done) { /* discard */ }
  })();
  return {
    readyLine: out.trim(),
    logs: () => stderr,
    async exited() {
      const s = await child.status;
      await drained;
      await stderrDone;
      return s.code;
    },
  };
}

Deno.test("installed under npx, osps runs on its pinned Deno with deno nowhere on PATH, even after npm's cache is pruned", async () => {
  const home = Deno.makeTempDirSync({ prefix: "osps-install-" });
  try {
    const bin = `${home}/.local/bin`;
    Deno.mkdirSync(bin, { recursive: true });
    const deno = npxDeno(home);
    // PATH holds no deno at all; the module cache with the locked packages stands in for the network.
    const env = { HOME: home, PATH: bin, DENO_DIR: await denoDir() };
    const inst = await install(deno, env);
    assert.equal(inst.code, 0, inst.said);
    assert.match(inst.said, new RegExp(`installed ${bin}/osps \\(Deno ${Deno.version.deno} pinned`));
    assert.doesNotMatch(inst.said, /not on PATH/);
    const shim = Deno.readTextFileSync(`${bin}/osps`);
    assert.doesNotMatch(shim, /(^|\s)(-A|--allow-all)(\s|=|$)/);
    assert.ok(!shim.includes("/_npx/"), "the npm cache's Deno is not referenced");
    const tasks = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).tasks as Record<string, string>;
    for (const flag of ["--allow-net=127.0.0.1,localhost", "--allow-ffi", "--allow-env=XDG_RUNTIME_DIR"]) {
      assert.ok(tasks["osps"]!.includes(flag) && shim.includes(flag), flag);
    }
    // $HOME is the runner's, expanded when osps runs.
    assert.ok(shim.includes("/etc/osps,${HOME}/.config/osps"), shim);

    Deno.removeSync(`${home}/.npm`, { recursive: true }); // npm prunes its npx cache
    const run = { HOME: home, PATH: bin }; // not even DENO_DIR: the command carries its own cache
    const help = await osps(["help"], run).output();
    assert.equal(help.code, 0, dec(help.stderr));
    assert.match(dec(help.stdout), /osps — a supervised dispatcher\/worker server/);

    const port = freePorts(3);
    const runDir = `${home}/run`;
    const w = await watchdog([`--port=${port}`, "--workers=1", `--run-dir=${runDir}`], run);
    try {
      assert.match(w.readyLine, /^ready /);
      const hi = await osps(["client", `--port=${port}`, "echo", "hi"], run).output();
      assert.equal(dec(hi.stdout), "hi\n", dec(hi.stderr));
    } finally {
      const stop = await osps(["stop", `--run-dir=${runDir}`], run).output();
      assert.equal(stop.code, 0, dec(stop.stderr));
      assert.equal(await w.exited(), 0, w.logs());
    }
  } finally {
    Deno.removeSync(home, { recursive: true });
  }
});

Deno.test("DENO_INSTALL_ROOT on PATH installs there without claiming it is not on PATH", async () => {
  const home = Deno.makeTempDirSync({ prefix: "osps-install-" });
  try {
    const root = `${home}/usr-local`;
    Deno.mkdirSync(`${root}/bin`, { recursive: true });
    const env = {
      HOME: home,
      PATH: `/usr/sbin:${root}/bin/:/usr/bin:/bin`,
      DENO_INSTALL_ROOT: `${root}/`,
      DENO_DIR: await denoDir(),
    };
    const inst = await install(Deno.execPath(), env);
    assert.equal(inst.code, 0, inst.said);
    assert.match(inst.said, new RegExp(`installed ${root}/bin/osps `));
    assert.doesNotMatch(inst.said, /not on PATH/);
    const elsewhere = await install(Deno.execPath(), { ...env, PATH: "/usr/bin:/bin" });
    assert.match(elsewhere.said, new RegExp(`note: ${root}/bin is not on PATH`));
  } finally {
    Deno.removeSync(home, { recursive: true });
  }
});

const root = getuid() === 0;
if (!root) console.log("install test for a system user skipped: not root (useradd and runuser need root)");

Deno.test({
  name:
    "installed by root, osps serves a system user with no home: its watchdog with chat in its data dir, status from another shell",
  ignore: !root,
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "osps-install-" });
    const user = `osps-t${crypto.randomUUID().slice(0, 6)}`;
    const made = await new Deno.Command("useradd", {
      args: [
        "--system",
        "--no-create-home",
        "--home-dir",
        `/home/${user}`,
        "--shell",
        "/usr/sbin/nologin",
        user,
      ],
    }).output();
    assert.ok(made.success, dec(made.stderr));
    try {
      Deno.chmodSync(dir, 0o755);
      // A checkout every user may read, as /opt/osps in docs/DEPLOY.md (this one may be under root's 0700 home).
      const checkout = `${dir}/opt-osps`;
      Deno.mkdirSync(checkout);
      for (const f of ["deno.json", "deno.lock", "main.ts", "mod", "roles", "scripts"]) {
        if (Deno.statSync(`${ROOT}${f}`).isDirectory) copyTree(`${ROOT}${f}`, `${checkout}/${f}`);
        else Deno.copyFileSync(`${ROOT}${f}`, `${checkout}/${f}`);
      }
      makeReadable(checkout);
      const env = { HOME: "/root", PATH: "/usr/bin:/bin", DENO_INSTALL_ROOT: dir, DENO_DIR: await denoDir() };
      const inst = await install(Deno.execPath(), env, checkout);
      assert.equal(inst.code, 0, inst.said);
      // What the service user owns (as systemd's StateDirectory= and RuntimeDirectory= make them).
      const own = `${dir}/var`;
      Deno.mkdirSync(own);
      const chown = await new Deno.Command("chown", { args: [user, own] }).output();
      assert.ok(chown.success);
      const as = { HOME: `/home/${user}`, PATH: `${dir}/bin:/usr/bin:/bin` };
      const port = freePorts(3);
      const irc = freePorts(1);
      const runDir = `${own}/run`;
      const w = await watchdog(
        [
          `--port=${port}`,
          "--workers=1",
          `--run-dir=${runDir}`,
          `--irc-port=${irc}`,
          `--data-dir=${own}/chat`,
        ],
        as,
        user,
      );
      try {
        assert.match(w.readyLine, /^ready /);
        const st = await waitFor("status as the user", async () => {
          const o = await osps(["status", `--run-dir=${runDir}`, "--json"], as, user).output();
          return o.code === 0 ? JSON.parse(dec(o.stdout)) : null;
        });
        assert.equal(st.workers.length, 1);
        assert.ok(
          Deno.statSync(`${own}/chat/chat.sqlite`).isFile,
          "the chat store is in its data dir",
        );
        assert.equal(
          Deno.statSync(`${own}/chat`).uid,
          Number(dec(
            (await new Deno.Command("id", {
              args: ["-u", user],
              stdout: "piped",
            }).output()).stdout,
          )),
        );
      } finally {
        const stop = await osps(["stop", `--run-dir=${runDir}`], as, user).output();
        assert.equal(stop.code, 0, dec(stop.stderr));
        assert.equal(await w.exited(), 0, w.logs());
      }
      // Without --data-dir the chat's default is under the user's home, which does not exist: a clear refusal.
      const homeless = osps(
        [
          "watchdog",
          `--port=${port}`,
          `--run-dir=${runDir}`,
          `--irc-port=${irc}`,
        ],
        as,
        user,
      );
      const o = await homeless.output();
      assert.equal(o.code, 100, dec(o.stderr));
      assert.match(
        dec(o.stderr),
        new RegExp(`cannot make the data dir /home/${user}/\\.local/state/osps .*: set --data-dir`),
      );
      assert.doesNotMatch(dec(o.stderr), /--allow-|Requires write access/);
    } finally {
      await new Deno.Command("userdel", { args: [user] }).output();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("the installer reads deno.lock's package names, scoped and resolved against peers alike", () => {
  const lock = JSON.stringify({
    npm: {
      "hono@4.13.19": {},
      "@logtape/logtape@1.0.0": {},
      "@hono/zod-validator@0.9.1_hono@4.13.19_zod@4.6.7": {},
      "ajv-draft-04@1.0.0_ajv@8.17.1": {},
    },
  });
  assert.deepEqual(lockedPackages(lock), [
    { name: "hono", version: "4.13.19" },
    { name: "@logtape/logtape", version: "1.0.0" },
    { name: "@hono/zod-validator", version: "0.9.1" },
    { name: "ajv-draft-04", version: "1.0.0" },
  ]);
});
