/**
 * `docs/HTTP.md` as typed: every `$` line of its `console` blocks runs in a
 * shell (`curl` and `deno task` as a person would run them, from the
 * repository) against an instance started with the flags of its first `sh`
 * block, with that instance's ports in place of 2222, 8080 and 6667; its
 * output must be the lines under it (`…` stands for any text). The tables
 * are checked against the flag table.
 */
import assert from "node:assert/strict";
import { COMMANDS } from "../mod/cli/commands.ts";
import { freePorts, withInstance } from "./harness.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DOC = Deno.readTextFileSync(new URL("../docs/HTTP.md", import.meta.url));

/** Each command of the console blocks with the output it must print. */
function examples(): Array<{ command: string; expected: string[] }> {
  const out: Array<{ command: string; expected: string[] }> = [];
  for (const m of DOC.matchAll(/^```console\n([\s\S]*?)^```$/gm)) {
    for (const line of m[1]!.split("\n").filter((l) => l !== "")) {
      if (line.startsWith("$ ")) out.push({ command: line.slice(2), expected: [] });
      else out.at(-1)!.expected.push(line);
    }
  }
  return out;
}

function matches(pattern: string, line: string): boolean {
  const re = pattern.split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*");
  return new RegExp(`^${re}$`).test(line);
}

Deno.test("every curl line of docs/HTTP.md works as typed and prints what the document shows", async () => {
  const start = /^```sh\ndeno task -q start (.*) &/m.exec(DOC);
  assert.ok(start, "the document starts an instance");
  const flags = start[1]!.split(/\s+/);
  assert.deepEqual(flags, ["--http-port", "8080", "--irc-port", "6667"]);
  const [httpPort, ircPort] = [freePorts(1), freePorts(1)];
  const dataDir = Deno.makeTempDirSync({ prefix: "osps-http-doc-" });
  try {
    await withInstance({
      workers: 2,
      flags: [`--http-port=${httpPort}`, `--irc-port=${ircPort}`, `--data-dir=${dataDir}`],
    }, async (inst) => {
      const list = examples();
      assert.ok(list.length >= 10, "the document shows its examples");
      for (const { command, expected } of list) {
        const typed = command
          .replaceAll("127.0.0.1:8080", `127.0.0.1:${httpPort}`)
          .replaceAll("osps chat ", `osps chat --port=${inst.port} `);
        if (typed.endsWith("&")) {
          // The shell starts the job and exits; the job ends by itself (its chat client when the instance stops).
          await new Deno.Command("sh", { args: ["-c", typed], cwd: ROOT, stdout: "null", stderr: "null" })
            .output();
          continue;
        }
        const o = await new Deno.Command("sh", {
          args: ["-c", typed],
          cwd: ROOT,
          stdout: "piped",
          stderr: "piped",
        })
          .output();
        const lines = new TextDecoder().decode(o.stdout).split(/\r?\n/).filter((l) => l !== "");
        const err = new TextDecoder().decode(o.stderr);
        assert.equal(lines.length, expected.length, `${command}\nprinted:\n${lines.join("\n")}\n${err}`);
        lines.forEach((l, i) =>
          assert.ok(matches(expected[i]!, l), `${command}\nline ${i + 1}: ${l}\nwanted: ${expected[i]}`)
        );
      }
    });
  } finally {
    Deno.removeSync(dataDir, { recursive: true });
  }
});

Deno.test("the limits table of docs/HTTP.md shows the flags' real defaults", () => {
  const flags = COMMANDS.watchdog!.flags;
  const table = DOC.slice(DOC.indexOf("## Limits and hostile input"));
  for (const m of table.matchAll(/^\| `--([a-z-]+)`\s*\| ([^|]*?)\s*\|/gm)) {
    const f = flags[m[1]!];
    assert.ok(f, `--${m[1]} is a watchdog flag`);
    const shown = m[2]!;
    assert.equal(shown === "(none)" ? "" : shown, String(f.default), `default of --${m[1]}`);
  }
});
