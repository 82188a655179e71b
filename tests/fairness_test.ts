/**
 * Fair shares, played by real addresses: each client host is a network
 * namespace of its own (loopback aliases would all count as one address, as
 * every local user does). One address sends more `sleep` requests than the
 * pool has places and fills the queue; another address is still served at
 * once. Skipped, saying why, where namespaces cannot be made (not root).
 */
import assert from "node:assert/strict";
import { osps, RUN_FLAGS, startInstance, type StatusJson, waitFor } from "./harness.ts";
import { type Host, makeNet, namespacesUsable } from "./support/netns.ts";

const usable = await namespacesUsable();
if (!usable.ok) console.log(`fairness tests skipped: ${usable.why}`);

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const PORT = 2222;

/** Starts `osps bench` on `host` against the dispatcher at `target`, in the background. */
function load(host: Host, target: string, args: string[]): Deno.ChildProcess {
  const flags = RUN_FLAGS.map((f) => f.startsWith("--allow-net=") ? `${f},${target}` : f);
  return new Deno.Command(host.wrap[0]!, {
    args: [
      ...host.wrap.slice(1),
      Deno.execPath(),
      ...flags,
      MAIN,
      "bench",
      `--host=${target}`,
      `--port=${PORT}`,
      ...args,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

for (const n of [1, 4]) {
  Deno.test({
    name:
      `fair shares (${n} ticket${
        n > 1 ? "s" : ""
      } per worker): one address holding every place it may with ` +
      "sleep and filling the queue leaves a place another address is served in at once",
    ignore: !usable.ok,
    async fn() {
      await using net = await makeNet(3);
      const [a, hogHost, guestHost] = net.hosts as [Host, Host, Host];
      const inst = await startInstance({
        workers: 2,
        port: PORT,
        wrap: a.wrap,
        flags: [`--host=${a.addr}`, `--worker-concurrency=${n}`],
      });
      // More requests than places and queue together (2n places, 64 in the queue): each holds its place for 20 s.
      const clients = 2 * n + 64 + 16;
      const hog = load(hogHost, a.addr, [`--clients=${clients}`, `--requests=${clients}`, "sleep", "20000"]);
      try {
        const status = async () => {
          const o = await osps(["status", `--run-dir=${inst.runDir}`, "--json"]);
          assert.equal(o.code, 0, o.stderr);
          return JSON.parse(o.stdout) as StatusJson & { queue_depth: number };
        };
        const busy = (s: StatusJson) => s.workers.reduce((t, w) => t + w.busy, 0);
        const held = await waitFor("the hog holding its places and the whole queue", async () => {
          const s = await status();
          return s.queue_depth >= 60 && busy(s) > 0 ? s : null;
        }, 30_000);
        console.log(`hog: ${busy(held)} of ${2 * n} places busy, ${held.queue_depth} waiting`);
        const guest = await osps(
          ["client", `--host=${a.addr}`, `--port=${PORT}`, "--json", "echo", "my turn"],
          { wrap: guestHost.wrap, net: [a.addr] },
        );
        assert.equal(guest.code, 0, `the guest was refused: ${guest.stdout}${guest.stderr}`);
        assert.equal(JSON.parse(guest.stdout).result, "my turn");
        // …while the hog still held every place it could: its sleeps run on, its waiters still wait.
        const after = await status();
        assert.ok(busy(after) > 0, "the hog's sleeps still run");
        assert.ok(after.queue_depth >= 60, "the hog's waiters still wait");
      } finally {
        hog.kill("SIGKILL");
        await hog.status;
        inst.process.kill("SIGTERM");
        await inst.exited();
      }
    },
  });
}
