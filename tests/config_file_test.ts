/** `--config FILE`: TOML or JSON under the flags' names, checked like flags, with the command line winning. */
import assert from "node:assert/strict";
import { parseCommandLine } from "../mod/cli/cli.ts";
import {
  ConfigFileError,
  liveChanges,
  loadWatchdogConfig,
  loadWatchdogFlags,
} from "../mod/ops/config_file.ts";
import { processTable } from "../mod/sys/proc.ts";
import { osps, withInstance } from "./harness.ts";

function withFile(name: string, text: string, body: (path: string) => void | Promise<void>) {
  const dir = Deno.makeTempDirSync({ prefix: "osps-config-" });
  const path = `${dir}/${name}`;
  Deno.writeTextFileSync(path, text);
  return Promise.resolve(body(path)).finally(() => Deno.removeSync(dir, { recursive: true }));
}

function load(argv: string[]) {
  const cmd = parseCommandLine(["watchdog", ...argv]);
  return loadWatchdogConfig({ flags: cmd.flags, given: cmd.given });
}

Deno.test("a TOML config sets flags by their names; flags on the command line win", async () => {
  const toml =
    `# osps\nworkers = 4\nport = 3000\n"request-timeout-for" = "sleep:40000"\nlog-format = "json"\n`;
  await withFile("osps.toml", toml, (path) => {
    const cfg = load([`--config=${path}`, "--port=4000"]);
    assert.equal(cfg.workers, 4);
    assert.equal(cfg.port, 4000, "the command line wins");
    assert.deepEqual(cfg.requestTimeoutFor, { sleep: 40000 });
    assert.equal(cfg.logFormat, "json");
    assert.equal(cfg.configFile, path);
  });
});

Deno.test("a JSON config works the same way", async () => {
  await withFile("osps.json", JSON.stringify({ workers: 3, "max-requests": 100 }), (path) => {
    const cfg = load([`--config=${path}`]);
    assert.equal(cfg.workers, 3);
    assert.equal(cfg.maxRequests, 100);
  });
});

Deno.test("a config file is checked like the command line, with the file and setting named", async () => {
  await withFile("bad.toml", "wrokers = 4\n", (path) => {
    assert.throws(() => load([`--config=${path}`]), (e: Error) => {
      assert.ok(e instanceof ConfigFileError);
      assert.match(e.message, /unknown setting "wrokers"; did you mean "workers"\?/);
      return true;
    });
  });
  await withFile("range.toml", "workers = 65\n", (path) => {
    assert.throws(
      () => load([`--config=${path}`]),
      /range\.toml: watchdog: --workers must be between 0 and 64, got 65/,
    );
  });
  await withFile("type.json", '{"workers": "many"}', (path) => {
    assert.throws(() => load([`--config=${path}`]), /--workers takes a whole number, got "many"/);
  });
  await withFile("syntax.toml", "workers = = 4\n", (path) => {
    assert.throws(() => load([`--config=${path}`]), /is not valid TOML/);
  });
  await withFile("nested.toml", 'config = "/etc/other.toml"\n', (path) => {
    assert.throws(() => load([`--config=${path}`]), /unknown setting "config"/);
  });
  assert.throws(() => load(["--config=/tmp/osps-no-such-config.toml"]), /cannot read config file/);
});

Deno.test("a watchdog with a bad config file or flag cannot boot: exit 100, which systemd does not restart", async () => {
  await withFile("bad.toml", "wrokers = 2\n", async (path) => {
    const o = await osps(["watchdog", `--config=${path}`, "--run-dir=/tmp/osps-never-started"]);
    assert.equal(o.code, 100, o.stderr);
    assert.match(o.stderr, /unknown setting "wrokers"; did you mean "workers"\?/);
  });
  const typo = await osps(["watchdog", "--wrokers=2"]);
  assert.equal(typo.code, 100, typo.stderr);
  // Other commands keep the usage-error code.
  assert.equal((await osps(["client", "--wrokers=2"])).code, 2);
});

Deno.test("a config file anywhere is read when named by an explicit path (to try one before installing it)", async () => {
  // Outside every directory the osps task may read (its scope is run dirs and config dirs).
  const dir = `/var/tmp/osps-try-${crypto.randomUUID().slice(0, 8)}`;
  const sh = (script: string) => new Deno.Command("sh", { args: ["-c", script] }).output();
  await sh(`mkdir -p ${dir} && printf 'wrokers = 2\\n' > ${dir}/try.toml`);
  try {
    const o = await osps(["watchdog", `--config=${dir}/try.toml`, "--run-dir=/tmp/osps-never-started"]);
    assert.equal(o.code, 100, o.stderr);
    assert.match(
      o.stderr,
      new RegExp(`${dir}/try\\.toml: unknown setting "wrokers"`),
      "it was read and checked",
    );
    const missing = await osps(["watchdog", `--config=${dir}/nothing.toml`]);
    assert.match(missing.stderr, /cannot read config file ".*nothing\.toml": no such file/);
  } finally {
    await sh(`rm -rf ${dir}`);
  }
});

Deno.test("liveChanges sorts changed flags by what a reload can do with them", async () => {
  await withFile("live.toml", "workers = 2\n", async (path) => {
    const cmd = parseCommandLine(["watchdog", `--config=${path}`]);
    const source = { flags: cmd.flags, given: cmd.given };
    const before = loadWatchdogFlags(source);
    await Deno.writeTextFile(
      path,
      'workers = 3\nhang-timeout-ms = 5000\nmax-conns = 50\nlog-level = "debug"\n',
    );
    const after = loadWatchdogFlags(source); // the file is read again
    assert.deepEqual(liveChanges(before, after), {
      now: ["hang-timeout-ms"],
      respawn: ["max-conns", "log-level"],
      restart: ["workers"],
    });
  });
});

Deno.test("a watchdog started with --config runs what the file says", async () => {
  await withFile("osps.toml", "workers = 1\nmax-requests = 7\n", async (path) => {
    await withInstance({ workers: 2, flags: [`--config=${path}`] }, async (inst) => {
      // The harness passes --workers=2 on the command line: it wins over the file.
      const s = await inst.status();
      assert.equal(s.workers.length, 2);
      // The file's max-requests reaches the workers (7 plus jitter of 10% rounds down to 7).
      const argv = processTable().get(s.workers[0]!.pid)?.cmdline ?? [];
      assert.ok(argv.includes("--max-requests=7"), argv.join(" "));
      assert.equal((await inst.client(["echo", "configured"])).stdout.trim(), "configured");
    });
  });
});
