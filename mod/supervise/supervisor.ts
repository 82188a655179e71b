/**
 * Supervision of one child process: the state machine of `child_states.ts`
 * carried out. Each event is looked up in the table and its action done here;
 * the child has one deadline at a time (one timer), and every time it uses is
 * on the injected monotonic {@link Clock}, so tests drive time instead of
 * waiting for it.
 *
 * What happens to the child (a control line, its exit, its deadline) is
 * posted as an event (`events.ts`): the watchdog's cycle queues it and hands
 * it back to {@link SupervisedChild.handle} in its fixed order; without a
 * cycle (tests) each is handled as it comes.
 *
 * Liveness is proven from the child's main loop (see `mod/ipc/control.ts`)
 * and counted in pings actually sent (`heartbeat.ts`): a child whose oldest
 * unanswered ping has waited `hangTimeoutMs` is killed (SIGTERM, then
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
import type { ChildEvent } from "./events.ts";
import { ExitReason, exitReasonText, plannedEnd, requestCaused, signalReason } from "./exit_reason.ts";
import {
  type ChildSpec,
  commandSpawner,
  type Spawned,
  type Spawner,
  type SupervisorDeps,
  type Timing,
} from "./child_spec.ts";
import { Heartbeat } from "./heartbeat.ts";
import { judge } from "./verdict.ts";
import { backoffDelay, DEFAULT_POLICY, RestartBudget, type RestartPolicy } from "./restart_policy.ts";
import { ParentControl, parseChildLine, readLines } from "../ipc/control.ts";
import { logger } from "../log.ts";
import { procStat } from "../sys/proc.ts";
import type { Clock, TimerHandle } from "../sys/clock.ts";
import { SupState } from "../ipc/shm.ts";
import { recordDeath, type Running } from "../link/slot_tickets.ts";

/** How a child's process ended, as {@link SupervisedChild.handle} reports it to the cycle. */
export interface ChildEnd {
  /** The `last_exit` code (an exit code, 1000 + a signal, or an `ExitReason`). */
  readonly code: number;
  /** Its kind (see `Event` in child_states.ts). */
  readonly event: Event;
  /** It ended because it was told to stop (the instance is stopping): not a failure of any kind. */
  readonly stopped: boolean;
}

/** One supervised child. */
export class SupervisedChild {
  readonly spec: ChildSpec;
  #state: State = "none";
  #process: Spawned | undefined;
  #control: ParentControl | undefined;
  readonly #heartbeat = new Heartbeat();
  #spawnedAt = 0;
  #quickFailures = 0;
  #retiring = false;
  #everSpawned = false;
  readonly #budget: RestartBudget;
  /** The one deadline of this child (its meaning depends on the state), and when it falls due. */
  #deadline: TimerHandle;
  #deadlineAt = 0;
  #deadlineToken = 0;
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
  /** Resolves once the current process has been reaped and its end handled. */
  #exited = Promise.withResolvers<void>();
  /** Why the current process was replaced (a new one serves in its place), or NONE. */
  #replacedBy: number = ExitReason.NONE;
  /** How long a replaced child may take to finish its work before it is stopped. */
  #finishGraceMs = 0;
  /** What the last process said it failed with (its `error` line), or why it was killed before ready. */
  #error = "";
  /** The configuration generation the current process was started with. */
  #generation = 0;
  #policy: RestartPolicy;
  #timing: Timing;
  readonly #clock: Clock;
  readonly #spawner: Spawner;
  readonly #isStopped: (pid: number) => boolean;
  readonly #post: (event: ChildEvent) => void;
  /** For a worker attached over TCP: whether its link to the dispatcher is up (it says so on its channel). */
  linked = false;

  constructor(spec: ChildSpec, timing: Timing, policy: RestartPolicy = DEFAULT_POLICY, deps: SupervisorDeps) {
    this.spec = spec;
    this.#timing = timing;
    this.#policy = policy;
    this.#clock = deps.clock;
    this.#spawner = deps.spawner ?? commandSpawner;
    this.#isStopped = deps.isStopped ?? ((pid) => procStat(pid)?.state === "T");
    this.#post = deps.post ?? ((event) => void this.handle(event));
    this.#budget = new RestartBudget(policy.budget, policy.budgetWindowMs);
    this.#exited.resolve();
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

  /** The configuration generation (`ChildSpec.generation`) its current or last process was started with. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * Why the last process could not serve, for people: the error it reported
   * before exiting (`error` on its control channel), else how it ended.
   */
  get failure(): string {
    return this.#error || exitReasonText(this.spec.slot.load("last_exit"));
  }

  /**
   * Handles one of this child's events (the cycle calls it in its fixed
   * order). Returns how the process ended when `event` was its exit.
   */
  handle(event: ChildEvent): ChildEnd | null {
    switch (event.kind) {
      case "line":
        if (event.proc === this.#process) this.#heard(event.line);
        return null;
      case "exit":
        return this.#reaped(event.proc, event.status);
      case "deadline":
        if (event.token === this.#deadlineToken) {
          this.#deadline = undefined;
          this.#deadlineToken++; // fired: a re-arm by resume() must not fire it again
          this.#fire("timer");
        }
        return null;
    }
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
    return true;
  }

  #act(action: Action): void {
    this.#disarm();
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
        return this.#arm(this.#finishGraceMs);
      case "restart_later":
        return this.#restartLater();
      case "restart_now":
        return this.#arm(0, true);
      case "retry_later":
        return this.#arm(this.#policy.failedRetryMs, true);
      case "none":
        return;
    }
  }

  /** Arms the one deadline; `publish`: it is the restart time, shown as `backoff_until`. */
  #arm(ms: number, publish = false): void {
    this.#disarm();
    this.#deadlineAt = this.#clock.now() + ms;
    if (publish) this.spec.slot.store("backoff_until", this.#deadlineAt);
    const token = ++this.#deadlineToken;
    this.#deadline = this.#clock.after(ms, () => this.#deliver({ kind: "deadline", child: this, token }));
  }

  #disarm(): void {
    this.#clock.cancel(this.#deadline);
    this.#deadline = undefined;
    this.#deadlineToken++;
  }

  /**
   * The watchdog did not run for `stalledMs` (it was stopped, or the machine
   * paused): that time is nobody's fault here. Pings in flight and the
   * deadline get it back, so that answers still unread in the pipe count.
   */
  resume(stalledMs: number): void {
    this.#heartbeat.resume(stalledMs);
    if (this.#deadline === undefined) return;
    const publish = this.spec.slot.load("backoff_until") === this.#deadlineAt;
    this.#arm(Math.max(0, this.#deadlineAt + stalledMs - this.#clock.now()), publish);
  }

  /** Hands an event to the cycle; an error in handling it is logged, never lost in a reader or a timer. */
  #deliver(event: ChildEvent): void {
    try {
      this.#post(event);
    } catch (err) {
      logger().error("{name}: handling its {kind} failed: {err}", {
        name: this.spec.name,
        kind: event.kind,
        err: String((err as Error)?.stack ?? err),
      });
    }
  }

  /** Spawns the child (from none, backoff or failed). */
  start(): void {
    this.#fire("spawn");
  }

  #spawn(): void {
    const { program, args, env } = this.spec.command();
    const slot = this.spec.slot;
    this.#error = "";
    let proc: Spawned;
    try {
      proc = this.#spawner(program, args, env);
    } catch (err) {
      this.#error = `cannot run ${program}: ${(err as Error).message}`;
      logger().error("{name}: {err}", { name: this.spec.name, err: this.#error });
      this.#fire("cannot_boot"); // from starting: failed, retried later
      return;
    }
    // A retirement or a replacement is planned, not a restart (nothing went wrong).
    if (this.#everSpawned && !plannedEnd(slot.load("last_exit"))) slot.add("restarts", 1);
    this.#everSpawned = true;
    this.#generation = this.spec.generation?.() ?? 0;
    this.#process = proc;
    this.#exited = Promise.withResolvers<void>();
    this.#control = new ParentControl(proc.stdin);
    if (this.spec.secret) {
      const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      void this.#control.send(`secret ${this.spec.secret.map(hex).join(",")}`);
    }
    this.#spawnedAt = this.#clock.now();
    this.#heartbeat.reset();
    this.#killReason = ExitReason.NONE;
    this.#killLimitMs = 0;
    this.#killCulprit = null;
    this.#retiring = false;
    this.#replacedBy = ExitReason.NONE;
    this.linked = false;
    slot.store("pid", proc.pid);
    slot.store("started_at", this.#spawnedAt);
    slot.store("heartbeat_at", this.#spawnedAt);
    slot.store("backoff_until", 0);
    this.#arm(this.#timing.bootTimeoutMs);
    // The exit is posted after the last control line (a "retiring" may be the last one).
    const lines = this.#readLines(proc);
    void Promise.all([proc.status, lines]).then(([status]) =>
      this.#deliver({ kind: "exit", child: this, proc, status })
    );
  }

  /** Posts each control line of `proc`. Only reading is guarded: the pipe closes with the process. */
  async #readLines(proc: Spawned): Promise<void> {
    const lines = readLines(proc.stdout);
    for (;;) {
      let next: IteratorResult<string>;
      try {
        next = await lines.next();
      } catch {
        return; // stdout closed under the read: the process is gone
      }
      if (next.done) return;
      this.#deliver({ kind: "line", child: this, proc, line: next.value });
    }
  }

  #heard(line: string): void {
    const msg = parseChildLine(line);
    switch (msg.kind) {
      case "pong":
        return this.#heartbeat.answered(msg.seq);
      case "retiring":
        this.#retiring = true;
        return;
      case "linked":
        this.linked = msg.up;
        return;
      case "error":
        this.#error = msg.text;
        return;
      case "ready":
        this.#heartbeat.answered(NaN);
        this.#fire("ready");
        return;
    }
  }

  #reaped(proc: Spawned, status: Deno.CommandStatus): ChildEnd {
    const slot = this.spec.slot;
    const code = this.#killReason !== ExitReason.NONE
      ? this.#killReason
      : this.#replacedBy !== ExitReason.NONE && status.success
      ? this.#replacedBy
      : this.#retiring && status.success
      ? ExitReason.RECYCLED
      : status.signal
      ? signalReason(status.signal)
      : status.code;
    // The death record comes first, the pid last: the dispatcher waits for the pid to change, then reads it.
    if (this.spec.isWorker) recordDeath(slot, proc.pid, this.#killCulprit, this.#killLimitMs);
    slot.store("last_exit", code);
    // The connections were the dead process's: its successor starts from none (it writes only on a change).
    slot.store("conns", 0);
    slot.store("pid", 0);
    if (this.#process === proc) this.#process = undefined;
    void this.#control?.close();
    this.#control = undefined;
    const ranMs = Math.round(this.#clock.now() - this.#spawnedAt);
    const log = logger();
    const event = this.#classify(code);
    const why = exitReasonText(code);
    const stopped = this.#state === "stopping";
    if (stopped) {
      log.info("{name} stopped ({why})", { name: this.spec.name, why });
    } else if (event === "exit_replaced") {
      log.info("{name} exited after {ms} ms ({why})", { name: this.spec.name, why, ms: ranMs });
    } else if (event === "cannot_boot") {
      // Whether it is tried again is the instance's call (it gives up if it never got ready): the watchdog says.
      log.error("{name} cannot boot: {why}", { name: this.spec.name, why: this.failure });
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
    this.#exited.resolve();
    return { code, event, stopped };
  }

  /** Which kind of end this was (see `Event` in child_states.ts). */
  #classify(code: number): Event {
    if (this.#replacedBy !== ExitReason.NONE) return "exit_replaced";
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
    this.#arm(delay, true);
  }

  /**
   * One heartbeat: ping, and kill when hung, past a request deadline, or its
   * pipes are wedged. (A child still starting is bounded by its boot deadline.)
   */
  tick(): void {
    if (this.#state !== "starting" && this.#state !== "ready" && this.#state !== "replaced") return;
    const now = this.#clock.now();
    // Only a ping that went out counts: a closed channel sends nothing, so nothing is owed.
    if (this.#control?.open) void this.#control.send(`ping ${this.#heartbeat.sent(now)}`);
    if (this.#state === "starting") return;
    const verdict = judge(
      {
        slot: this.spec.slot,
        isWorker: this.spec.isWorker,
        silentMs: this.#heartbeat.silentMs(now),
        provenAt: this.#heartbeat.provenAt,
      },
      this.#timing,
      now,
    );
    if (!verdict) return;
    logger().warn("{name} (pid {pid}) {why}", { name: this.spec.name, pid: this.pid, why: verdict.why });
    this.#killReason = verdict.reason;
    this.#killLimitMs = verdict.limitMs;
    this.#killCulprit = verdict.culprit;
    this.#fire(verdict.event);
  }

  #kill(): void {
    const proc = this.#process;
    if (!proc) return;
    if (this.#state === "hung" && this.#killReason === ExitReason.NONE) {
      // Killed at its boot deadline: say why, as its failure.
      this.#error ||= `not ready within ${this.#timing.bootTimeoutMs} ms`;
    }
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
   * A new process serves in this child's place: it is told to drain (finish
   * what it holds, take nothing new, exit 0) and is never restarted. It stays
   * supervised meanwhile (heartbeats, request deadlines); if it is still
   * there after `graceMs`, it is stopped. `reason` becomes its `last_exit`
   * when it exits cleanly. Resolves once it is reaped (at once when no
   * process runs: the child is simply stopped).
   */
  async replaced(reason: number, graceMs: number): Promise<void> {
    const exited = this.#exited.promise;
    this.#finishGraceMs = graceMs;
    this.#stopGraceMs = this.#policy.killGraceMs;
    if (this.#process) this.#replacedBy = reason;
    this.#fire("replace");
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
    await this.#exited.promise;
  }

  /** Kills at once and waits for the reap (used when the watchdog itself must give up). */
  async abort(): Promise<void> {
    this.#fire("abort");
    await this.#exited.promise;
  }
}
