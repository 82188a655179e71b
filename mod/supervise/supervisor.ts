/**
 * Supervision of one child process: the state machine of `child_states.ts`
 * carried out. Each event is looked up in the table and its action done here;
 * the child has one deadline at a time (one timer), and every time it uses is
 * on the injected monotonic {@link Clock}, so tests drive time instead of
 * waiting for it.
 *
 * Liveness is proven from the child's main loop (see `mod/ipc/control.ts`):
 * a child that stops answering for `hangTimeoutMs` is killed (SIGTERM, then
 * SIGKILL) and replaced. A worker whose request runs past its deadline, or
 * blocks it past the hang timeout, is killed too, but that is the request's
 * doing: it restarts at once and spends no budget. Crashes restart after a
 * backoff with jitter; past its budget (its own or the pool's) a child is
 * `failed` and retried after `failedRetryMs`, forever: a supervisor that has
 * served never gives up on its own.
 * @module
 */
import { EXIT_CANNOT_BOOT } from "../errors.ts";
import { type Action, type Event, type State, transition } from "./child_states.ts";
import { ExitReason, exitReasonText, requestCaused } from "./exit_reason.ts";
import { backoffDelay, DEFAULT_POLICY, RestartBudget, type RestartPolicy } from "./restart_policy.ts";
import { ParentControl, readLines } from "../ipc/control.ts";
import { logger } from "../log.ts";
import { procStat } from "../sys/proc.ts";
import type { Clock, TimerHandle } from "../sys/clock.ts";
import { type SlotView, SupState } from "../ipc/shm.ts";
import { recordDeath, type Running } from "../link/slot_tickets.ts";
import { hangCulprit, overdueRequest } from "../link/ticket_reports.ts";

/** A spawned process, as the supervisor uses it (Deno.ChildProcess fits). */
export interface Spawned {
  readonly pid: number;
  readonly status: Promise<Deno.CommandStatus>;
  readonly stdin: WritableStream<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  kill(signal: Deno.Signal): void;
}

/** Starts a process; tests may give their own. */
export type Spawner = (program: string, args: string[]) => Spawned;

/** Spawns with `Deno.Command`: stdin and stdout piped (the control channel), stderr inherited (logs). */
export const commandSpawner: Spawner = (program, args) =>
  new Deno.Command(program, { args, stdin: "piped", stdout: "piped", stderr: "inherit" }).spawn();

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
  /** The TCP link secrets (current, then previous), sent as the first control line (roles that use a link). */
  readonly secret?: readonly Uint8Array[];
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
}

/** One supervised child. */
export class SupervisedChild {
  readonly spec: ChildSpec;
  #state: State = "none";
  #process: Spawned | undefined;
  #control: ParentControl | undefined;
  #lastPong = 0;
  #spawnedAt = 0;
  #seq = 0;
  #quickFailures = 0;
  #retiring = false;
  #everSpawned = false;
  readonly #budget: RestartBudget;
  /** The one deadline of this child (its meaning depends on the state). */
  #deadline: TimerHandle;
  /** Why the watchdog is killing the current process, and the limit a request ran past. */
  #killReason: number = ExitReason.NONE;
  #killLimitMs = 0;
  /** The request a kill was for (its death record blames it), if any. */
  #killCulprit: Running | null = null;
  /** Grace of an ordered stop, before SIGKILL. */
  #stopGraceMs = 0;
  /** How long the last process ran and why it ended (for the restart log line). */
  #lastRanMs = 0;
  #lastWhy = "";
  #exited: Promise<void> = Promise.resolve();
  /** Why the current process is leaving (a replacement took over), or NONE. */
  #leaving: number = ExitReason.NONE;
  /** How long a leaving child may take to finish its work before it is stopped. */
  #leaveGraceMs = 0;
  #policy: RestartPolicy;
  #timing: Timing;
  readonly #clock: Clock;
  readonly #spawner: Spawner;
  readonly #isStopped: (pid: number) => boolean;
  /** For a worker attached over TCP: whether its link to the dispatcher is up (it says so on its channel). */
  linked = false;
  /** Called on every state change (the watchdog checks readiness and whether anything can serve). */
  onChange: (child: SupervisedChild) => void = () => {};
  /** Called when a process ends, with the `last_exit` code (for restart counts by reason). */
  onExit: (child: SupervisedChild, code: number) => void = () => {};

  constructor(spec: ChildSpec, timing: Timing, policy: RestartPolicy = DEFAULT_POLICY, deps: SupervisorDeps) {
    this.spec = spec;
    this.#timing = timing;
    this.#policy = policy;
    this.#clock = deps.clock;
    this.#spawner = deps.spawner ?? commandSpawner;
    this.#isStopped = deps.isStopped ?? ((pid) => procStat(pid)?.state === "T");
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

  /** Looks `event` up in the table and carries out its action. False when the event does not apply. */
  #fire(event: Event): boolean {
    const tr = transition(this.#state, event);
    if (!tr) return false;
    if (tr.to !== this.#state) {
      logger().debug("{name}: {from} --{event}--> {to} ({action})", {
        name: this.spec.name,
        from: this.#state,
        event,
        to: tr.to,
        action: tr.action,
      });
    }
    this.#state = tr.to;
    this.spec.slot.store("sup_state", SupState[tr.to.toUpperCase() as keyof typeof SupState]);
    this.#act(tr.action);
    this.onChange(this);
    return true;
  }

  #act(action: Action): void {
    this.#clock.cancel(this.#deadline);
    this.#deadline = undefined;
    switch (action) {
      case "spawn":
        return this.#spawn();
      case "kill":
        return this.#kill();
      case "escalate":
        return this.#signal("SIGKILL");
      case "order_stop":
        void this.#control?.send("stop");
        return this.#arm(this.#stopGraceMs);
      case "order_drain":
        void this.#control?.send("drain");
        return this.#arm(this.#leaveGraceMs);
      case "restart_later":
        return this.#restartLater();
      case "restart_now":
        return this.#arm(0, 0);
      case "retry_later":
        return this.#arm(this.#policy.failedRetryMs, this.#policy.failedRetryMs);
      case "none":
        return;
    }
  }

  /** Arms the one deadline; `backoffMs`, when given, is also published as the restart time. */
  #arm(ms: number, backoffMs?: number): void {
    if (backoffMs !== undefined) this.spec.slot.store("backoff_until", this.#clock.now() + backoffMs);
    this.#deadline = this.#clock.after(ms, () => {
      this.#deadline = undefined;
      this.#fire("timer");
    });
  }

  /** Spawns the child (from none, backoff or failed). */
  start(): void {
    this.#fire("spawn");
  }

  #spawn(): void {
    const { program, args } = this.spec.command();
    const slot = this.spec.slot;
    let proc: Spawned;
    try {
      proc = this.#spawner(program, args);
    } catch (err) {
      logger().error("{name}: cannot spawn {program}: {err}", {
        name: this.spec.name,
        program,
        err: String(err),
      });
      queueMicrotask(() => this.#fire("cannot_boot"));
      return;
    }
    // A retirement or a replacement is planned, not a restart (nothing went wrong).
    if (this.#everSpawned && !plannedEnd(slot.load("last_exit"))) slot.add("restarts", 1);
    this.#everSpawned = true;
    this.#process = proc;
    this.#control = new ParentControl(proc.stdin);
    if (this.spec.secret) {
      const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      void this.#control.send(`secret ${this.spec.secret.map(hex).join(",")}`);
    }
    this.#spawnedAt = this.#lastPong = this.#clock.now();
    this.#killReason = ExitReason.NONE;
    this.#killLimitMs = 0;
    this.#killCulprit = null;
    this.#retiring = false;
    this.#leaving = ExitReason.NONE;
    this.linked = false;
    slot.store("pid", proc.pid);
    slot.store("started_at", this.#spawnedAt);
    slot.store("heartbeat_at", this.#spawnedAt);
    slot.store("backoff_until", 0);
    this.#arm(this.#timing.bootTimeoutMs);
    // Exit is handled after the last control line is read (a "retiring" may be the last one).
    const replies = this.#readReplies(proc);
    this.#exited = Promise.all([proc.status, replies]).then(([s]) => this.#onExit(proc, s));
  }

  async #readReplies(proc: Spawned): Promise<void> {
    try {
      for await (const line of readLines(proc.stdout)) {
        if (proc !== this.#process) return;
        if (line.startsWith("pong")) this.#lastPong = this.#clock.now();
        else if (line.startsWith("retiring")) this.#retiring = true;
        else if (line.startsWith("linked ") || line.startsWith("unlinked ")) {
          this.linked = line.startsWith("linked ");
          this.onChange(this);
        } else if (line.startsWith("ready")) {
          this.#lastPong = this.#clock.now();
          this.#fire("ready");
        }
      }
    } catch { /* stdout closed with the process */ }
  }

  #onExit(proc: Spawned, status: Deno.CommandStatus): void {
    const slot = this.spec.slot;
    const code = this.#killReason !== ExitReason.NONE
      ? this.#killReason
      : this.#leaving !== ExitReason.NONE && status.success
      ? this.#leaving
      : this.#retiring && status.success
      ? ExitReason.RECYCLED
      : status.signal
      ? ExitReason.SIGNAL_BASE + signalNumber(status.signal)
      : status.code;
    // The death record comes first, the pid last: the dispatcher waits for the pid to change, then reads it.
    if (this.spec.isWorker) recordDeath(slot, proc.pid, this.#killCulprit, this.#killLimitMs);
    slot.store("last_exit", code);
    slot.store("pid", 0);
    if (this.#process === proc) this.#process = undefined;
    void this.#control?.close();
    this.#control = undefined;
    this.onExit(this, code);
    const ranMs = Math.round(this.#clock.now() - this.#spawnedAt);
    const log = logger();
    const event = this.#classify(code);
    if (this.#state === "stopping") {
      this.#fire(event);
      log.info("{name} stopped ({why})", { name: this.spec.name, why: exitReasonText(code) });
      return;
    }
    const why = exitReasonText(code);
    if (event === "exit_left") {
      log.info("{name} left ({why}) after {ms} ms", { name: this.spec.name, why, ms: ranMs });
    } else if (event === "cannot_boot") {
      // Whether it is tried again is the instance's call (it gives up if it never got ready): the watchdog says.
      log.error("{name} cannot boot (see its error above)", { name: this.spec.name });
    } else if (event === "exit_retired") {
      log.info("{name} retired after {ms} ms; replacing it", { name: this.spec.name, ms: ranMs });
    } else if (event === "exit_request") {
      log.warn("{name} {why}; replacing it at once (the request's fault: no restart budget spent)", {
        name: this.spec.name,
        why,
      });
    } else if (event === "exit_over_budget") {
      const now = this.#clock.now();
      const pool = this.spec.poolBudget;
      const over = !this.#budget.allows(now) ? this.#budget : pool!;
      log.error(
        "{name} exited ({why}); {whose} restarted {n} times in {s} s: failing, trying again in {r} s",
        {
          name: this.spec.name,
          why,
          whose: over === pool ? "the worker pool" : this.spec.name,
          n: over.used(now),
          s: over.windowMs / 1000,
          r: this.#policy.failedRetryMs / 1000,
        },
      );
    } else {
      this.#quickFailures = ranMs >= this.#policy.stableMs ? 0 : this.#quickFailures + 1;
    }
    this.#lastRanMs = ranMs;
    this.#lastWhy = why;
    this.#fire(event);
  }

  /** Which kind of end this was (see `Event` in child_states.ts). */
  #classify(code: number): Event {
    if (this.#leaving !== ExitReason.NONE) return "exit_left";
    if (requestCaused(code)) return "exit_request";
    if (code === ExitReason.RECYCLED) return "exit_retired";
    if (code === EXIT_CANNOT_BOOT) return "cannot_boot";
    const now = this.#clock.now();
    const pool = this.spec.poolBudget;
    return this.#budget.allows(now) && (!pool || pool.allows(now)) ? "exit" : "exit_over_budget";
  }

  #restartLater(): void {
    const now = this.#clock.now();
    this.#budget.spend(now);
    this.spec.poolBudget?.spend(now);
    const delay = backoffDelay(this.#quickFailures, this.#policy);
    logger().warn("{name} exited after {ms} ms: {why}; restarting in {delay} ms", {
      name: this.spec.name,
      ms: this.#lastRanMs,
      why: this.#lastWhy,
      delay,
    });
    this.#arm(delay, delay);
  }

  /**
   * One heartbeat: ping, and kill when hung, past a request deadline, or its
   * pipes are wedged. (A child still starting is bounded by its boot deadline.)
   */
  tick(): void {
    if (this.#state !== "starting" && this.#state !== "ready" && this.#state !== "leaving") return;
    void this.#control?.send(`ping ${++this.#seq}`);
    if (this.#state === "starting") return;
    const now = this.#clock.now();
    const slot = this.spec.slot;
    const silentMs = now - this.#lastPong;
    if (silentMs > this.#timing.hangTimeoutMs) {
      // The request whose service holds the worker's event loop, if one does, is blamed for it alone.
      const culprit = this.spec.isWorker ? hangCulprit(slot) : null;
      logger().warn("{name} (pid {pid}) silent for {ms} ms{during}: hung, killing", {
        name: this.spec.name,
        pid: this.pid,
        ms: Math.round(silentMs),
        during: culprit ? ` during "${culprit.request}"` : "",
      });
      this.#killReason = culprit ? ExitReason.HANG_IN_REQUEST : ExitReason.HANG;
      this.#killLimitMs = this.#timing.hangTimeoutMs;
      this.#killCulprit = culprit;
      this.#fire("hang");
      return;
    }
    if (!this.spec.isWorker) return;
    const late = overdueRequest(
      slot,
      now,
      (type) => this.#timing.requestTimeoutFor[type] ?? this.#timing.requestTimeoutMs,
    );
    if (late) {
      logger().warn('{name}: "{req}" running for {ms} ms, past its {limit} ms deadline: killing', {
        name: this.spec.name,
        req: late.request,
        ms: Math.round(now - late.startedAt),
        limit: late.limitMs,
      });
      this.#killReason = ExitReason.DEADLINE;
      this.#killLimitMs = late.limitMs;
      this.#killCulprit = late;
      this.#fire("deadline");
      return;
    }
    // The dispatcher's probe through this worker's FIFO pair went unanswered
    // while the worker itself answers heartbeats: the pipes, not the process, are stuck.
    if (slot.load("link_wedged_at") > slot.load("started_at") && silentMs <= this.#timing.hangTimeoutMs / 2) {
      logger().warn("{name} (pid {pid}): dispatcher reports its pipes wedged: killing", {
        name: this.spec.name,
        pid: this.pid,
      });
      this.#killReason = ExitReason.WEDGED;
      this.#fire("wedged");
    }
  }

  #kill(): void {
    const proc = this.#process;
    if (!proc) return;
    // A stopped process (SIGSTOP, a debugger) cannot act on SIGTERM: no grace to wait for.
    if (this.#isStopped(proc.pid)) return this.#signal("SIGKILL");
    this.#signal("SIGTERM");
    this.#arm(this.#policy.killGraceMs);
  }

  /**
   * Signals our own child. Pid-reuse safe without checking `/proc`: the kernel
   * does not recycle a pid until its parent has reaped it, and only this
   * process reaps it (in `status`, after which `#process` is cleared).
   */
  #signal(sig: Deno.Signal): void {
    try {
      this.#process?.kill(sig);
    } catch { /* already exited */ }
  }

  /** Sends an order ("drain" or "stop") on the control channel. */
  order(line: "drain" | "stop"): void {
    void this.#control?.send(line);
  }

  /**
   * A replacement has taken over: the child is told to drain (finish what it
   * holds, take nothing new, exit 0) and is never restarted. It stays
   * supervised meanwhile (heartbeats, request deadlines); if it is still
   * there after `graceMs`, it is stopped. `reason` becomes its `last_exit`
   * when it leaves cleanly. Resolves once it is reaped (at once when no
   * process runs: the child is simply stopped).
   */
  async leave(reason: number, graceMs: number): Promise<void> {
    const exited = this.#exited;
    this.#leaveGraceMs = graceMs;
    this.#stopGraceMs = this.#policy.killGraceMs;
    if (this.#process) this.#leaving = reason;
    this.#fire("leave");
    await exited;
  }

  /** New timing and restart policy (a reload): used from the next heartbeat and restart on. */
  configure(timing: Timing, policy: RestartPolicy): void {
    this.#timing = timing;
    this.#policy = policy;
    this.#budget.configure(policy.budget, policy.budgetWindowMs);
  }

  /** Graceful stop: "stop" on the channel, SIGKILL after `graceMs`. Resolves once reaped. */
  async stop(graceMs: number): Promise<void> {
    this.#stopGraceMs = graceMs;
    this.#fire("stop");
    await this.#exited;
  }

  /** Kills at once and waits for the reap (used when the watchdog itself must give up). */
  async abort(): Promise<void> {
    this.#fire("abort");
    await this.#exited;
  }
}

/** An end that was planned (a retirement, a replacement): not counted as a restart. */
function plannedEnd(code: number): boolean {
  return code === ExitReason.RECYCLED || code === ExitReason.REPLACED || code === ExitReason.REPLACED_RSS;
}

const SIGNALS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

function signalNumber(sig: Deno.Signal): number {
  return SIGNALS[sig] ?? 0;
}
