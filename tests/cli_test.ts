/** The command-line table: parsing, defaults, clear errors, help, child argv. */
import assert from "node:assert/strict";
import { helpText, parseCommandLine, toArgv } from "../mod/cli/cli.ts";
import { COMMANDS } from "../mod/cli/commands.ts";
import { UsageError } from "../mod/errors.ts";
import { watchdogConfig } from "../mod/cli/config.ts";

Deno.test("watchdog defaults: 2 workers, 127.0.0.1, port 2222", () => {
  const p = parseCommandLine(["watchdog"]);
  assert.equal(p.command, "watchdog");
  assert.equal(p.flags["workers"], 2);
  assert.equal(p.flags["host"], "127.0.0.1");
  assert.equal(p.flags["port"], 2222);
  const cfg = watchdogConfig(p.flags);
  assert.match(cfg.runDir, /\/osps-(\d+-)?2222$/);
});

Deno.test("bad flags are usage errors with the value quoted", () => {
  assert.throws(
    () => parseCommandLine(["watchdog", "--workers=65"]),
    /--workers must be between 0 and 64, got 65/,
  );
  assert.throws(
    () => watchdogConfig(parseCommandLine(["watchdog", "--workers=0"]).flags),
    /--workers 0 needs --link-port: a dispatcher with no local workers serves only remote ones/,
  );
  assert.throws(() => parseCommandLine(["watchdog", "--port=abc"]), /--port takes a whole number, got "abc"/);
  assert.throws(() => parseCommandLine(["watchdog", "--log-format=xml"]), /must be one of text, json/);
  assert.throws(() => parseCommandLine(["watchdog", "--bogus"]), UsageError);
  assert.throws(() => parseCommandLine(["frobnicate"]), /unknown command "frobnicate"/);
  assert.throws(() => parseCommandLine(["watchdog", "extra"]), /unexpected argument "extra"/);
  assert.throws(
    () => watchdogConfig(parseCommandLine(["watchdog", "--heartbeat-ms=500", "--hang-timeout-ms=400"]).flags),
    /must exceed --heartbeat-ms/,
  );
});

Deno.test("a mistyped flag or a negative number gets a message a person can act on", () => {
  assert.throws(
    () => parseCommandLine(["watchdog", "--wrokers", "3"]),
    /^UsageError: watchdog: unknown flag --wrokers; did you mean --workers\? \(osps help watchdog lists every flag\)$/,
  );
  assert.throws(
    () => parseCommandLine(["watchdog", "--workers", "-5"]),
    /--workers must be between 0 and 64, got -5/,
  );
  assert.throws(
    () => parseCommandLine(["watchdog", "--workers=-XYZ"]),
    /--workers takes a whole number, got "-XYZ"/,
  );
  assert.throws(
    () => parseCommandLine(["watchdog", "--port"]),
    /--port needs a value \(see "osps help watchdog"\)/,
  );
  assert.throws(() => parseCommandLine(["wachdog"]), /unknown command "wachdog"; did you mean "watchdog"\?/);
  assert.throws(
    () => watchdogConfig(parseCommandLine(["watchdog", "--link-port=3000"]).flags),
    /--link-port needs --secret-file \(osps secret > FILE; chmod 600 FILE\)/,
  );
  assert.throws(
    () => watchdogConfig(parseCommandLine(["watchdog", "--join=nohost"]).flags),
    /--join takes ADDR:PORT/,
  );
});

Deno.test("client: everything from TYPE on is the request, even a leading dash", () => {
  const p = parseCommandLine(["client", "--port", "3000", "--json", "sleep", "-5", "--repeat=2"]);
  assert.equal(p.flags["port"], 3000);
  assert.equal(p.flags["json"], true);
  assert.equal(p.flags["repeat"], 1);
  assert.deepEqual(p.positionals, ["sleep", "-5", "--repeat=2"]);
});

Deno.test("toArgv reproduces the values it is given (the watchdog's child command lines)", () => {
  const values = { id: 3, port: 4000, shm: "/osps-x", "run-dir": "/tmp/x", "log-format": "json" };
  const argv = toArgv("worker", values);
  assert.equal(argv[0], "worker");
  const back = parseCommandLine(argv);
  for (const [k, v] of Object.entries(values)) assert.equal(back.flags[k], v);
});

Deno.test("help lists every command, and each command's help lists every flag", () => {
  const top = helpText();
  for (const name of Object.keys(COMMANDS)) {
    assert.ok(top.includes(`  ${name} `), name);
    const own = helpText(name);
    for (const flag of Object.keys(COMMANDS[name]!.flags)) {
      assert.ok(own.includes(`--${flag}`), `${name} --${flag}`);
    }
  }
  assert.equal(parseCommandLine(["help", "client"]).help, true);
  assert.equal(parseCommandLine(["client", "--help"]).help, true);
});

Deno.test("deno.json tasks never grant -A / --allow-all", () => {
  const tasks = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url))).tasks as Record<
    string,
    string
  >;
  for (const [name, cmd] of Object.entries(tasks)) {
    assert.doesNotMatch(cmd, /(^|\s)(-A|--allow-all)(\s|$)/, name);
  }
});
