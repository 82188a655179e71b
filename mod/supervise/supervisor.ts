/**
 * Supervision of one child process: spawns it, drives its state machine
 * (`child_states.ts`, after s6) from the watchdog's loop, and applies the
 * restart policy (`restart_policy.ts`).
 *
 * Liveness is proven from the child's main loop (see control.ts); a child that
 * stops answering for `hangTimeoutMs` is killed (SIGTERM, then SIGKILL) and
 * replaced. Restarts back off exponentially with jitter; a child over its
 * restart budget (its own, or the pool's shared by every worker), or one that
 * cannot boot (exit 100), is marked failed and retried later instead of
 * looping. A worker that retires after `--max-requests` is replaced at once
 * and does not count as a failure.
 * @module
 */
import { EXIT_CANNOT_BOOT } from "../errors.ts";
import { type Event, ExitReason, exitReasonText, type State, transition } from "./child_states.ts";
import { DEFAULT_POLICY, RestartBudget, type RestartPolicy } from "./restart_policy.ts";
import { ParentControl, readLines } from "../ipc/control.ts";
import { logger } from "../log.ts";
import { procStat } from "../sys/proc.ts";
import { type SlotView, SupState, WorkState } from "../ipc/shm.ts";

/** How to start one child. */
export interface ChildSpec {
  /** "dispatcher" or "worker <i>". */
  readonly name: string;
  readonly slot: SlotView;
  readonly isWorker: boolean;
  /** Program and arguments, computed fresh for every spawn. */
  command(): { program: string; args: string[] };
  /** The pool's budget, shared by every worker (none for the dispatcher). */
  readonly poolBudget?: RestartBudget;
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

/** One supervised child. */
export class SupervisedChild {
  readonly spec: ChildSpec;
  #state: State = "none";
  #process: Deno.ChildProcess | undefined;
  #control: ParentControl | undefined;
  #lastPong = 0;
  #spawnedAt = 0;
  #seq = 0;
  #quickFailures = 0;
  #retiring = false;
  readonly #budget: RestartBudget;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  #pendingReason = ExitReason.NONE as number;
  #exited: Promise<void> = Promise.resolve();
  readonly #policy: RestartPolicy;
  readonly #timing: Timing;
  /** Called on every state change (the watchdog checks readiness and whether anything can serve). */
  onChange: (child: SupervisedChild) => void = () => {};

  constructor(spec: ChildSpec, timing: Timing, policy: RestartPolicy = DEFAULT_POLICY) {
    this.spec = spec;
    this.#timing = timing;
    this.#policy = policy;
    this.#budget = new RestartBudget(policy.budget, policy.budgetWindowMs);
    spec.slot.store("last_exit", ExitReason.NONE);
  }

  /** Current state. */
  get state(): State {
    return this.#state;
  }

  /** Pid of the running process, 0 when none. */
  get pid(): number {
    return this.#process?.pid ?? 0;
  }

  #fire(event: Event): boolean {
    const next = transition(this.#state, event);
    if (!next) return false;
    if (next !== this.#state) {
      logger().debug("{name}: {from} --{event}--> {to}", {
        name: this.spec.name,
        from: this.#state,
        event,
        to: next,
      });
    }
    this.#state = next;
    this.spec.slot.store("sup_state", SupState[next.toUpperCase() as keyof typeof SupState]);
    this.onChange(this);
    return true;
  }

  /** Spawns the child (from none, backoff or failed). */
  start(): void {
    const event: Event = this.#state === "none" ? "spawn" : this.#state === "failed" ? "retry" : "restart";
    if (!this.#fire(event)) return;
    const { program, args } = this.spec.command();
    const slot = this.spec.slot;
    let proc: Deno.ChildProcess;
    try {
      proc = new Deno.Command(program, { args, stdin: "piped", stdout: "piped", stderr: "inherit" }).spawn();
    } catch (err) {
      logger().error("{name}: cannot spawn: {err}", { name: this.spec.name, err: String(err) });
      this.#fire("cannot_boot");
      this.#schedule(this.#policy.failedRetryMs);
      return;
    }
    this.#process = proc;
    this.#control = new ParentControl(proc.stdin);
    this.#spawnedAt = this.#lastPong = Date.now();
    this.#pendingReason = ExitReason.NONE;
    this.#retiring = false;
    slot.store("pid", proc.pid);
    slot.store("started_ms", this.#spawnedAt);
    slot.store("heartbeat_ms", this.#spawnedAt);
    slot.store("backoff_until_ms", 0);
    // Exit is handled after the last control line is read (a "retiring" may be the last one).
    const replies = this.#readReplies(proc);
    this.#exited = Promise.all([proc.status, replies]).then(([s]) => this.#onExit(s));
  }

  async #readReplies(proc: Deno.ChildProcess): Promise<void> {
    try {
      for await (const line of readLines(proc.stdout)) {
        if (proc !== this.#process) return;
        if (line.startsWith("pong")) this.#lastPong = Date.now();
        else if (line.startsWith("retiring")) this.#retiring = true;
        else if (line.startsWith("ready")) {
          this.#lastPong = Date.now();
          this.#fire("ready");
        }
      }
    } catch { /* stdout closed with the process */ }
  }

  #onExit(status: Deno.CommandStatus): void {
    clearTimeout(this.#killTimer);
    const slot = this.spec.slot;
    const retired = this.#retiring && status.success;
    const code = this.#pendingReason !== ExitReason.NONE
      ? this.#pendingReason
      : retired
      ? ExitReason.RECYCLED
      : status.signal
      ? ExitReason.SIGNAL_BASE + (Deno.build.os === "linux" ? signalNumber(status.signal) : 0)
      : status.code;
    slot.store("last_exit", code);
    slot.store("pid", 0);
    if (this.spec.isWorker) slot.store("work", WorkState.OFFLINE);
    this.#process = undefined;
    void this.#control?.close();
    this.#control = undefined;
    const ranMs = Date.now() - this.#spawnedAt;
    const log = logger();
    if (this.#state === "stopping") {
      this.#fire("exit");
      log.info("{name} stopped ({why})", { name: this.spec.name, why: exitReasonText(code) });
      return;
    }
    if (code === EXIT_CANNOT_BOOT) {
      log.error("{name} cannot boot (see its error above); retrying in {s} s", {
        name: this.spec.name,
        s: this.#policy.failedRetryMs / 1000,
      });
      this.#fire("cannot_boot");
      this.#schedule(this.#policy.failedRetryMs);
      return;
    }
    if (!this.#fire("exit")) return;
    if (retired) {
      // Planned: the worker drained itself first. Not a failure, so no budget and no backoff.
      log.info("{name} retired after {ms} ms; replacing it", { name: this.spec.name, ms: ranMs });
      this.#schedule(0);
      return;
    }
    this.#restartLater(ranMs, exitReasonText(code));
  }

  #restartLater(ranMs: number, why: string): void {
    const now = Date.now();
    const pool = this.spec.poolBudget;
    const over = !this.#budget.allows(now) ? this.#budget : pool && !pool.allows(now) ? pool : null;
    if (over) {
      logger().error(
        "{name} exited ({why}); {whose} restarted {n} times in {s} s: marked failed, retrying in {r} s",
        {
          name: this.spec.name,
          why,
          whose: over === pool ? "the worker pool" : this.spec.name,
          n: over.used(now),
          s: over.windowMs / 1000,
          r: this.#policy.failedRetryMs / 1000,
        },
      );
      this.#fire("over_budget");
      this.#schedule(this.#policy.failedRetryMs);
      return;
    }
    this.#quickFailures = ranMs >= this.#policy.stableMs ? 0 : this.#quickFailures + 1;
    const base = this.#quickFailures <= 1
      ? 0
      : Math.min(this.#policy.backoffCapMs, this.#policy.backoffStartMs * 2 ** (this.#quickFailures - 2));
    const delay = Math.round(base * (0.5 + Math.random()));
    this.#budget.spend(now);
    pool?.spend(now);
    this.spec.slot.add("restarts", 1);
    logger().warn("{name} exited after {ms} ms: {why}; restarting in {delay} ms", {
      name: this.spec.name,
      ms: ranMs,
      why,
      delay,
    });
    this.#schedule(delay);
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    this.spec.slot.store("backoff_until_ms", Date.now() + delayMs);
    this.#timer = setTimeout(() => this.start(), delayMs);
  }

  /** One heartbeat: ping, and kill when hung, past a request deadline, or its pipes are wedged. */
  tick(now: number): void {
    if (this.#state !== "starting" && this.#state !== "ready") return;
    void this.#control?.send(`ping ${++this.#seq}`);
    const silentMs = now - this.#lastPong;
    const limit = this.#state === "starting" ? this.#timing.bootTimeoutMs : this.#timing.hangTimeoutMs;
    if (silentMs > limit) {
      logger().warn("{name} (pid {pid}) silent for {ms} ms: hung, killing", {
        name: this.spec.name,
        pid: this.pid,
        ms: silentMs,
      });
      this.#fire("hang");
      this.#kill(ExitReason.HANG);
      return;
    }
    // A booting worker has not yet cleared what its predecessor left in the slot.
    if (!this.spec.isWorker || this.#state !== "ready") return;
    const slot = this.spec.slot;
    const started = slot.load("request_started_ms");
    if (started > 0) {
      const type = slot.text("request_type");
      const limit = this.#timing.requestTimeoutFor[type] ?? this.#timing.requestTimeoutMs;
      if (now - started > limit) {
        logger().warn("{name}: {type} request running for {ms} ms, past its {limit} ms deadline: killing", {
          name: this.spec.name,
          type,
          ms: now - started,
          limit,
        });
        this.#fire("deadline");
        this.#kill(ExitReason.DEADLINE);
        return;
      }
    }
    // The dispatcher's probe through this worker's FIFO pair went unanswered
    // while the worker itself answers heartbeats: the pipes, not the process, are stuck.
    // A worker that stopped answering heartbeats too is left to the hang check above.
    if (slot.load("link_wedged_ms") > slot.load("started_ms") && silentMs <= this.#timing.hangTimeoutMs / 2) {
      logger().warn("{name} (pid {pid}): dispatcher reports its pipes wedged: killing", {
        name: this.spec.name,
        pid: this.pid,
      });
      this.#fire("wedged");
      this.#kill(ExitReason.WEDGED);
    }
  }

  #kill(reason: number): void {
    this.#pendingReason = reason;
    const proc = this.#process;
    if (!proc) return;
    clearTimeout(this.#killTimer);
    // A stopped process (SIGSTOP, a debugger) cannot act on SIGTERM: no grace to wait for.
    if (procStat(proc.pid)?.state === "T") {
      trySignal(proc, "SIGKILL");
      return;
    }
    trySignal(proc, "SIGTERM");
    this.#killTimer = setTimeout(() => trySignal(proc, "SIGKILL"), this.#policy.killGraceMs);
  }

  /** Sends an order ("drain" or "stop") on the control channel. */
  order(line: "drain" | "stop"): void {
    void this.#control?.send(line);
  }

  /** Graceful stop: "stop" on the channel, SIGKILL after `graceMs`. Resolves once reaped. */
  async stop(graceMs: number): Promise<void> {
    clearTimeout(this.#timer);
    const wasRunning = this.#process !== undefined;
    this.#fire("stop");
    if (wasRunning) {
      this.order("stop");
      const proc = this.#process;
      this.#killTimer = setTimeout(() => proc && trySignal(proc, "SIGKILL"), graceMs);
    }
    await this.#exited;
    clearTimeout(this.#killTimer);
  }

  /** Kills at once and waits for the reap (used when the watchdog itself must give up). */
  async abort(): Promise<void> {
    clearTimeout(this.#timer);
    this.#fire("stop");
    if (this.#process) trySignal(this.#process, "SIGKILL");
    await this.#exited;
  }
}

/**
 * Signals one of our own children. Pid-reuse safe without checking
 * `/proc/<pid>/stat`: the kernel does not recycle a pid until its parent has
 * reaped it, and only this process reaps it (in `proc.status`, after which
 * `#process` is cleared and Deno refuses to signal it). Signals to processes
 * that are not our children (`osps stop` → the watchdog) go through
 * `signalIfSame` in `proc.ts`, which compares the start time first.
 */
function trySignal(proc: Deno.ChildProcess, sig: Deno.Signal): void {
  try {
    proc.kill(sig);
  } catch { /* already exited */ }
}

const SIGNALS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGABRT: 6,
  SIGKILL: 9,
  SIGSEGV: 11,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

function signalNumber(sig: Deno.Signal): number {
  return SIGNALS[sig] ?? 0;
}
