/**
 * `deno task compile` where Deno's download host is out of reach and its
 * runtime for compiled programs is not cached: it fails at once, says why and
 * what to do, and writes nothing (it took over a minute and left an empty
 * `dist/`). The network is cut with a network namespace of its own (root).
 */
import assert from "node:assert/strict";
import { getuid } from "../mod/sys/libc.ts";
import { exists } from "./harness.ts";

const ROOT = new URL("..", import.meta.url).pathname;

const info = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" }).output();
const denoDir = JSON.parse(new TextDecoder().decode(info.stdout)).denoDir as string;
const cached = exists(`${denoDir}/dl/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip`);
const why = getuid() !== 0
  ? "not root (a network namespace cuts the network)"
  : cached
  ? "denort is cached here"
  : "";
if (why) console.log(`offline compile test skipped: ${why}`);

Deno.test({
  name: "deno task compile offline fails at once with the reason and what to do, writing nothing",
  ignore: why !== "",
  async fn() {
    const before = exists(`${ROOT}dist/osps`);
    const t0 = performance.now();
    const o = await new Deno.Command("unshare", {
      args: ["--net", Deno.execPath(), "task", "-q", "compile"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const ms = performance.now() - t0;
    const said = new TextDecoder().decode(o.stderr);
    assert.equal(o.code, 1, said);
    assert.match(said, /deno compile needs Deno's runtime for compiled programs \(denort \d+\.\d+\.\d+\)/);
    assert.match(said, /set DENORT_BIN to a denort .* binary; without compiling, `deno task install`/);
    assert.ok(ms < 20_000, `it took ${Math.round(ms)} ms`);
    assert.equal(exists(`${ROOT}dist/osps`), before, "nothing written");
  },
});
