/**
 * `--log-file`: every role's lines go to the file (children's through the
 * watchdog), and after logrotate's rename and SIGUSR2 they go to a new file
 * at the path while the renamed one keeps what it had.
 */
import assert from "node:assert/strict";
import { waitFor, waitReplaced, withInstance } from "./harness.ts";

Deno.test("--log-file gets every role's lines; SIGUSR2 after a rename reopens it", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-logs-" });
  const path = `${dir}/osps.log`;
  const read = (p: string) => {
    try {
      return Deno.readTextFileSync(p);
    } catch {
      return "";
    }
  };
  try {
    const inst = await withInstance({ workers: 1, flags: [`--log-file=${path}`] }, async (inst) => {
      // Lines reach the file through a queue: wait for each (the ready line on stdout may come first).
      await waitFor(
        "every role's lines in the file",
        () =>
          [
            /dispatcher\[\d+\].*serving on/,
            /worker 1\[\d+\].*serving on/,
            /watchdog\[\d+\].*all 2 children ready/,
          ]
            .every((line) => line.test(read(path))),
      );

      Deno.renameSync(path, `${path}.1`); // what logrotate does
      Deno.kill(inst.pid, "SIGUSR2");
      await waitFor("the reopened file", () => read(path).includes("log file reopened"));
      const pid = (await inst.status()).workers[0]!.pid;
      Deno.kill(pid, "SIGKILL");
      await waitReplaced(inst, 1, pid);
      await waitFor(
        "the new worker's line in the new file",
        () => /worker 1\[\d+\].*serving on/.test(read(path)),
      );
    });
    const rotated = read(`${path}.1`), current = read(path);
    assert.doesNotMatch(rotated, /log file reopened/);
    assert.match(current, /stopped cleanly/);
    assert.doesNotMatch(inst.logs(), /serving on/, "nothing of that went to stderr");
    for (const line of current.trimEnd().split("\n")) {
      assert.match(line, /^\d{4}-\d\d-\d\dT\S+ [A-Z]+ +(watchdog|dispatcher|worker \d+)\[\d+\] /);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("--log-file with --log-format json: one JSON object per line from every role", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-logs-" });
  const path = `${dir}/osps.jsonl`;
  try {
    await withInstance({ workers: 1, flags: [`--log-file=${path}`, "--log-format=json"] }, async (inst) => {
      assert.equal((await inst.client(["echo", "x"])).code, 0);
    });
    const roles = new Set<string>();
    for (const line of Deno.readTextFileSync(path).trimEnd().split("\n")) {
      const rec = JSON.parse(line) as { role: string; level: string; msg: string };
      roles.add(rec.role);
    }
    assert.deepEqual([...roles].sort(), ["dispatcher", "watchdog", "worker 1"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
