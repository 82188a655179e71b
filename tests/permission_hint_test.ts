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
  const config = await osps(["watchdog", "--config=/srv/osps-test/osps.toml"]);
  assert.match(
    config.stderr,
    /osps may not read "\/srv\/osps-test\/osps\.toml": .*\/etc\/osps and ~\/\.config\/osps/,
  );
  for (const o of [log, config]) assert.doesNotMatch(o.stderr, /--allow-|run again with/);
  assert.match(
    withPermissionHints('Requires net access to "10.1.1.1:9464", run again with the --allow-net flag'),
    /^osps may not use the address "10\.1\.1\.1:9464": the watchdog itself listens on loopback or 0\.0\.0\.0/,
  );
  assert.match(
    withPermissionHints('Requires sys access to "uid", run again with the --allow-sys flag'),
    /report it/,
  );
});
