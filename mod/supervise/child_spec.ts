/**
 * What the supervisor of one child is given: how to start the child (its
 * spec), the timing it is held to, and what it needs from outside (time,
 * processes, where its events go), so that tests give their own.
 * @module
 */
import type { ChildEvent } from "./events.ts";
import type { RestartBudget } from "./restart_policy.ts";
import type { SlotView } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import type { SelfCommand } from "../sys/spawn.ts";

/** A spawned process, as the supervisor uses it (Deno.ChildProcess fits). */
export interface Spawned {
  readonly pid: number;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stdin: WritableStream<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  kill(signal: Deno.Signal): void;
}

/** Starts a process; tests may give their own. */
export type Spawner = (program: string, args: string[], env?: Record<string, string>) => Spawned;

/** Spawns with `Deno.Command`: stdin and stdout piped (the control channel), stderr inherited (logs). */
export const commandSpawner: Spawner = (program, args, env) =>
  new Deno.Command(program, { args, env, stdin: "piped", stdout: "piped", stderr: "inherit" }).spawn();

/** How to start one child. */
export interface ChildSpec {
  /** "dispatcher" or "worker <i>". */
  readonly name: string;
  readonly slot: SlotView;
  readonly isWorker: boolean;
  /** Program and arguments, computed fresh for every spawn. */
  command(): SelfCommand;
  /** The pool's budget, shared by every worker (none for the dispatcher). */
  readonly poolBudget?: RestartBudget;
  /** The TCP link secrets (current, then previous), sent as the first control line (roles that use a link). */
  readonly secret?: readonly Uint8Array[];
  /** The generation of the configuration in force (a reload bumps it), recorded at each spawn. */
  generation?(): number;
}

/** Timing settings from the watchdog's configuration. */
export interface Timing {
  readonly hangTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Deadlines for particular request types, overriding `requestTimeoutMs`. */
  readonly requestTimeoutFor: Readonly<Record<string, number>>;
  /** Time a new child gets to report ready (boot includes loading the runtime). */
  readonly bootTimeoutMs: number;
}

/** What the supervisor needs from outside: time, processes. */
export interface SupervisorDeps {
  readonly clock: Clock;
  readonly spawner?: Spawner;
  /** True when the process is stopped (SIGSTOP): it cannot act on SIGTERM. */
  readonly isStopped?: (pid: number) => boolean;
  /** Where the child's events go: the watchdog's cycle queues them; by default each is handled as it comes. */
  readonly post?: (event: ChildEvent) => void;
}
