/**
 * Part 6 of the benchmark suite: roles on separate hosts. Hosts are network
 * namespaces the suite makes (root only, as in tests/multihost_test.ts); the
 * load generator runs in the root namespace and reaches them over a bridge.
 * Measured in one run:
 * - the full cycle through a remote worker (a dispatcher host with
 *   `--workers 0`, a joined host with one worker, across the veth pair)
 *   against the same cycle through a local worker of the dispatcher's host
 *   (same client path, same network hops to the dispatcher);
 * - attach time: the joined host's cable is cut until the dispatcher
 *   declares the link lost, then plugged back; time until the worker is
 *   attached and routed to again (and its first attach at start).
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { LinkState, Segment } from "../mod/ipc/shm.ts";
import { type Instance, osps, startInstance } from "../tests/harness.ts";
import { type Host, makeNet, namespacesUsable } from "../tests/support/netns.ts";
import { type Figure, figure, sleep } from "./bench_util.ts";
import { cluster, PORT } from "../tests/support/cluster.ts";

/** The results of one `osps bench` run, as `--json` prints them. */
interface BenchJson {
  throughput_rps: number;
  latency_ms: { p50: number; p99: number };
  requests: { ok: number; failed: number };
}

/** `osps bench` from the root namespace against the dispatcher at `host`; `workers`: the hosts its workers are on. */
async function load(host: string, workers: string[], clients: number, seconds: number): Promise<BenchJson> {
  const o = await osps([
    "bench",
    `--host=${host}`,
    `--port=${PORT}`,
    `--clients=${clients}`,
    `--duration=${seconds}`,
    "--json",
  ], { net: [host, ...workers] });
  if (o.code !== 0) throw new Error(`osps bench against ${host} failed: ${o.stderr} ${o.stdout}`);
  return JSON.parse(o.stdout) as BenchJson;
}

/** The remote slots of the dispatcher whose link is attached. */
function attached(seg: Segment, firstRemote: number): number {
  let n = 0;
  for (let i = firstRemote; i < seg.slotCount; i++) {
    if (seg.slot(i).load("link_state") === LinkState.ATTACHED) n++;
  }
  return n;
}

async function until(check: () => boolean, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await sleep(2);
  }
  return performance.now() - t0;
}

async function stopAll(...instances: (Instance | undefined)[]): Promise<void> {
  for (const i of instances) {
    if (!i) continue;
    try {
      i.process.kill("SIGTERM");
    } catch { /* gone */ }
    await i.exited();
  }
}

/** Runs part 6; without root (no namespaces) it says why and measures nothing. */
export async function benchHosts(
  opts: { seconds: number; clients: number[] },
): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  const usable = await namespacesUsable();
  if (!usable.ok) {
    return {
      figures: [],
      raw: { skipped: usable.why },
    };
  }
  const raw: Record<string, unknown> = {};
  const figures: Figure[] = [];
  {
    // Local: the dispatcher's host serves with a worker of its own.
    const local: Record<number, BenchJson> = {};
    {
      await using net = await makeNet(1);
      const a = net.hosts[0] as Host;
      const inst = await startInstance({ workers: 1, port: PORT, wrap: a.wrap, flags: [`--host=${a.addr}`] });
      try {
        for (const c of opts.clients) local[c] = await load(a.addr, [], c, opts.seconds);
      } finally {
        await stopAll(inst);
      }
    }
    // Remote: the dispatcher routes to a worker on another host only.
    const remote: Record<number, BenchJson> = {};
    let firstAttachMs = 0, reattachMs = 0, lostMs = 0;
    {
      await using c = await cluster({ mainWorkers: 0, joinedWorkers: 1 });
      firstAttachMs = c.joinedReadyMs;
      const seg = Segment.open(instancePaths(c.main.runDir).shm);
      try {
        for (const n of opts.clients) remote[n] = await load(c.a.addr, [c.b.addr], n, opts.seconds);
        // A cable cut until the link is declared lost, then plugged back.
        await c.cable(false);
        lostMs = await until(() => attached(seg, 1) === 0, 10_000);
        await c.cable(true);
        reattachMs = await until(() => attached(seg, 1) === 1, 30_000);
      } finally {
        seg.close();
      }
    }
    raw["local"] = local;
    raw["remote"] = remote;
    raw["attach"] = { first_ms: firstAttachMs, lost_ms: lostMs, reattach_ms: reattachMs };
    for (const c of opts.clients) {
      const l = local[c]!, r = remote[c]!;
      figures.push(
        figure({
          part: "Hosts",
          name: `remote worker, ${c} client${c > 1 ? "s" : ""}: p50`,
          value: r.latency_ms.p50,
          unit: "ms",
          reference: { name: "local worker p50", value: l.latency_ms.p50 },
          note:
            "one-shot requests from the root namespace to a dispatcher host; remote: its only worker is on another host",
        }),
        figure({
          part: "Hosts",
          name: `remote worker, ${c} client${c > 1 ? "s" : ""}: throughput`,
          value: r.throughput_rps,
          unit: "req/s",
          reference: { name: "local worker req/s", value: l.throughput_rps },
        }),
      );
    }
    figures.push(
      figure({
        part: "Hosts",
        name: "joined host: start until its worker is attached",
        value: Math.round(firstAttachMs),
        unit: "ms",
        note: "watchdog start on the joined host, its worker's boot, TCP connect, HMAC handshake",
      }),
      figure({
        part: "Hosts",
        name: "cable cut → link declared lost",
        value: Math.round(lostMs),
        unit: "ms",
        reference: { name: "--link-timeout-ms", value: 1_000 },
      }),
      figure({
        part: "Hosts",
        name: "cable plugged back → worker attached again",
        value: Math.round(reattachMs),
        unit: "ms",
        note: "the worker retries its link with capped backoff; --link-heartbeat-ms=200",
      }),
    );
  }
  return { figures, raw };
}
