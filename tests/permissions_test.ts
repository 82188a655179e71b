/**
 * Least privilege: the roles the watchdog spawns run with exactly the flags of
 * `permissionFlags()` in `mod/spawn.ts`, those flags deny everything outside
 * the role's scope, a real worker under them cannot listen anywhere else, and
 * no task in deno.json grants everything.
 */
import assert from "node:assert/strict";
import { instancePaths } from "../mod/cli/config.ts";
import { ensureFifo } from "../mod/ipc/fifo.ts";
import { toArgv } from "../mod/cli/cli.ts";
import { processTable } from "../mod/sys/proc.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { netScope, permissionFlags } from "../mod/sys/spawn.ts";
import { freePorts, withInstance } from "./harness.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

Deno.test("no deno.json task grants every permission (-A / --allow-all)", () => {
  const json = JSON.parse(Deno.readTextFileSync(CONFIG)) as { tasks: Record<string, string> };
  assert.ok(Object.keys(json.tasks).length > 0);
  for (const [name, cmd] of Object.entries(json.tasks)) {
    assert.doesNotMatch(cmd, /(^|\s)(-A|--allow-all)(\s|=|$)/, `task ${name}: ${cmd}`);
  }
});

Deno.test("the watchdog spawns each role with exactly permissionFlags() for its own address", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    const s = await inst.status();
    const table = processTable();
    for (const child of [s.dispatcher, ...s.workers]) {
      const argv = table.get(child.pid)?.cmdline;
      assert.ok(argv, `cmdline of ${child.pid}`);
      const main = argv.findIndex((a) => a === MAIN || a === `file://${MAIN}`);
      assert.ok(main > 0, argv.join(" "));
      assert.equal(argv[1], "run");
      const flags = argv.slice(2, main).filter((a) => !a.startsWith("--config="));
      assert.deepEqual(
        flags,
        permissionFlags({ listen: [netScope("127.0.0.1", child.port)] }),
        argv.join(" "),
      );
      assert.ok(!argv.some((a) => /^--allow-(read|write|run|env|sys|all)|^-A$/.test(a)), argv.join(" "));
    }
  });
});

const PROBE = `
const [port, other, secret] = Deno.args.map((a, i) => (i < 2 ? Number(a) : a));
const out = {};
async function attempt(name, fn) {
  try {
    await fn();
    out[name] = "allowed";
  } catch (e) {
    out[name] = e instanceof Deno.errors.NotCapable ? "denied" : \`\${e.name}: \${e.message}\`;
  }
}
await attempt("read /etc/hostname", () => Deno.readTextFile("/etc/hostname"));
await attempt("read a file of the run dir", () => Deno.readTextFile(secret));
await attempt("write to /tmp", () => Deno.writeTextFile(secret + ".new", "x"));
await attempt("connect to another port", async () => (await Deno.connect({ hostname: "127.0.0.1", port: other })).close());
await attempt("listen on another port", () => Deno.listen({ hostname: "127.0.0.1", port: other }).close());
await attempt("listen on all interfaces", () => Deno.listen({ hostname: "0.0.0.0", port }).close());
await attempt("run a program", () => new Deno.Command("true").output());
await attempt("read the environment", () => Deno.env.get("HOME"));
await attempt("read /proc/self/status", () => Deno.readTextFile("/proc/self/status"));
await attempt("listen on its own address", () => Deno.listen({ hostname: "127.0.0.1", port }).close());
await attempt("load a native library (FFI)", () => Deno.dlopen("libc.so.6", {}).close());
console.log(JSON.stringify(out));
`;

Deno.test("a role's permission flags deny files, other addresses, programs and the environment", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-perm-" });
  try {
    Deno.writeTextFileSync(`${dir}/probe.js`, PROBE);
    Deno.writeTextFileSync(`${dir}/secret`, "not for roles");
    const port = freePorts(2);
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissionFlags({ listen: [netScope("127.0.0.1", port)] }),
        `${dir}/probe.js`,
        String(port),
        String(port + 1),
        `${dir}/secret`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(o.stderr);
    assert.equal(o.code, 0, stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(o.stdout)), {
      "read /etc/hostname": "denied",
      "read a file of the run dir": "denied",
      "write to /tmp": "denied",
      "connect to another port": "denied",
      "listen on another port": "denied",
      "listen on all interfaces": "denied",
      "run a program": "denied",
      "read the environment": "denied",
      "read /proc/self/status": "denied",
      "listen on its own address": "allowed",
      // The honest exception (docs/SECURITY.md): Deno needs unscoped FFI to map shared memory.
      "load a native library (FFI)": "allowed",
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("a real worker under those flags boots on its own port and is refused any other", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-perm-" });
  const shm = `/osps-permtest-${crypto.randomUUID().slice(0, 8)}`;
  const instance = 4242;
  const segment = Segment.create(shm, 2, instance);
  // What the watchdog makes before it spawns a worker: its doorbell FIFOs.
  ensureFifo(instancePaths(dir).dwtube(1));
  ensureFifo(instancePaths(dir).wdtube(1));
  const port = freePorts(2);
  const worker = (listenPort: number) =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...permissionFlags({ listen: [netScope("127.0.0.1", port)] }),
        `--config=${CONFIG}`,
        MAIN,
        ...toArgv("worker", { id: 1, port: listenPort, shm, instance, "run-dir": dir }),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  try {
    const rogue = worker(port + 1);
    await rogue.stdin.close();
    const denied = await rogue.output();
    const err = new TextDecoder().decode(denied.stderr);
    assert.equal(denied.code, 100, `cannot boot (no restart loop): ${err}`);
    assert.match(err, /cannot listen on 127\.0\.0\.1:\d+: permission denied/);

    const good = worker(port);
    const lines = good.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const r = await lines.read();
      if (r.done) break;
      out += r.value;
    }
    assert.match(out, /^ready worker 1 port \d+/, "the same flags are enough to serve");
    await good.stdin.close(); // the watchdog is gone: the worker stops on its own
    await lines.cancel();
    const status = await good.status;
    await good.stderr.cancel();
    assert.equal(status.code, 0);
  } finally {
    segment.close();
    Segment.unlink(shm);
    Deno.removeSync(dir, { recursive: true });
  }
});
