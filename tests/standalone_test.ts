/**
 * The compiled binary's way of re-running itself (`<binary> <role> …`, no
 * `run`, no permission flags), exercised for real although `deno compile`
 * cannot download its runtime here: a stand-in executable behaves as the
 * compiled binary does (its argv shape, its baked-in permissions, taken from
 * the `compile` task) and names itself as the program to re-run, so a bug in
 * that branch of `mod/sys/spawn.ts` fails this test.
 */
import assert from "node:assert/strict";
import { selfCommand } from "../mod/sys/spawn.ts";
import { assertNothingLeft, compiledStandIn, freePorts, rolesOf } from "./harness.ts";
import { processTable } from "../mod/sys/proc.ts";
import { readSmallFile } from "../mod/sys/libc.ts";
import { CHAT_V8_FLAGS } from "../mod/chat/chat_boot.ts";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("selfCommand: a compiled binary re-runs itself as <binary> <role> …; deno run adds run, scoped flags, the config", () => {
  const perms = { listen: ["127.0.0.1:2223"] };
  assert.deepEqual(
    selfCommand(["worker", "--id=1"], perms, {
      standalone: true,
      execPath: "/opt/osps",
      mainModule: "file:///x/main.ts",
    }),
    { program: "/opt/osps", args: ["worker", "--id=1"] },
  );
  const run = selfCommand(["worker"], perms, {
    standalone: false,
    execPath: "/bin/deno",
    mainModule: "file:///x/main.ts",
  });
  assert.equal(run.program, "/bin/deno");
  assert.deepEqual(run.args, [
    "run",
    "--no-prompt",
    "--allow-net=127.0.0.1:2223",
    "--allow-ffi",
    "--config=/x/deno.json",
    "file:///x/main.ts",
    "worker",
  ]);
  // V8 flags (a chat worker's young generation): on deno run's command line; a compiled binary's runtime reads
  // them from DENO_V8_FLAGS, since it takes no runtime flags.
  const v8 = { ...perms, v8Flags: ["--max-semi-space-size=8", "--optimize-for-size"] };
  const compiled = selfCommand(["worker"], v8, { standalone: true, execPath: "/opt/osps", mainModule: "" });
  assert.deepEqual(compiled.env, { DENO_V8_FLAGS: "--max-semi-space-size=8,--optimize-for-size" });
  assert.deepEqual(compiled.args, ["worker"]);
  const ran = selfCommand(["worker"], v8, {
    standalone: false,
    execPath: "/bin/deno",
    mainModule: "file:///x/main.ts",
  });
  assert.ok(ran.args.includes("--v8-flags=--max-semi-space-size=8,--optimize-for-size"));
  assert.equal(ran.env, undefined);
});

Deno.test("a stand-in for the compiled binary runs a whole instance: every child re-run as <binary> <role>", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-standin-" });
  const standIn = `${dir}/osps`;
  // What a compiled osps is: one executable; given a role, it runs it with the permissions baked in at compile time.
  Deno.writeTextFileSync(standIn, compiledStandIn());
  Deno.chmodSync(standIn, 0o755);
  const port = freePorts(3), ircPort = freePorts(1);
  const runDir = `${dir}/run`;
  // With chat (its workers need V8 flags) and a log file (the watchdog then spawns through its log relay).
  const chat = [`--irc-port=${ircPort}`, `--data-dir=${dir}/data`, `--log-file=${dir}/osps.log`];
  const watchdog = new Deno.Command(standIn, {
    args: ["watchdog", `--port=${port}`, "--workers=2", `--run-dir=${runDir}`, ...chat],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(watchdog.stderr).text();
  try {
    const reader = watchdog.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const r = await reader.read();
      if (r.done) break;
      out += r.value;
    }
    reader.releaseLock();
    assert.match(
      out,
      /^ready dispatcher=127\.0\.0\.1:\d+ workers=/,
      await Promise.race([stderr, Promise.resolve(out)]),
    );
    const answer = await new Deno.Command(standIn, { args: ["client", `--port=${port}`, "echo", "compiled"] })
      .output();
    assert.equal(new TextDecoder().decode(answer.stdout), "compiled\n");
    // Each child was started as `<stand-in> <role> …`: it carries the stand-in's unscoped flags, not the
    // scoped `--allow-net=<host>:<port>` that the deno-run branch would have given it.
    const children = rolesOf(runDir).map((pid) => processTable().get(pid)!.cmdline).filter((c) =>
      c.some((a) => a === "dispatcher" || a === "worker")
    );
    assert.equal(children.length, 3, JSON.stringify(children));
    for (const argv of children) {
      assert.ok(argv.includes("--allow-net"), `unscoped net, as compiled: ${argv.join(" ")}`);
      assert.ok(!argv.some((a) => a.startsWith("--allow-net=")), argv.join(" "));
      const role = argv.indexOf(`${ROOT}main.ts`) + 1;
      assert.ok(
        ["dispatcher", "worker"].includes(argv[role]!),
        `the role follows the program: ${argv.join(" ")}`,
      );
    }
    // A compiled binary takes no runtime flags: the chat workers' V8 flags reach them as DENO_V8_FLAGS.
    for (const pid of rolesOf(runDir)) {
      const argv = processTable().get(pid)!.cmdline;
      // Deno asks for --allow-all to read /proc/<pid>/environ: read it through libc, as the process table does.
      const env = new TextDecoder().decode(readSmallFile(`/proc/${pid}/environ`) ?? undefined).split("\0");
      if (argv.includes("worker")) {
        assert.ok(env.includes(`DENO_V8_FLAGS=${CHAT_V8_FLAGS.join(",")}`), `${pid}`);
      } else assert.ok(!env.some((v) => v.startsWith("DENO_V8_FLAGS=")), `${argv.join(" ")}`);
    }
    const stop = await new Deno.Command(standIn, { args: ["stop", `--run-dir=${runDir}`] }).output();
    assert.equal(stop.code, 0, new TextDecoder().decode(stop.stderr));
    assert.equal((await watchdog.status).code, 0);
    await watchdog.stdout.cancel().catch(() => {});
    await assertNothingLeft({ runDir, pid: watchdog.pid });
  } finally {
    try {
      watchdog.kill("SIGKILL");
    } catch { /* exited */ }
    await stderr;
    Deno.removeSync(dir, { recursive: true });
  }
});
