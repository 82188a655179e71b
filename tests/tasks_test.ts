/** The deno.json tasks the README shows print what osps says, not the command lines deno task runs. */
import assert from "node:assert/strict";

const ROOT = new URL("..", import.meta.url).pathname;

Deno.test("deno task -q start and deno task -q osps print no task command line", async () => {
  for (const args of [["start", "--help"], ["osps", "help", "client"]]) {
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", ...args],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(o.stdout), err = new TextDecoder().decode(o.stderr);
    assert.equal(o.code, 0, err);
    assert.match(out, /^Usage: osps /);
    assert.doesNotMatch(out + err, /Task |deno run /);
  }
});
