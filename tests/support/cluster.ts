/**
 * Two simulated hosts running one osps system, for the multi-host tests and
 * the benchmark's hosts part: host A runs the dispatcher (with `--link-port`)
 * and `mainWorkers` local workers; host B, with a /dev/shm of its own, runs
 * `joinedWorkers` workers joined to A. Clients connect from the root
 * namespace over the bridge.
 * @module
 */
import assert from "node:assert/strict";
import { type Instance, osps, startInstance, type StatusJson } from "../harness.ts";
import { type Host, inNamespacesOf, makeNet } from "./netns.ts";
import { secretFile } from "./secret_file.ts";

/** The dispatcher's port on host A (and the first of the workers' on each host). */
export const PORT = 2222;
/** The dispatcher's link port on host A. */
export const LINK = 2300;
/** Link timing short enough for tests: heartbeats every 200 ms, lost after 1 s. */
export const FAST_LINK = ["--link-heartbeat-ms=200", "--link-timeout-ms=1000"];

/** A running two-host system. */
export interface Cluster extends AsyncDisposable {
  main: Instance;
  joined: Instance;
  /** From host B's watchdog start to its ready line (printed once every worker is attached to A), ms. */
  joinedReadyMs: number;
  a: Host;
  b: Host;
  /** Hosts on the same network that run no osps (strangers'), as many as {@link ClusterOptions.strangers}. */
  strangers: Host[];
  /** The secret file both watchdogs use. */
  secret: string;
  status(which: "main" | "joined"): Promise<StatusJson>;
  client(args: string[]): ReturnType<typeof osps>;
  cable(up: boolean): Promise<void>;
}

/** Options of {@link cluster}. */
export interface ClusterOptions {
  /** Workers on host A, beside the dispatcher (default 1). */
  mainWorkers?: number;
  /** Workers on host B (default 2). */
  joinedWorkers?: number;
  /** Flags for both watchdogs. */
  extra?: string[];
  /** More hosts on the network, running nothing (for strangers). */
  strangers?: number;
  /** Runs once host A is ready, before host B starts (its ready time is measured from after it). */
  beforeJoin?: (hosts: { a: Host; strangers: Host[] }) => Promise<void>;
}

/** Makes the hosts, starts A's watchdog, then B's (ready once its workers are attached). */
export async function cluster(options: ClusterOptions = {}): Promise<Cluster> {
  const { mainWorkers = 1, joinedWorkers = 2, extra = [], strangers: more = 0 } = options;
  const net = await makeNet(2 + more, [1]);
  const [a, b, ...strangers] = net.hosts as [Host, Host, ...Host[]];
  const secret = secretFile();
  const started: Instance[] = [];
  const dispose = async () => {
    for (const inst of started.reverse()) {
      try {
        inst.process.kill("SIGTERM");
      } catch { /* gone */ }
      await inst.exited();
    }
    await net[Symbol.asyncDispose]();
    Deno.removeSync(secret);
  };
  try {
    const main = await startInstance({
      workers: mainWorkers,
      port: PORT,
      wrap: a.wrap,
      flags: [`--host=${a.addr}`, `--link-port=${LINK}`, `--secret-file=${secret}`, ...FAST_LINK, ...extra],
    });
    started.push(main);
    await options.beforeJoin?.({ a, strangers });
    const t0 = performance.now();
    const joined = await startInstance({
      workers: joinedWorkers,
      port: PORT,
      wrap: b.wrap,
      flags: [
        `--host=${b.addr}`,
        `--join=${a.addr}:${LINK}`,
        `--secret-file=${secret}`,
        ...FAST_LINK,
        ...extra,
      ],
    });
    started.push(joined);
    const joinedReadyMs = performance.now() - t0;
    const both = [a.addr, b.addr];
    return {
      main,
      joined,
      joinedReadyMs,
      a,
      b,
      strangers,
      secret,
      async status(which) {
        const inst = which === "main" ? main : joined;
        // Host B's shared memory is in its own mount namespace: read it from there.
        const o = await osps(["status", `--run-dir=${inst.runDir}`, "--json"], {
          wrap: which === "joined" ? inNamespacesOf(joined.pid) : undefined,
        });
        assert.equal(o.code, 0, o.stderr);
        return JSON.parse(o.stdout);
      },
      client: (args) => osps(["client", `--host=${a.addr}`, `--port=${PORT}`, ...args], { net: both }),
      cable: (up) => net.cable(b, up),
      [Symbol.asyncDispose]: dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}
