/**
 * The children of one incarnation: the dispatcher (none on a joined host) and
 * one child per local worker slot (the workers' and the spare's), each
 * re-running this program with the command line of its role. Every spawn
 * builds its command line from the configuration in force then, and is known
 * by that configuration's generation.
 * @module
 */
import { toArgv } from "../cli/cli.ts";
import { limitFlags, localSlots, poolFlags } from "../cli/config.ts";
import { chatForWorkers } from "../chat/chat_boot.ts";
import { httpForWorkers } from "../http/http_config.ts";
import type { Segment } from "../ipc/shm.ts";
import { netScope, selfCommand } from "../sys/spawn.ts";
import { type Live, policyOf, timingOf } from "./live_config.ts";
import { RestartBudget } from "./restart_policy.ts";
import type { SupervisorDeps } from "./child_spec.ts";
import { SupervisedChild } from "./supervisor.ts";

/** An incarnation's children. */
export interface Children {
  readonly dispatcher: SupervisedChild | undefined;
  /** Every local worker slot's child, in slot order (the spare's last at first). */
  readonly workers: SupervisedChild[];
  /** The restart budget all workers share. */
  readonly poolBudget: RestartBudget;
}

/** Makes (does not start) the children of an incarnation mapped in `segment`. */
export function makeChildren(
  live: Live,
  segment: Segment,
  instanceId: number,
  deps: SupervisorDeps,
  secret: Uint8Array[] | undefined,
): Children {
  const cfg = live.cfg; // ports, hosts, slots: fixed for the incarnation
  const generation = () => live.generation;
  const common = () => ({
    host: cfg.host,
    "run-dir": cfg.runDir,
    shm: segment.name,
    instance: instanceId,
    "parent-pid": Deno.pid,
    "heartbeat-ms": cfg.heartbeatMs,
    "grace-ms": live.cfg.graceMs,
    "link-heartbeat-ms": cfg.linkHeartbeatMs,
    "link-timeout-ms": cfg.linkTimeoutMs,
    ...limitFlags(live.cfg),
    "proxy-from": live.cfg.proxyFrom.toString(),
    "log-level": live.cfg.logLevel,
    "log-format": live.cfg.logFormat,
  });
  const slotCount = localSlots(cfg.workers);
  segment.slot(0).store("port", cfg.port);
  const dispatcher = cfg.join ? undefined : new SupervisedChild(
    {
      name: "dispatcher",
      slot: segment.slot(0),
      isWorker: false,
      secret: cfg.linkPort ? secret : undefined,
      generation,
      command: () =>
        selfCommand(
          toArgv("dispatcher", {
            ...common(),
            port: cfg.port,
            workers: slotCount,
            "link-port": cfg.linkPort,
            "remote-slots": cfg.remoteSlots,
            ...poolFlags(live.cfg),
            "probe-ms": cfg.probeMs,
            "probe-timeout-ms": live.cfg.hangTimeoutMs,
          }),
          {
            listen: [
              netScope(cfg.host, cfg.port),
              ...(cfg.linkPort ? [netScope(cfg.host, cfg.linkPort)] : []),
            ],
          },
        ),
    },
    timingOf(cfg),
    policyOf(cfg),
    deps,
  );
  const poolBudget = new RestartBudget(cfg.poolRestartBudget, cfg.restartWindowMs);
  const join = cfg.join ? netScope(cfg.join.host, cfg.join.port) : undefined;
  const workers = Array.from({ length: slotCount }, (_, i) => {
    const id = i + 1, port = cfg.port + id;
    segment.slot(id).store("port", port);
    return new SupervisedChild(
      {
        name: `worker ${id}`,
        slot: segment.slot(id),
        isWorker: true,
        poolBudget,
        secret: join ? secret : undefined,
        generation,
        command: () => {
          const chat = chatForWorkers(live.cfg.chat, cfg.host, cfg.port);
          const http = httpForWorkers(cfg.http, { host: cfg.host, port: cfg.port, slots: slotCount });
          return selfCommand(
            toArgv("worker", {
              ...common(),
              ...chat.flags,
              ...http.flags,
              "dispatcher-port": cfg.port,
              id,
              port,
              join,
              "max-requests": withJitter(live.cfg.maxRequests),
            }),
            {
              ...chat.permissions,
              connect: [...chat.permissions.connect ?? [], ...http.permissions.connect ?? []],
              listen: [
                netScope(cfg.host, port),
                ...(join ? [join] : []),
                ...chat.permissions.listen,
                ...http.permissions.listen,
              ],
            },
          );
        },
      },
      timingOf(cfg),
      policyOf(cfg),
      deps,
    );
  });
  return { dispatcher, workers, poolBudget };
}

/** `n` plus up to 10% random jitter, so that workers started together do not all retire together. */
function withJitter(n: number): number {
  return n > 0 ? n + Math.floor(Math.random() * (Math.floor(n / 10) + 1)) : 0;
}
