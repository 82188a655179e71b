/**
 * The status page in a real browser (headless Chromium): it shows readiness,
 * every role with its state, restarts and last exit, and plots traffic; it
 * refreshes by itself. `deno task screenshot` takes the picture in docs/ the
 * same way.
 */
import assert from "node:assert/strict";
import { CHROMIUM, Chromium } from "./support/chromium.ts";
import { missingProgram } from "./support/requires.ts";
import { readPage, traffic } from "./support/status_page.ts";
import { freePorts, waitFor, waitReplaced, withInstance } from "./harness.ts";

const noBrowser = await missingProgram(CHROMIUM, "--version", "chromium");
if (noBrowser) console.log(`status page test skipped: ${noBrowser}`);

Deno.test({
  name: "the status page in Chromium shows roles, restarts, readiness and traffic, and refreshes itself",
  ignore: noBrowser !== "",
}, async () => {
  const metricsPort = freePorts(1);
  await withInstance({ workers: 2, flags: [`--metrics-port=${metricsPort}`] }, async (inst) => {
    const pid = (await inst.status()).workers[0]!.pid;
    Deno.kill(pid, "SIGKILL");
    await waitReplaced(inst, 1, pid);
    await traffic(inst, 5);
    await using browser = await Chromium.launch();
    await browser.goto(`http://127.0.0.1:${metricsPort}/`);
    const page = await readPage(browser);
    assert.match(page.title, /^osps 127\.0\.0\.1:\d+$/);
    assert.match(page.readiness, /^READY — ready: the dispatcher and 2 of 2 workers can serve/);
    assert.deepEqual(page.rows.map((r) => r.role), ["dispatcher", "worker 1", "worker 2"]);
    const [dispatcher, w1, w2] = page.rows.map((r) => r.cells);
    assert.equal(dispatcher![3], "ready");
    assert.equal(w1![3], "ready");
    assert.equal(w1![5], "1", "worker 1 restarted once");
    assert.equal(w1![6], "signal 9");
    assert.equal(w2![5], "0");
    assert.ok(page.ratePoints >= 1, "the requests-per-second plot has points");
    assert.ok(page.requests > 0);
    assert.equal(page.refresh, "2");

    // It refreshes by itself: more requests show up without navigating.
    await traffic(inst, 1);
    const served = (await inst.status()).workers.reduce((n, w) => n + w.served, 0);
    const later = await waitFor("the page to refresh itself", async () => {
      const p = await readPage(browser);
      return p.requests >= served ? p : null;
    }, 10_000);
    assert.ok(later.requests > page.requests);
  });
});
