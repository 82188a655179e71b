/**
 * osps run from a bundle (`deno task bundle`: one JavaScript entry and its
 * chunks, every import inside, no deno.json): the watchdog re-runs the bundle
 * for each child, never the source, and a child restarted after a kill runs
 * it too; the services, the IRC port (an unstable API that deno.json enables
 * for the source) and the HTTP API work from it.
 */
import assert from "node:assert/strict";
import { configFlags, selfCommand } from "../mod/sys/spawn.ts";
import { processTable } from "../mod/sys/proc.ts";
import { bundleInto, freePorts, rolesOf, waitReplaced, withInstance } from "./harness.ts";

const CONFIG = new URL("../deno.json", import.meta.url).pathname;

Deno.test("selfCommand: a bundle's children run the bundle with --no-config and deno.json's unstable flags", () => {
  assert.deepEqual(configFlags("file:///src/osps/main.ts"), ["--config=/src/osps/deno.json"]);
  const unstable = (JSON.parse(Deno.readTextFileSync(CONFIG)).unstable as string[]).map((u) =>
    `--unstable-${u}`
  );
  assert.deepEqual(configFlags("file:///opt/osps/bundle/main.js"), ["--no-config", ...unstable]);
  const run = selfCommand(["worker"], { listen: ["127.0.0.1:2223"] }, {
    standalone: false,
    execPath: "/bin/deno",
    mainModule: "file:///opt/osps/bundle/main.js",
  });
  const tail = ["--no-config", ...unstable, "file:///opt/osps/bundle/main.js", "worker"];
  assert.deepEqual(run.args.slice(-tail.length), tail);
  assert.ok(!run.args.some((a) => a.startsWith("--config")), run.args.join(" "));
});

Deno.test("an instance run from the bundle re-runs the bundle for every child, also after a kill, and serves", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-bundle-" });
  try {
    const { main, launcher } = await bundleInto(`${dir}/bundle`);
    const [ircPort, httpPort] = [freePorts(1), freePorts(1)];
    const flags = [`--irc-port=${ircPort}`, `--http-port=${httpPort}`, `--data-dir=${dir}/data`];
    await withInstance({ workers: 2, main, flags }, async (inst) => {
      const bundled = (pid: number) => {
        const argv = processTable().get(pid)!.cmdline;
        assert.ok(
          argv.includes(`file://${main}`) || argv.includes(main),
          `runs the bundle: ${argv.join(" ")}`,
        );
        assert.ok(argv.includes("--no-config"), argv.join(" "));
        assert.ok(!argv.some((a) => a.endsWith("main.ts")), argv.join(" "));
      };
      const children = rolesOf(inst.runDir).filter((pid) => pid !== inst.pid);
      assert.equal(children.length, 3);
      children.forEach(bundled);

      // The launcher `deno task bundle` writes beside it (the osps task's permissions) runs a client.
      const client = await new Deno.Command(launcher, {
        args: ["client", `--port=${inst.port}`, "upper", "bundled"],
      })
        .output();
      assert.equal(
        new TextDecoder().decode(client.stdout),
        "BUNDLED\n",
        new TextDecoder().decode(client.stderr),
      );
      const http = await fetch(`http://127.0.0.1:${httpPort}/v1/requests/echo`, {
        method: "POST",
        body: "over http",
      });
      assert.equal(await http.text(), "over http");
      // The IRC port is opened with reusePort (an unstable API): a registration completes from the bundle.
      const irc = await Deno.connect({ hostname: "127.0.0.1", port: ircPort });
      await irc.write(new TextEncoder().encode("NICK b\r\nUSER b 0 * :b\r\n"));
      let text = "";
      const buf = new Uint8Array(4096);
      while (!text.includes(" 001 b ")) {
        const n = await irc.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      irc.close();
      assert.match(text, / 001 b /);

      const victim = (await inst.status()).workers[0]!.pid;
      Deno.kill(victim, "SIGKILL");
      const after = await waitReplaced(inst, 1, victim);
      bundled(after.workers[0]!.pid);
      const again = await inst.client(["echo", "after the kill"]);
      assert.equal(again.stdout, "after the kill\n");
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
