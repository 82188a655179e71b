/**
 * Whether an incarnation got ready (every child that can run does), whether
 * it never can (the watchdog then gives up with exit 100), and the ready line
 * that says so.
 * @module
 */
import type { WatchdogConfig } from "../cli/config.ts";
import { logger } from "../log.ts";
import { netScope } from "../sys/spawn.ts";
import type { SupervisedChild } from "./supervisor.ts";
import type { WorkerSlots } from "./worker_slots.ts";

/** Whether the instance got ready, and whether it never can. */
export class PoolWatch {
  readonly #cfg: WatchdogConfig;
  readonly #dispatcher: SupervisedChild | undefined;
  readonly #slots: WorkerSlots;
  readonly #serving: (c: SupervisedChild) => boolean;
  #failingBefore = 0;

  constructor(
    cfg: WatchdogConfig,
    dispatcher: SupervisedChild | undefined,
    slots: WorkerSlots,
    serving: (c: SupervisedChild) => boolean,
  ) {
    this.#cfg = cfg;
    this.#dispatcher = dispatcher;
    this.#slots = slots;
    this.#serving = serving;
  }

  /**
   * Ready once every child that can run does (a worker that cannot boot
   * leaves the pool degraded); fatal when no incarnation was ever ready and
   * the dispatcher, or every worker, cannot run. Once `wasReady`, a change in
   * the number of failing workers is logged.
   */
  judge(wasReady: boolean, everReady: boolean): { ready: boolean; failing: number[]; fatal: string | null } {
    const workers = this.#slots.enlisted;
    const failing = workers.filter((c) => c.state === "failed");
    const d = this.#dispatcher;
    const ready = (!d || d.state === "ready") && (workers.length === 0 || workers.some(this.#serving)) &&
      workers.every((c) => this.#serving(c) || c.state === "failed");
    let fatal: string | null = null;
    if (!everReady && !ready) {
      if (d?.state === "failed") fatal = "the dispatcher cannot run";
      else if (workers.length > 0 && failing.length === workers.length) fatal = "no worker can run";
    }
    if (wasReady && failing.length !== this.#failingBefore) {
      logger().warn("pool: {n} of {total} workers can serve ({k} failing, retried every {s} s)", {
        n: workers.length - failing.length,
        total: workers.length,
        k: failing.length,
        s: this.#cfg.failedRetryMs / 1000,
      });
    }
    this.#failingBefore = failing.length;
    return { ready, failing: failing.map((c) => c.spec.slot.index), fatal };
  }
}

/**
 * Prints the ready line on stdout, logs it, and returns it (for systemd's
 * STATUS=). It promises the address of the dispatcher, how many workers serve,
 * and the range of ports they listen in (the spare's included: a replacement
 * moves a worker to another slot of the range); `osps status` says which now.
 */
export function announceReady(cfg: WatchdogConfig, failing: number[]): string {
  const last = cfg.port + cfg.workers + (cfg.workers > 0 ? 1 : 0);
  const ports = cfg.workers ? ` worker-ports=${cfg.port + 1}-${last}` : "";
  const head = cfg.join
    ? `ready joined=${netScope(cfg.join.host, cfg.join.port)} host=${cfg.host}`
    : `ready dispatcher=${netScope(cfg.host, cfg.port)}${
      cfg.linkPort ? ` link=${netScope(cfg.host, cfg.linkPort)}` : ""
    }`;
  const irc = cfg.chat.ircPort > 0 ? ` irc=${netScope(cfg.host, cfg.chat.ircPort)}` : "";
  const http = cfg.http.port > 0 ? ` http=${netScope(cfg.http.host || cfg.host, cfg.http.port)}` : "";
  const line = `${head} workers=${cfg.workers}${ports}${irc}${http} pid=${Deno.pid} run-dir=${cfg.runDir}${
    failing.length ? ` degraded failed=${failing.join(",")}` : ""
  }`;
  console.log(line);
  const log = logger();
  if (failing.length) {
    log.warn("serving degraded: {n} of {total} workers ready (failing: {failed}; retried every {s} s)", {
      n: cfg.workers - failing.length,
      total: cfg.workers,
      failed: failing.join(", "),
      s: cfg.failedRetryMs / 1000,
    });
  } else log.info("all {n} children ready", { n: cfg.workers + (cfg.join ? 0 : 1) });
  return line;
}
