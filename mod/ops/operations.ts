/**
 * Everything the watchdog does for the people and programs that operate it,
 * behind a few calls from its loop: the HTTP endpoint (`--metrics-port`),
 * systemd's notify socket (`READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`),
 * the log file (`--log-file`, reopened on SIGUSR2), restart counts by reason
 * and the traffic history of the status page.
 *
 * It outlives incarnations of the instance (a segment removed by
 * `RemoveIPC` is rebuilt under the same watchdog): each one is attached while
 * it runs, and between two the endpoint answers "not ready".
 * @module
 */
import type { WatchdogConfig } from "../cli/config.ts";
import type { Segment } from "../ipc/shm.ts";
import { sumCounts } from "../ipc/stats.ts";
import { logger } from "../log.ts";
import type { Spawner } from "../supervise/child_spec.ts";
import type { Clock } from "../sys/clock.ts";
import { TrafficHistory } from "./history.ts";
import { type InstanceStatus, type InstanceWhere, segmentStatus } from "./instance_status.ts";
import { LogFile, relayingSpawner } from "./log_file.ts";
import { renderMetrics, RestartCounts } from "./metrics.ts";
import { OpsServer } from "./ops_server.ts";
import { type Readiness, readiness } from "./readiness.ts";
import { SdNotifier } from "./sd_notify.ts";
import { renderStatusPage } from "./status_page.ts";

/** Seconds of traffic the status page plots. */
const SPAN_SECONDS = 300;

/** The instance as read at one moment. */
interface Snapshot {
  readonly status: InstanceStatus | null;
  readonly counts: ReturnType<typeof sumCounts> | null;
  readonly readiness: Readiness;
}

/** The watchdog's operations side. Create with {@link Operations.start}; dispose when the watchdog ends. */
export class Operations implements AsyncDisposable {
  readonly #cfg: WatchdogConfig;
  readonly #clock: Clock;
  readonly #notifier: SdNotifier | null;
  #server: OpsServer | null = null;
  #logFile: LogFile | null = null;
  readonly #restarts = new RestartCounts();
  readonly #history = new TrafficHistory({ spanMs: SPAN_SECONDS * 1000 });
  #instance: { segment: Segment; where: InstanceWhere } | null = null;
  #announced = false;
  /** How often {@link tick} has work: systemd's keepalive, the traffic history, `STATUS=`. */
  readonly #everyMs: number;
  #nextTick = 0;

  private constructor(cfg: WatchdogConfig, clock: Clock) {
    this.#cfg = cfg;
    this.#clock = clock;
    this.#notifier = SdNotifier.fromEnv();
    this.#everyMs = Math.min(1_000, cfg.heartbeatMs, this.#notifier?.keepaliveMs ?? Infinity);
  }

  /** Opens the log file, the notify socket and the HTTP endpoint that `cfg` asks for. */
  static async start(cfg: WatchdogConfig, clock: Clock): Promise<Operations> {
    const ops = new Operations(cfg, clock);
    try {
      if (cfg.logFile) ops.#logFile = await LogFile.open(cfg.logFile);
      if (cfg.metricsPort > 0) {
        ops.#server = OpsServer.listen(cfg.metricsHost, cfg.metricsPort, {
          metrics: () => ops.metrics(),
          readiness: () => ops.#snapshot().readiness,
          page: () => ops.page(),
          statusJson: () => ops.#publicStatus(),
        });
        const a = ops.#server.addr;
        logger().info("status page and metrics on http://{host}:{port}/ (/metrics, /healthz, /readyz)", {
          host: a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname,
          port: a.port,
        });
      }
    } catch (err) {
      await ops[Symbol.asyncDispose]();
      throw err;
    }
    return ops;
  }

  /** How children are spawned: with their stderr relayed into the log file when there is one. */
  get spawner(): Spawner | undefined {
    return this.#logFile ? relayingSpawner : undefined;
  }

  /** The incarnation now running (its segment stays mapped until {@link detach}). */
  attach(segment: Segment, where: InstanceWhere): void {
    this.#instance = { segment, where };
    this.#history.clear();
  }

  /** The incarnation is ending: stop reading its segment. */
  detach(): void {
    this.#instance = null;
    this.#history.clear();
  }

  /** A child's process ended with `last_exit` code `code` while it was supervised (not stopping). */
  childExited(slot: number, code: number): void {
    this.#restarts.record(slot, code);
  }

  /** The instance is ready: `READY=1` to systemd. */
  ready(text: string): void {
    this.#announced = true;
    this.#notifier?.ready(text);
  }

  /** A reload begins (`RELOADING=1`); call {@link ready} when it is done. */
  reloading(text = "reloading"): void {
    this.#notifier?.reloading(text);
  }

  /** The watchdog is stopping: `STOPPING=1`. */
  stopping(reason: string): void {
    this.#announced = false;
    this.#notifier?.stopping(`stopping: ${reason}`);
  }

  /** SIGUSR2: reopens the log file (logrotate has renamed it). */
  async reopenLogs(): Promise<void> {
    await this.#logFile?.reopen();
  }

  /** One scrape of `/metrics`. */
  metrics(): string {
    const s = this.#snapshot();
    return renderMetrics({ ...s, restarts: this.#restarts });
  }

  /** The status page. */
  page(): string {
    const s = this.#snapshot();
    return renderStatusPage({
      title: `osps ${this.#cfg.host}:${this.#cfg.port}`,
      status: s.status,
      counts: s.counts,
      readiness: s.readiness,
      traffic: this.#history.points(this.#clock.now()),
      spanSeconds: SPAN_SECONDS,
      refreshSeconds: 2,
    });
  }

  #snapshot(): Snapshot {
    const inst = this.#instance;
    let status: InstanceStatus | null = null, counts = null;
    if (inst) {
      try {
        status = segmentStatus(inst.segment, inst.where, this.#clock.now());
        counts = sumCounts(
          Array.from({ length: inst.segment.slotCount }, (_, i) => inst.segment.stats(i).read()),
        );
      } catch { /* the segment closed under us: between incarnations */ }
    }
    return { status, counts, readiness: readiness(status, this.#cfg.heartbeatMs) };
  }

  /** What `osps status --json` shows, without what clients sent (request arguments); null between incarnations. */
  #publicStatus(): InstanceStatus | null {
    const s = this.#snapshot().status;
    if (!s) return null;
    const strip = (c: InstanceStatus["dispatcher"]) => ({ ...c, request: c.request?.split(" ")[0] ?? null });
    return { ...s, dispatcher: strip(s.dispatcher), workers: s.workers.map(strip) };
  }

  /**
   * Called from the watchdog's cycle on every turn (so that `WATCHDOG=1`
   * proves the loop that supervises runs): when due, systemd's keepalive,
   * a sample of the traffic history, and `STATUS=` when readiness changed.
   */
  tick(now: number): void {
    if (now < this.#nextTick) return;
    this.#nextTick = now + this.#everyMs;
    this.#notifier?.keepalive(now);
    const s = this.#snapshot();
    if (s.counts) this.#history.record(now, s.counts);
    if (this.#announced) this.#notifier?.status(s.readiness.reason);
  }

  /** When {@link tick} next has work (the cycle wakes by then). */
  nextTickAt(now: number): number {
    return Math.max(now, this.#nextTick);
  }

  /** Stops the endpoint, closes the notify socket and the log file. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.#server?.[Symbol.asyncDispose]();
    this.#notifier?.[Symbol.dispose]();
    await this.#logFile?.[Symbol.asyncDispose]();
  }
}
