/**
 * Writes docs/status_page.png: a real instance with a metrics port, some
 * traffic and one worker killed, its status page shot in headless Chromium
 * (`deno task screenshot`; needs Debian's chromium).
 * @module
 */
import { freePorts, startInstance, waitReplaced } from "../tests/harness.ts";
import { Chromium } from "../tests/support/chromium.ts";
import { readPage, traffic } from "../tests/support/status_page.ts";

const out = new URL("../docs/status_page.png", import.meta.url);
const metricsPort = freePorts(1);
const inst = await startInstance({ workers: 3, flags: [`--metrics-port=${metricsPort}`] });
try {
  await traffic(inst, 6);
  const pid = (await inst.status()).workers[1]!.pid;
  Deno.kill(pid, "SIGKILL");
  await waitReplaced(inst, 2, pid);
  await traffic(inst, 8);
  await using browser = await Chromium.launch(1100, 760);
  await browser.goto(`http://127.0.0.1:${metricsPort}/`);
  const page = await readPage(browser);
  await Deno.writeFile(out, await browser.screenshot());
  console.log(
    `wrote ${out.pathname}: ${page.rows.length} roles, ${page.requests} requests, ${page.rateNow} req/s`,
  );
} finally {
  await inst.stop();
}
