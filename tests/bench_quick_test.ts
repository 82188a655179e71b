/**
 * `deno task bench --quick` (the suite CI runs) completes and writes valid
 * results: every part present, every figure well-formed. Never asserts that a
 * target is met or how fast anything is.
 */
import assert from "node:assert/strict";
import { namespacesUsable } from "./support/netns.ts";

const SCRIPT = new URL("../scripts/bench.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

Deno.test("bench --quick runs every part and writes results.json, RESULTS.md and latency.svg", async () => {
  const out = Deno.makeTempDirSync({ prefix: "osps-bench-quick-" });
  try {
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--config=${CONFIG}`,
        "--allow-net=127.0.0.1,localhost",
        "--allow-ffi",
        "--allow-read",
        "--allow-write=/tmp",
        "--allow-env=XDG_RUNTIME_DIR",
        "--allow-run",
        SCRIPT,
        "--quick",
        `--out=${out}`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(o.stderr);
    assert.equal(o.code, 0, stderr);
    const r = JSON.parse(Deno.readTextFileSync(`${out}/results.json`));
    assert.equal(r.quick, true);
    assert.equal(typeof r.machine.nproc, "number");
    const parts = new Set(r.figures.map((f: { part: string }) => f.part));
    // The hosts part needs network namespaces (root, as in CI); elsewhere it says why it was skipped.
    const hosts = (await namespacesUsable()).ok;
    assert.deepEqual(
      [...parts].sort(),
      [
        "Chat",
        "Full cycle",
        "HTTP",
        "HTTP chat",
        ...(hosts ? ["Hosts"] : []),
        "IPC",
        "Lines",
        "Memory",
        "Recovery",
      ],
    );
    if (!hosts) assert.match(r.raw.hosts.skipped, /not root|cannot make/);
    for (const f of r.figures) {
      assert.ok(Number.isFinite(f.value) && f.value >= 0, JSON.stringify(f));
      if (f.reference) assert.ok(f.reference.value > 0 && Number.isFinite(f.ratio), JSON.stringify(f));
      if (f.target) assert.equal(typeof f.met, "boolean", JSON.stringify(f));
    }
    assert.deepEqual(
      r.flow.map((x: { kind: string; clients: number }) => `${x.kind} ${x.clients}`).sort(),
      [
        "floor 1",
        "floor 16",
        "floor 64",
        "oneshot 1",
        "oneshot 16",
        "oneshot 64",
        "session 1",
        "session 16",
        "session 64",
        "twohop 1",
        "twohop 16",
        "twohop 64",
      ]
        .sort(),
    );
    for (const run of r.flow) {
      assert.equal(
        run.ok + Object.values(run.errors).reduce((a: number, b) => a + (b as number), 0),
        run.sent,
      );
    }
    const md = Deno.readTextFileSync(`${out}/RESULTS.md`);
    assert.match(md, /^# osps benchmark results/);
    assert.match(md, /\| part \| figure \| value \| reference \| ratio \| target \| met\? \|/);
    const svg = Deno.readTextFileSync(`${out}/latency.svg`);
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^]*<\/svg>\n$/);
    assert.equal((svg.match(/<polyline /g) ?? []).length, 12, "one CDF per kind and client count");
  } finally {
    Deno.removeSync(out, { recursive: true });
  }
});
