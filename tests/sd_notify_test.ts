/**
 * systemd's notify protocol, with a datagram socket the test owns standing in
 * for systemd: the messages arrive, in order, from a notifier and from a live
 * watchdog (READY=1 once ready, WATCHDOG=1 every half WATCHDOG_USEC, STOPPING=1
 * on stop).
 */
import assert from "node:assert/strict";
import { SdNotifier } from "../mod/ops/sd_notify.ts";
import { osps, waitFor, withInstance } from "./harness.ts";
import { FakeSystemd } from "./support/fake_systemd.ts";

Deno.test("SdNotifier sends each message as one datagram, in order; STATUS only when it changes", () => {
  using systemd = new FakeSystemd();
  const env: Record<string, string> = { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "2000000" };
  using n = SdNotifier.fromEnv((k) => env[k])!;
  assert.equal(n.keepaliveMs, 1000);
  assert.ok(n.ready("serving"));
  assert.ok(n.status("degraded"));
  assert.equal(n.status("degraded"), false);
  assert.ok(n.keepalive(10_000));
  assert.equal(n.keepalive(10_500), false, "not before half of WATCHDOG_USEC");
  assert.ok(n.keepalive(11_000));
  assert.ok(n.reloading());
  assert.ok(n.ready("reloaded"));
  assert.ok(n.stopping("bye"));
  const got = systemd.drain();
  assert.deepEqual(got.slice(0, 4), [
    "READY=1\nSTATUS=serving",
    "STATUS=degraded",
    "WATCHDOG=1",
    "WATCHDOG=1",
  ]);
  assert.match(got[4]!, /^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading$/);
  assert.deepEqual(got.slice(5), ["READY=1\nSTATUS=reloaded", "STOPPING=1\nSTATUS=bye"]);
});

Deno.test("SdNotifier: no NOTIFY_SOCKET, no notifier; WATCHDOG_USEC for another pid is not ours", () => {
  assert.equal(SdNotifier.fromEnv(() => undefined), null);
  using systemd = new FakeSystemd();
  const env: Record<string, string> = {
    NOTIFY_SOCKET: systemd.path,
    WATCHDOG_USEC: "1000000",
    WATCHDOG_PID: "1",
  };
  using n = SdNotifier.fromEnv((k) => env[k])!;
  assert.equal(n.keepaliveMs, null);
});

Deno.test("a watchdog under NOTIFY_SOCKET: READY=1 when ready, WATCHDOG=1 from its loop, STOPPING=1 last", async () => {
  using systemd = new FakeSystemd();
  await withInstance(
    { workers: 1, env: { NOTIFY_SOCKET: systemd.path, WATCHDOG_USEC: "400000" } },
    async () => {
      // Ready is printed after READY=1 is sent; keepalives every 200 ms follow.
      await waitFor("three keepalives after READY=1", () => {
        const m = systemd.drain();
        const ready = m.findIndex((x) => x.startsWith("READY=1"));
        return ready >= 0 && m.slice(ready).filter((x) => x === "WATCHDOG=1").length >= 3;
      });
    },
  );
  const m = systemd.drain();
  const ready = m.findIndex((x) => x.startsWith("READY=1"));
  assert.match(m[ready]!, /^READY=1\nSTATUS=ready dispatcher=127\.0\.0\.1:\d+ workers=/);
  assert.ok(m.slice(0, ready).every((x) => x === "WATCHDOG=1"), `only keepalives before READY: ${m}`);
  const stopping = m.findIndex((x) => x.startsWith("STOPPING=1"));
  assert.ok(stopping > ready, `STOPPING=1 after READY=1: ${m}`);
  assert.match(m[stopping]!, /^STOPPING=1\nSTATUS=stopping: /);
  assert.ok(m.slice(stopping + 1).every((x) => x === "WATCHDOG=1"), `nothing but keepalives after: ${m}`);
});

Deno.test("a reload under NOTIFY_SOCKET: RELOADING=1 with MONOTONIC_USEC, then READY=1 once every worker is replaced", async () => {
  using systemd = new FakeSystemd();
  await withInstance({ workers: 2, env: { NOTIFY_SOCKET: systemd.path } }, async (inst) => {
    await waitFor("READY=1", () => systemd.drain().some((x) => x.startsWith("READY=1")));
    const o = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(o.code, 0, o.stderr);
    const m = systemd.drain();
    const reloading = m.findIndex((x) => x.startsWith("RELOADING=1"));
    assert.ok(reloading > 0, `RELOADING=1 sent: ${m}`);
    assert.match(m[reloading]!, /^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading/);
    const ready = m.findIndex((x, i) => i > reloading && x.startsWith("READY=1"));
    assert.ok(ready > reloading, `READY=1 after RELOADING=1: ${m}`);
    assert.match(m[ready]!, /STATUS=reloaded: 2 workers replaced in \d+ ms/);
  });
});
