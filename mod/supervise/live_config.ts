/**
 * The watchdog's configuration as the supervision machinery uses it: the
 * configuration in force (a reload swaps it), the descriptor budget it is
 * fitted to, and the timing, restart policy and finishing grace derived from it.
 * @module
 */
import { localSlots, type WatchdogConfig } from "../cli/config.ts";
import { logger } from "../log.ts";
import { fitConnections, reserveFor } from "../sys/fds.ts";
import { DEFAULT_POLICY, type RestartPolicy } from "./restart_policy.ts";
import type { Timing } from "./child_spec.ts";

/**
 * The configuration in force. A reload swaps `cfg` and bumps `generation`:
 * the watchdog's own settings apply at once, every child spawned from then on
 * gets the new flags (and is known by the generation it was started with).
 */
export interface Live {
  cfg: WatchdogConfig;
  generation: number;
}

/** `given` with `--max-conns` fitted to the descriptor limit (the dispatcher keeps the most; children inherit it). */
export function fitted(given: WatchdogConfig): WatchdogConfig {
  const fds = fitConnections(given.maxConns, reserveFor(2 * localSlots(given.workers)), given.maxConnsGiven);
  if (fds.capped) logger().warn("{what}", { what: fds.capped });
  return { ...given, maxConns: fds.maxConns };
}

/** Heartbeat and deadline settings from `cfg`. */
export function timingOf(cfg: WatchdogConfig): Timing {
  return {
    hangTimeoutMs: cfg.hangTimeoutMs,
    requestTimeoutMs: cfg.requestTimeoutMs,
    requestTimeoutFor: cfg.requestTimeoutFor,
    bootTimeoutMs: Math.max(cfg.hangTimeoutMs, 15_000),
  };
}

/** Restart policy from `cfg`. */
export function policyOf(cfg: WatchdogConfig): RestartPolicy {
  return {
    ...DEFAULT_POLICY,
    budget: cfg.restartBudget,
    budgetWindowMs: cfg.restartWindowMs,
    failedRetryMs: cfg.failedRetryMs,
  };
}

/**
 * How long a replaced worker may take to finish its work: a ticket's client
 * arriving, its handshake, the longest request deadline, an idle connection
 * timing out, then the stop grace. Only a bound: it exits as soon as it is idle.
 */
export function finishGraceMs(cfg: WatchdogConfig): number {
  const longest = Math.max(cfg.requestTimeoutMs, ...Object.values(cfg.requestTimeoutFor));
  return cfg.ticketTtlMs + cfg.handshakeTimeoutMs + longest + cfg.idleTimeoutMs + cfg.graceMs;
}
