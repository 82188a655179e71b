/**
 * Users of the `osps` command cannot pass Deno flags: where Deno denies a
 * permission, osps says what it may use instead, never "run again with the
 * --allow-… flag".
 */
import assert from "node:assert/strict";
import { osps } from "./harness.ts";
import { withPermissionHints } from "../mod/cli/permission_hint.ts";

Deno.test("a denied path or address is told as what osps may use, without Deno's --allow hint", async () => {
  // Paths outside what osps may use, wherever the tests run from (a relative path under /tmp would be allowed).
  const log = await osps(["watchdog", "--log-file=/srv/osps-test/osps.log", "--port=1"]);
  assert.equal(log.code, 1);
  assert.match(
    log.stderr,
    /osps may not write "\/srv\/osps-test\/osps\.log": .*log files under \/var\/log\/osps/,
  );
  const runDir = await osps(["watchdog", "--run-dir=/srv/osps-test/run", "--port=1"]);
  assert.equal(runDir.code, 100);
  assert.match(
    runDir.stderr,
    /osps may not read "\/srv\/osps-test\/run": it reads run dirs under \/tmp, \/run\/osps and \/run\/user/,
  );
  // The config file is the operator's to place: read wherever it is, and a missing one is said as such.
  const config = await osps(["watchdog", "--config=/srv/osps-test/osps.toml"]);
  assert.equal(config.code, 100);
  assert.match(config.stderr, /cannot read config file "\/srv\/osps-test\/osps\.toml": no such file/);
  for (const o of [log, runDir, config]) assert.doesNotMatch(o.stderr, /--allow-|run again with/);
  assert.match(
    withPermissionHints('Requires net access to "10.1.1.1:9464", run again with the --allow-net flag'),
    /^osps may not use the address "10\.1\.1\.1:9464": the watchdog itself listens on loopback or 0\.0\.0\.0/,
  );
  assert.match(
    withPermissionHints('Requires sys access to "uid", run again with the --allow-sys flag'),
    /report it/,
  );
});
