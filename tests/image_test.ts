/**
 * The container image, built by `deno task image` (podman, on a Debian base
 * made with debootstrap) and run from its own filesystem as a runtime would
 * run it (tests/support/rootfs_container.ts): tini is PID 1, osps runs as the
 * image's non-root user, a client from another host is served, the
 * HEALTHCHECK passes, and SIGTERM to PID 1 (what `podman stop` sends) stops
 * everything cleanly with exit 0. Skipped, saying why, without root, podman
 * or debootstrap.
 */
import assert from "node:assert/strict";
import { getuid } from "../mod/sys/libc.ts";
import { processTable } from "../mod/sys/proc.ts";
import { readSmallFile } from "../mod/sys/libc.ts";
import { osps, waitFor } from "./harness.ts";
import { type Host, makeNet, namespacesUsable } from "./support/netns.ts";
import { missingProgram } from "./support/requires.ts";
import { containerCommand, inspectImage, mountImage } from "./support/rootfs_container.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const TAG = "localhost/osps:test";
const dec = new TextDecoder();

async function cannotRun(): Promise<string> {
  if (getuid() !== 0) return "not root (debootstrap, podman image mount and namespaces need root)";
  for (const [program, flag] of [["podman", "--version"], ["debootstrap", "--version"]] as const) {
    const why = await missingProgram(program, flag);
    if (why) return why;
  }
  const ns = await namespacesUsable();
  return ns.ok ? "" : ns.why;
}

const why = await cannotRun();
if (why) console.log(`container image test skipped: ${why}`);

/** Pids of `pid`'s descendants (one walk of the process table). */
function descendants(pid: number): number[] {
  const table = [...processTable().values()];
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of table.filter((t) => t.stat.ppid === p && t.stat.state !== "Z")) {
      out.push(c.stat.pid);
      walk(c.stat.pid);
    }
  };
  walk(pid);
  return out;
}

/** `/proc/<pid>/<file>` (Deno asks --allow-all for any /proc path: read through libc). */
function proc(pid: number, file: string): string {
  return dec.decode(readSmallFile(`/proc/${pid}/${file}`) ?? new Uint8Array());
}

function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(proc(pid, "status"))?.[1]);
}

Deno.test({
  name:
    "deno task image builds the image; from its filesystem, tini is PID 1, osps runs as a non-root user, serves a client, passes its HEALTHCHECK and stops on SIGTERM with exit 0",
  ignore: why !== "",
  async fn() {
    const t0 = performance.now();
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "image", "--tag", TAG],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = dec.decode(build.stdout) + dec.decode(build.stderr);
    assert.equal(build.code, 0, said);
    console.log(`${said.trim()} (deno task image: ${((performance.now() - t0) / 1000).toFixed(1)} s)`);

    const { config, healthcheck } = await inspectImage(TAG);
    const [uid = "0"] = config.User.split(":");
    assert.notEqual(Number(uid), 0, "the image runs as a user of its own");
    assert.deepEqual(config.Entrypoint.slice(0, 2), ["/usr/bin/tini", "--"]);
    assert.deepEqual(Object.keys(config.Volumes), ["/var/lib/osps"]);
    assert.equal(healthcheck[0], "CMD");
    assert.match(healthcheck.join(" "), /\/readyz/);

    // Removed at the end (after it is unmounted): each build is ~250 MB.
    await using _built = {
      async [Symbol.asyncDispose]() {
        await new Deno.Command("podman", { args: ["rmi", TAG], stdout: "null", stderr: "null" }).output();
      },
    };
    await using image = await mountImage(TAG);
    await using net = await makeNet(1);
    const [host] = net.hosts as [Host];
    const cmd = containerCommand(image.root, config, ["ip", "netns", "exec", host.ns]);
    const container = new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let logs = "";
    const logsDone = (async () => {
      for await (const c of container.stderr.pipeThrough(new TextDecoderStream())) logs += c;
    })();
    const stdout = container.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    try {
      while (!out.includes("\n")) {
        const r = await stdout.read();
        if (r.done) throw new Error(`the container ended before ready:\n${logs}`);
        out += r.value;
      }
      assert.match(out, /^ready dispatcher=0\.0\.0\.0:2222 /);
      const drained = (async () => {
        while (!(await stdout.read()).done) { /* discard */ }
      })();

      // PID 1 of the container is tini; osps under it, every process as the image's user.
      const pid1 = await waitFor("PID 1", () => descendants(container.pid)[0]);
      assert.equal(proc(pid1, "cmdline").split("\0")[0], "/usr/bin/tini");
      assert.match(
        proc(pid1, "status"),
        /^NSpid:\s+\d+\s+1$/m,
        "tini is PID 1 inside",
      );
      const inside = descendants(pid1);
      assert.ok(inside.length >= 4, "the watchdog, its dispatcher and 2 workers");
      for (const p of [pid1, ...inside]) assert.equal(uidOf(p), Number(uid), `process ${p} runs as ${uid}`);

      // A client on another host (here the root namespace) is served, scoped to the container's address.
      const o = await osps(["client", `--host=${host.addr}`, "--json", "echo", "from outside"]);
      assert.equal(o.code, 0, o.stderr);
      const answer = JSON.parse(o.stdout);
      assert.equal(answer.result, "from outside");
      assert.equal(
        answer.worker_host,
        host.addr,
        "a worker announced as 0.0.0.0 is reached where the dispatcher was",
      );

      // The HEALTHCHECK, as a runtime runs it: in the container's network, as its user.
      const check = await new Deno.Command("ip", {
        args: [
          "netns",
          "exec",
          host.ns,
          "chroot",
          `--userspec=${config.User}`,
          image.root,
          ...healthcheck.slice(1),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(check.code, 0, `HEALTHCHECK: ${dec.decode(check.stderr)}`);

      // podman exec osps osps status: the instance, seen from inside the container as its user.
      const status = await new Deno.Command("nsenter", {
        args: [
          "-t",
          String(pid1),
          "-m",
          "-n",
          "-p",
          "-r",
          "-w",
          "-S",
          uid,
          "-G",
          uid,
          "/usr/local/bin/osps",
          "status",
          "--json",
        ],
        env: { PATH: "/usr/bin:/bin", HOME: "/var/lib/osps" },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(status.code, 0, dec.decode(status.stderr));
      const seen = JSON.parse(dec.decode(status.stdout));
      assert.deepEqual(
        seen.workers.filter((w: { spare: boolean }) => !w.spare).map((w: { state: string }) => w.state),
        ["ready", "ready"],
      );

      // podman stop: SIGTERM to PID 1, which passes it on; osps stops in order and exits 0.
      Deno.kill(pid1, "SIGTERM");
      const ended = await container.status;
      await drained;
      await logsDone;
      assert.equal(ended.code, 0, logs);
      assert.match(logs, /"msg":"stopped cleanly"/);
      const left = inside.filter((p) => processTable().has(p));
      assert.deepEqual(left, [], "no process of the container is left");
    } catch (err) {
      // tini, PID 1 inside, takes every process of its namespace with it; unshare then ends.
      for (const p of descendants(container.pid).slice(0, 1)) Deno.kill(p, "SIGKILL");
      try {
        container.kill("SIGKILL");
      } catch { /* ended */ }
      await container.status;
      await logsDone;
      throw new Error(`${(err as Error).message}\ncontainer logs:\n${logs}`, { cause: err });
    }
  },
});
