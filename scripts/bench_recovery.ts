/**
 * Part 3 of the benchmark suite: recovery. Times are taken by polling the
 * instance's shared-memory table (what `osps status` reads) every millisecond,
 * and the reference is the bare start of one worker process: the worker's
 * own command line, spawned by hand, until it accepts TCP connections.
 * @module
 */
import { toArgv } from "../mod/cli/cli.ts";
import { instancePaths } from "../mod/cli/config.ts";
import { isAlive } from "../mod/sys/proc.ts";
import { Segment, SupState } from "../mod/ipc/shm.ts";
import { netScope, permissionFlags } from "../mod/sys/spawn.ts";
import { errorKind, type LoadClient, ospsClient, runLoad } from "../roles/bench.ts";
import { freePorts, type Instance, startInstance } from "../tests/harness.ts";
import { linkFixture } from "./bench_ipc.ts";
import { REQUEST } from "./bench_flow.ts";
import { type Figure, figure, listening, median, processGone, ROOT, sleep, timeUntil } from "./bench_util.ts";

const HEARTBEAT_MS = 100;
const HANG_TIMEOUT_MS = 1_000;

/** Times of one bare start of the worker command, in ms from spawn. */
interface BareStart {
  /** Its port accepts connections (the reference of the recovery targets). */
  listenMs: number;
  /** It printed its `ready` line (what the watchdog waits for). */
  readyMs: number;
}

/** Spawns the worker command by hand, as the watchdog would, and times its start. */
async function bareWorkerStart(): Promise<BareStart> {
  const fx = linkFixture();
  const port = freePorts(1);
  try {
    const args = [
      "run",
      ...permissionFlags({ listen: [netScope("127.0.0.1", port)] }),
      `--config=${ROOT}deno.json`,
      `${ROOT}main.ts`,
      ...toArgv("worker", {
        id: 1,
        host: "127.0.0.1",
        port,
        shm: fx.shm,
        "run-dir": fx.runDir,
        instance: fx.instance,
        "log-level": "warning",
      }),
    ];
    const t0 = performance.now();
    const child = new Deno.Command(Deno.execPath(), { args, stdin: "piped", stdout: "piped", stderr: "null" })
      .spawn();
    const ready = (async () => {
      let text = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        if (/^ready /m.test(text += chunk)) return performance.now() - t0;
      }
      throw new Error("the bare worker exited before it was ready");
    })();
    try {
      const listenMs = await timeUntil("the bare worker to listen", () => listening(port), { since: t0 });
      return { listenMs, readyMs: await ready };
    } finally {
      await child.stdin.close(); // the worker's lifeline: it stops
      await child.status;
      await ready.catch(() => {});
    }
  } finally {
    fx.remove();
  }
}

/** Wraps a load client to remember when each failed request started. */
function tracking(inner: LoadClient, failures: { at: number; kind: string }[]): LoadClient {
  return {
    async request() {
      const at = performance.now();
      try {
        await inner.request();
      } catch (err) {
        failures.push({ at, kind: errorKind(err) });
        throw err;
      }
    },
    close: () => inner.close(),
  };
}

interface KillResult {
  recoveryMs: number;
  /** From kill(2) until the new worker's port accepted TCP (what the bare start is timed to). */
  acceptsMs: number;
  /** From kill(2) until the process was gone (a zombie or reaped). */
  deadMs: number;
  /** Failed requests by kind, whenever they started. */
  failures: Record<string, number>;
  routedToDead: number;
  inFlight: number;
  served: number;
}

/** Clients that keep sending while a worker is killed under load. */
const LOAD_CLIENTS = 4;

/** kill -9 of worker `id`, idle or while {@link LOAD_CLIENTS} clients keep sending; times until its replacement is ready. */
async function killWorker(inst: Instance, seg: Segment, id: number, underLoad: boolean): Promise<KillResult> {
  const slot = seg.slot(id);
  const failures: { at: number; kind: string }[] = [];
  const load = underLoad
    ? runLoad({
      clients: LOAD_CLIENTS,
      durationMs: 1_500,
      open: () =>
        tracking(ospsClient("127.0.0.1", inst.port, "oneshot", REQUEST.type, REQUEST.arg), failures),
    })
    : undefined;
  await sleep(400);
  const victim = slot.load("pid");
  const tKill = performance.now();
  Deno.kill(victim, "SIGKILL");
  // kill(2) returns before the process is gone: until its last thread has exited it still holds its FIFO
  // ends (so the dispatcher sees no EOF and its doorbell still rings) and its listening socket.
  const deadMs = await timeUntil("the killed worker to exit", () => processGone(victim), { since: tKill });
  // Beside the target's end (the watchdog has read the new worker's ready line), the moment the bare start is
  // timed to: its port accepts TCP (from the victim's exit on, the port can only be its successor's).
  let acceptsMs = 0;
  const recoveryMs = await timeUntil("the worker's replacement to be ready", async () => {
    if (!acceptsMs && await listening(slot.load("port"))) acceptsMs = performance.now() - tKill;
    const pid = slot.load("pid");
    return pid > 0 && pid !== victim && slot.load("sup_state") === SupState.READY;
  }, { since: tKill });
  acceptsMs ||= recoveryMs;
  const r = await load;
  const afterDeath = failures.filter((f) => f.at > tKill + deadMs);
  const kinds: Record<string, number> = {};
  for (const f of failures) kinds[f.kind] = (kinds[f.kind] ?? 0) + 1;
  return {
    recoveryMs,
    acceptsMs,
    deadMs,
    routedToDead: afterDeath.length,
    inFlight: failures.length - afterDeath.length,
    failures: kinds,
    served: r?.ok ?? 0,
  };
}

/**
 * `kills` kills of an enlisted worker of a 2-worker instance with
 * `--warm-spare`: ms from kill(2) until 2 enlisted workers serve again (the
 * spare took over), each after the spare is warm again.
 */
async function warmSpareKills(kills: number): Promise<number[]> {
  const inst = await startInstance({ workers: 2, flags: ["--warm-spare", "--log-level=warning"] });
  const seg = Segment.open(instancePaths(inst.runDir).shm);
  const ready = (i: number) =>
    seg.slot(i).load("pid") > 0 && seg.slot(i).load("sup_state") === SupState.READY;
  const enlisted = () => [1, 2, 3].filter((i) => seg.slot(i).load("spare") === 0 && ready(i));
  const spareWarm = () => [1, 2, 3].some((i) => seg.slot(i).load("spare") === 1 && ready(i));
  const out: number[] = [];
  try {
    for (let k = 0; k < kills; k++) {
      await timeUntil("the spare to be warm", () => spareWarm() && enlisted().length === 2, {
        since: performance.now(),
      });
      await sleep(200);
      const victim = seg.slot(enlisted()[0]!).load("pid");
      const t0 = performance.now();
      Deno.kill(victim, "SIGKILL");
      out.push(
        await timeUntil("two workers serving again", () => {
          const e = enlisted();
          return e.length === 2 && e.every((i) => seg.slot(i).load("pid") !== victim);
        }, { since: t0 }),
      );
    }
  } finally {
    seg.close();
    await inst.stop();
  }
  return out;
}

/** Runs part 3. */
export async function benchRecovery(opts: { kills: number; bareStarts: number }): Promise<{
  figures: Figure[];
  raw: Record<string, unknown>;
}> {
  // Each kill hits a fresh worker (a quick second failure would be backed off): `kills` idle, `kills` under
  // load, and the last worker is SIGSTOPped.
  const workers = 2 * opts.kills + 1;
  const inst = await startInstance({
    workers,
    flags: [
      `--heartbeat-ms=${HEARTBEAT_MS}`,
      `--hang-timeout-ms=${HANG_TIMEOUT_MS}`,
      "--rate-per-addr=0",
      "--log-level=warning",
    ],
  });
  const paths = instancePaths(inst.runDir);
  const seg = Segment.open(paths.shm);
  let watchdogKilled = false;
  try {
    // Bare starts run beside the idle instance: the same conditions as the idle kills that follow.
    await bareWorkerStart(); // warm the module cache; not counted
    const bare: BareStart[] = [];
    for (let i = 0; i < opts.bareStarts; i++) bare.push(await bareWorkerStart());
    const bareMs = median(bare.map((b) => b.listenMs));
    const idle: KillResult[] = [], loaded: KillResult[] = [];
    for (let id = 1; id <= opts.kills; id++) idle.push(await killWorker(inst, seg, id, false));
    for (let id = opts.kills + 1; id <= 2 * opts.kills; id++) {
      loaded.push(await killWorker(inst, seg, id, true));
    }

    // SIGSTOP: the worker stops answering heartbeats; the watchdog kills and replaces it.
    const stopped = seg.slot(workers);
    const frozen = stopped.load("pid");
    const tStop = performance.now();
    Deno.kill(frozen, "SIGSTOP");
    const killedMs = await timeUntil("the frozen worker to be killed", () => !isAlive(frozen), {
      since: tStop,
    });
    const replacedMs = await timeUntil("the frozen worker to be replaced", () => {
      const pid = stopped.load("pid");
      return pid > 0 && pid !== frozen && stopped.load("sup_state") === SupState.READY;
    }, { since: tStop });

    // kill -9 of the dispatcher: time until a client is served again.
    const dispatcher = seg.slot(0).load("pid");
    const tDisp = performance.now();
    Deno.kill(dispatcher, "SIGKILL");
    const client = ospsClient("127.0.0.1", inst.port, "oneshot", REQUEST.type, REQUEST.arg);
    const dispatcherMs = await timeUntil("a client to be served after the dispatcher died", async () => {
      try {
        await client.request();
        return true;
      } catch {
        return false;
      }
    }, { since: tDisp, everyMs: 2 });

    // kill -9 of the watchdog: every child must follow it.
    const children = Array.from({ length: workers + 1 }, (_, i) => seg.slot(i).load("pid")).filter((p) =>
      p > 0
    );
    const tWd = performance.now();
    Deno.kill(inst.pid, "SIGKILL");
    watchdogKilled = true;
    const orphansMs = await timeUntil("every child to be gone", () => children.every((p) => !isAlive(p)), {
      since: tWd,
    });

    const routed = loaded.reduce((n, k) => n + k.routedToDead, 0);
    /** A figure of the idle kills: the median of `field`. */
    const idleFigure = (
      name: string,
      field: "recoveryMs" | "acceptsMs",
      rest: Pick<Parameters<typeof figure>[0], "reference" | "target" | "note">,
    ) => figure({ part: "Recovery", name, value: median(idle.map((k) => k[field])), unit: "ms", ...rest });
    const figures: Figure[] = [
      idleFigure("kill -9 worker → pool serves with N workers again", "recoveryMs", {
        reference: { name: "bare start of one worker process", value: bareMs },
        target: { on: "ratio", op: "<=", limit: 1.1 },
        note: `idle pool, median of ${idle.length} kills, until the new worker's slot shows ready; ` +
          `bare start: median of ${bare.length} spawns of the worker command until it accepts TCP`,
      }),
      idleFigure("kill -9 worker → replacement ready (diagnostic)", "recoveryMs", {
        reference: {
          name: "bare start of one worker process until its ready line",
          value: median(bare.map((b) => b.readyMs)),
        },
        note:
          "the same kills against the moment the watchdog can know: the rest is exit, reaping and respawn",
      }),
      idleFigure("kill -9 worker → the new worker accepts TCP (diagnostic)", "acceptsMs", {
        reference: { name: "bare start of one worker process", value: bareMs },
        note:
          "the same kills, timed to what the bare start is timed to; the target figure also waits for the " +
          "worker's doorbells and its ready line (the bare start does that ~10-15 ms after it listens)",
      }),
      figure({
        part: "Recovery",
        name: `kill -9 worker under load (${LOAD_CLIENTS} clients) → pool serves with N workers again`,
        value: median(loaded.map((k) => k.recoveryMs)),
        unit: "ms",
        reference: { name: "bare start of one worker process (idle)", value: bareMs },
        note: `median of ${loaded.length} kills`,
      }),
      figure({
        part: "Recovery",
        name: "clients routed to a dead worker",
        value: routed,
        unit: "clients",
        target: { on: "value", op: "<=", limit: 0 },
        note:
          `failed requests that started after the killed worker's last thread had exited, over ${loaded.length} kills ` +
          `under load; ${loaded.reduce((n, k) => n + k.inFlight, 0)} more failed that were in flight ` +
          "at the kill or started while the process was still exiting",
      }),
      figure({
        part: "Recovery",
        name: "SIGSTOP worker → hung worker killed",
        value: killedMs,
        unit: "ms",
        // The stop may land just after a ping was answered: the next ping goes out up to one heartbeat later,
        // and its silence is judged on a tick, up to one more heartbeat after the hang timeout.
        reference: { name: "hang timeout + two heartbeats", value: HANG_TIMEOUT_MS + 2 * HEARTBEAT_MS },
        target: { on: "ratio", op: "<=", limit: 1.0 },
        note: `--heartbeat-ms=${HEARTBEAT_MS} --hang-timeout-ms=${HANG_TIMEOUT_MS}`,
      }),
      figure({
        part: "Recovery",
        name: "SIGSTOP worker → replacement ready",
        value: replacedMs,
        unit: "ms",
        reference: {
          name: "hang timeout + two heartbeats + bare start",
          value: HANG_TIMEOUT_MS + 2 * HEARTBEAT_MS + bareMs,
        },
      }),
      figure({
        part: "Recovery",
        name: "kill -9 dispatcher → clients served again",
        value: dispatcherMs,
        unit: "ms",
        reference: { name: "bare start of one worker process", value: bareMs },
        note: "until a one-shot client is answered again",
      }),
      figure({ part: "Recovery", name: "kill -9 watchdog → every child gone", value: orphansMs, unit: "ms" }),
    ];
    const warm = await warmSpareKills(opts.kills);
    figures.splice(
      2,
      0,
      figure({
        part: "Recovery",
        name: "kill -9 worker → pool serves with N workers again, with --warm-spare",
        value: median(warm),
        unit: "ms",
        reference: { name: "bare start of one worker process", value: bareMs },
        target: { on: "ratio", op: "<=", limit: 1.1 },
        note: `median of ${warm.length} kills: the running spare takes the dead worker's place; ` +
          "the dead one restarts as the spare",
      }),
    );
    return {
      figures,
      raw: {
        bare_worker_starts_ms: bare,
        worker_kills_idle: idle,
        worker_kills_under_load: loaded,
        heartbeat_ms: HEARTBEAT_MS,
        hang_timeout_ms: HANG_TIMEOUT_MS,
        sigstop: { killed_ms: killedMs, replaced_ms: replacedMs },
        dispatcher_kill_ms: dispatcherMs,
        watchdog_kill_children_gone_ms: orphansMs,
        warm_spare_kills_ms: warm,
      },
    };
  } finally {
    seg.close();
    if (watchdogKilled) {
      await inst.exited();
      Segment.unlink(paths.shm);
      Deno.removeSync(inst.runDir.slice(0, inst.runDir.lastIndexOf("/")), { recursive: true });
    } else {
      await inst.stop();
    }
  }
}
