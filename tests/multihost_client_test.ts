/**
 * The documented multi-host client, run as users run it: `osps client --host
 * 10.0.0.1 …`, `osps chat --host …` and `osps bench --host …` under the
 * permissions of the `osps` task (loopback only, like the installed command),
 * against hosts that are network namespaces. The command runs again scoped to
 * the dispatcher and the hosts of its workers (HOSTS), never unscoped.
 * Skipped, saying why, where namespaces cannot be made (not root).
 */
import assert from "node:assert/strict";
import { osps, RUN_FLAGS, startInstance, waitFor } from "./harness.ts";
import { namespacesUsable } from "./support/netns.ts";
import { type Host, makeNet } from "./support/netns.ts";
import { cluster, PORT } from "./support/cluster.ts";
import { processTable } from "../mod/sys/proc.ts";

const usable = await namespacesUsable();
if (!usable.ok) console.log(`multihost client tests skipped: ${usable.why}`);

/** Command lines of live processes that carry `marker` in their arguments. */
function commandLinesWith(marker: string): string[][] {
  return [...processTable().values()].map((p) => p.cmdline).filter((c) => c.includes(marker));
}

Deno.test({
  name:
    "osps client --host <another host> works under the osps task's loopback-only permissions, scoped to the dispatcher's worker hosts",
  ignore: !usable.ok,
  async fn() {
    await using c = await cluster();
    assert.ok(RUN_FLAGS.includes("--allow-net=127.0.0.1,localhost"), "the osps task's scope");
    const hosts = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const o = await osps(["client", `--host=${c.a.addr}`, `--port=${PORT}`, "--json", "echo", `hi ${i}`]);
      assert.equal(o.code, 0, o.stderr);
      assert.doesNotMatch(o.stderr, /--allow-net|Requires net access/);
      const r = JSON.parse(o.stdout);
      assert.equal(r.result, `hi ${i}`);
      hosts.add(r.worker_host);
    }
    assert.deepEqual([...hosts].sort(), [c.a.addr, c.b.addr].sort(), "local and remote workers both serve");

    // While a request runs, the client's process is scoped: the dispatcher and the two hosts, no FFI, no -A.
    const marker = `--timeout-ms=${20_000 + Math.floor(Math.random() * 10_000)}`;
    const slow = osps([
      "client",
      `--host=${c.a.addr}`,
      `--port=${PORT}`,
      marker,
      "--repeat=3",
      "sleep",
      "500",
    ]);
    const scoped = await waitFor("the scoped client process", () => {
      const lines = commandLinesWith(marker).filter((l) => l.some((a) => a.startsWith("--allow-net=")));
      return lines.find((l) => l.some((a) => a.includes(c.b.addr))) ?? null;
    }, 10_000);
    const done = await slow;
    assert.equal(done.code, 0, done.stderr);
    const net = scoped!.find((a) => a.startsWith("--allow-net="))!;
    assert.deepEqual(
      net.slice("--allow-net=".length).split(",").sort(),
      [`${c.a.addr}:${PORT}`, c.a.addr, c.b.addr].sort(),
    );
    assert.ok(!scoped!.includes("--allow-ffi") && !scoped!.some((a) => /^(-A|--allow-all)$/.test(a)));
  },
});

Deno.test({
  name: "osps chat --host and osps bench --host reach another host under the osps task's permissions",
  ignore: !usable.ok,
  async fn() {
    await using net = await makeNet(1);
    const [a] = net.hosts as [Host];
    const data = Deno.makeTempDirSync({ prefix: "osps-mh-chat-" });
    const inst = await startInstance({
      workers: 1,
      port: PORT,
      wrap: a.wrap,
      flags: [`--host=${a.addr}`, "--irc-port=6667", `--data-dir=${data}`],
    });
    try {
      const chat = await osps(["chat", `--host=${a.addr}`, `--port=${PORT}`, "--nick=far", "#osps"], {
        stdin: "hello from afar\n/quit\n",
      });
      assert.equal(chat.code, 0, chat.stderr);
      assert.match(chat.stdout, /connected as far; talking in #osps/);
      assert.match(chat.stdout, /#osps <far> hello from afar/);
      const joined = chat.stdout.indexOf("* far joined #osps");
      assert.ok(
        joined >= 0 && joined < chat.stdout.indexOf("<far> hello from afar"),
        "typed-ahead lines wait for the join",
      );

      const bench = await osps(["bench", `--host=${a.addr}`, `--port=${PORT}`, "--requests=40", "--json"]);
      assert.equal(bench.code, 0, bench.stderr);
      const r = JSON.parse(bench.stdout);
      assert.equal(r.requests.ok, 40, bench.stdout);
    } finally {
      inst.process.kill("SIGTERM");
      assert.equal(await inst.exited(), 0, inst.logs());
      Deno.removeSync(data, { recursive: true });
    }
  },
});
