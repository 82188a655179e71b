/**
 * systemd-logind's `RemoveIPC=yes` deletes a user's POSIX shared memory when
 * they log out (systemd issue #2324), under a running instance. The watchdog
 * notices on its next tick, stops that incarnation cleanly and rebuilds it
 * (fresh segment, FIFOs and children) under the same lock; clients are served
 * again and `stop` still leaves nothing.
 */
import assert from "node:assert/strict";
import { instancePaths } from "../mod/cli/config.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { waitFor, withInstance } from "./harness.ts";

Deno.test("a shm segment removed under a live instance is rebuilt and the instance serves again", async () => {
  await withInstance(
    { workers: 2, flags: ["--heartbeat-ms=100", "--hang-timeout-ms=1000"] },
    async (inst) => {
      const shm = instancePaths(inst.runDir).shm;
      const o = await inst.client(["echo", "before"]);
      assert.equal(o.stdout, "before\n", o.stderr);
      const before = await inst.status();
      assert.ok(Segment.unlink(shm), "the segment existed");
      await waitFor(
        "the log to report the rebuild",
        () => /rebuilding it and restarting every child/.test(inst.logs()),
      );
      const after = await waitFor("a rebuilt instance with new children", async () => {
        if (!Segment.exists(shm)) return null;
        const s = await inst.status().catch(() => null);
        return s && s.dispatcher.pid !== before.dispatcher.pid && s.dispatcher.state === "ready" &&
            s.workers.every((w) => w.state === "ready")
          ? s
          : null;
      });
      assert.equal(after.watchdog.pid, inst.pid, "the same watchdog, still holding its lock");
      assert.match(inst.logs(), /shared memory \/osps-\S+ vanished/);
      const again = await inst.client(["upper", "after"]);
      assert.equal(again.stdout, "AFTER\n", again.stderr);
    },
  );
});
