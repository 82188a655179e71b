/**
 * The outages a hostile newcomer caused, each replayed as that client would:
 * resets at every stage of a connection, a storm of requests that hang their
 * workers, children that keep dying past every budget, and a normal local load
 * on the default flags. Whatever one client does, it ends with that client:
 * no role restarts for it, no budget is spent on it, the instance never stops
 * on its own, and an honest client is served throughout.
 */
import assert from "node:assert/strict";
import { Session } from "../mod/client/session.ts";
import {
  type Instance,
  killUntilFailed,
  mapTable,
  osps,
  waitFor,
  waitForLog,
  withInstance,
} from "./harness.ts";
import { Rst } from "./support/raw_tcp.ts";

/** Requests `echo` over and over until `stop()`; every answer must be right. Resolves to how many were served. */
function honestClient(inst: Instance): { stop(): Promise<number> } {
  let running = true;
  const done = (async () => {
    let served = 0;
    while (running) {
      const s = await Session.open("127.0.0.1", inst.port, { timeoutMs: 20_000 });
      try {
        const text = `honest ${served}`;
        assert.equal((await s.request("echo", text)).text, text);
        served++;
      } finally {
        await s.close();
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return served;
  })();
  return {
    async stop() {
      running = false;
      return await done;
    },
  };
}

/** Restarts of every role, and their pids. */
async function roles(inst: Instance): Promise<{ restarts: number[]; pids: number[] }> {
  const s = await inst.status();
  const all = [s.dispatcher, ...s.workers];
  return { restarts: all.map((c) => c.restarts), pids: all.map((c) => c.pid) };
}

Deno.test("connections reset at every stage, thousands of them, restart no role; an honest client is served throughout", async () => {
  await withInstance({ workers: 2, flags: ["--ticket-ttl-ms=400"] }, async (inst) => {
    const before = await roles(inst);
    const honest = honestClient(inst);
    const ports = [inst.port, inst.port + 1, inst.port + 2];
    let resets = 0;
    // The outage as found: bursts of 20 resets before accept, 6 times in 3 s, on every role.
    for (let round = 0; round < 6; round++) {
      for (const port of ports) {
        const burst = Array.from({ length: 20 }, () => Rst.connect(port));
        for (const c of burst) c.reset();
        resets += burst.length;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    // Then every stage, on every role.
    for (let i = 0; i < 600; i++) {
      for (const port of ports) {
        const c = Rst.connect(port);
        switch (i % 3) {
          case 0: // after the greeting
            await c.waitLines(1);
            break;
          case 1: // in the middle of a line
            c.send(port === inst.port ? "REQUEST ec" : "RUN 0123");
            break;
          case 2: // a whole line, then gone before the answer is read
            c.send(port === inst.port ? "HELLO OSPS/1\n" : `RUN ${"ab".repeat(16)} echo x\n`);
            break;
        }
        c.reset();
        resets++;
      }
    }
    // After an ASSIGN (the ticket is left unused, and expires), and in the middle of a RUN.
    for (let i = 0; i < 40; i++) {
      const d = Rst.connect(inst.port);
      d.send(i % 2 ? "REQUEST sleep\n" : "REQUEST echo\n");
      const lines = await d.waitLines(2, 10_000);
      d.reset();
      resets++;
      const assign = /^200 ASSIGN \S+ (\d+) ([0-9a-f]{32})$/.exec(lines.at(-1) ?? "");
      if (!assign || i % 2 === 0) continue;
      const w = Rst.connect(Number(assign[1]));
      w.send(`RUN ${assign[2]} sleep 200\n`);
      await w.waitLines(1);
      w.reset(); // while the worker sleeps on our behalf
      resets++;
    }
    const served = await honest.stop();
    const after = await roles(inst);
    assert.deepEqual(after.restarts, before.restarts, "no role restarted");
    assert.deepEqual(after.pids, before.pids, "same processes throughout");
    assert.ok(served >= 20, `the honest client was served ${served} times`);
    console.log(
      `${resets} connections reset at every stage; 0 restarts; honest client served ${served} times`,
    );
  });
});

const FAST = ["--heartbeat-ms=100", "--hang-timeout-ms=600"];

Deno.test("a storm of fib 45 kills workers but never the instance: fib is quarantined, other types are served", async () => {
  await withInstance({ workers: 2, flags: FAST }, async (inst) => {
    const errors: string[] = [];
    // The outage as found: four rounds of two `osps client fib 45`.
    for (let round = 0; round < 4; round++) {
      const rs = await Promise.all([inst.client(["fib", "45"]), inst.client(["fib", "45"])]);
      for (const r of rs) {
        assert.equal(r.code, 3, r.stderr);
        errors.push(r.stderr.trim());
      }
      assert.equal((await inst.client(["echo", `round ${round}`])).stdout, `round ${round}\n`);
    }
    const killed = errors.filter((e) =>
      /worker \d was killed: "fib 45" blocked it past the 600 ms hang timeout/.test(e)
    );
    const refused = errors.filter((e) => /503 fib is refused for \d+ s: it cost 3 workers in 10 s/.test(e));
    assert.ok(killed.length >= 3 && killed.length <= 4, errors.join("\n"));
    assert.equal(killed.length + refused.length, 8, errors.join("\n"));
    const s = await inst.status() as unknown as {
      workers: { state: string }[];
      quarantine: { type: string; refused_for_ms: number; kills: number }[];
    };
    assert.ok(s.workers.every((w) => w.state !== "failed"), "request-caused kills spend no budget");
    assert.deepEqual(s.quarantine.map((q) => [q.type, q.kills]), [["fib", 3]]);
    assert.match(
      (await osps(["status", `--run-dir=${inst.runDir}`])).stdout,
      /quarantine: fib refused for \d+s more/,
    );
    assert.equal((await inst.client(["upper", "still served"])).stdout, "STILL SERVED\n");
  });
});

Deno.test("an instance that has served never gives up: children dying past every budget are retried until they come back", async () => {
  await withInstance({
    workers: 2,
    flags: ["--restart-budget=2", "--restart-window-ms=60000", "--failed-retry-ms=1500"],
  }, async (inst) => {
    const table = mapTable(inst);
    try {
      // Kill every role each time it comes up, until each is failing (past its budget).
      await killUntilFailed(table, [0, 1, 2], 30_000);
      assert.equal(inst.process.pid > 0 && (await osps(["status", `--run-dir=${inst.runDir}`])).code, 0);
      await waitForLog(inst, /dispatcher exited \(signal 9\); dispatcher restarted 2 times in 60 s: failing/);
      // Left alone, everything comes back by itself; the watchdog never exited.
      await waitFor(
        "served again",
        async () => (await inst.client(["echo", "back"])).stdout === "back\n",
        20_000,
      );
      const s = await inst.status();
      assert.ok([s.dispatcher, ...s.workers].every((c) => c.state === "ready"), JSON.stringify(s));
      assert.doesNotMatch(inst.logs(), /giving up/);
    } finally {
      table.close();
    }
  });
});

Deno.test("the default flags never refuse a normal local load: 16 one-shot and 64 session clients", async () => {
  await withInstance({ workers: 2 }, async (inst) => {
    for (const args of [["--clients=16"], ["--clients=64", "--session"], ["--clients=64"]]) {
      const o = await osps(["bench", `--port=${inst.port}`, "--duration=3", "--json", ...args]);
      assert.equal(o.code, 0, o.stderr);
      const r = JSON.parse(o.stdout) as {
        requests: { ok: number; failed: number };
        errors: Record<string, number>;
      };
      assert.equal(r.requests.failed, 0, `${args.join(" ")}: ${JSON.stringify(r.errors)}`);
      assert.ok(r.requests.ok > 100, `${args.join(" ")}: ${r.requests.ok} served`);
      console.log(`${args.join(" ")}: ${r.requests.ok} requests in 3 s, none refused`);
    }
    const s = await inst.status();
    assert.deepEqual([s.dispatcher, ...s.workers].map((c) => c.restarts), [0, 0, 0]);
  });
});
