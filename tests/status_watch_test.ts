/**
 * `osps status --watch` in a real terminal (tmux): the table is drawn, redrawn
 * in place when something changes (no scrolling: the title stays on the first
 * line), and Ctrl-C ends it with exit 0.
 */
import assert from "node:assert/strict";
import { RUN_FLAGS, waitFor, waitReplaced, withInstance } from "./harness.ts";
import { missingProgram } from "./support/requires.ts";
import { shellQuote, Terminal } from "./support/tmux.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

const noTmux = await missingProgram("tmux", "-V");
if (noTmux) console.log(`status --watch test skipped: ${noTmux}`);

Deno.test({
  name: "status --watch redraws the table in place every second until Ctrl-C (in tmux)",
  ignore: noTmux !== "",
}, async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    const cmd = [Deno.execPath(), ...RUN_FLAGS, MAIN, "status", "--watch", `--run-dir=${inst.runDir}`]
      .map(shellQuote).join(" ");
    await using term = await Terminal.start(`${cmd}; echo "exited $?"; sleep 30`, 160, 20);
    const screen = () => term.screen();
    const first = await waitFor("the table on screen", async () => {
      const s = await screen();
      return /worker 2 .*ready/.test(s) ? s : null;
    });
    const lines = first.split("\n");
    assert.match(lines[0]!, /^osps status --watch · every 1 s · Ctrl-C to quit · \d\d:\d\d:\d\d/);
    assert.match(first, /^dispatcher +\d+ +\S+ +\d+ +local +ready/m);

    const pid = (await inst.status()).workers[0]!.pid;
    Deno.kill(pid, "SIGKILL");
    await waitReplaced(inst, 1, pid);
    const redrawn = await waitFor("the restart on screen", async () => {
      const s = await screen();
      return /^worker 1 .*signal 9/m.test(s) ? s : null;
    });
    assert.match(redrawn.split("\n")[0]!, /^osps status --watch/, "redrawn in place, not scrolled");
    assert.equal(redrawn.match(/^ROLE /gm)?.length, 1, "one table on screen");

    await term.keys("C-c");
    const done = await waitFor("the exit", async () => {
      const s = await screen();
      return /exited \d+/.test(s) ? s : null;
    });
    assert.match(done, /exited 0/);
  });
});
