/**
 * `GET /metrics`: the instance in Prometheus text format, from shared memory
 * (so it answers while the dispatcher is down) and from what the watchdog
 * itself saw (restarts by reason). Names start with `osps_`, use base units
 * (seconds, bytes) and counters end in `_total`; the watchdog's own process
 * metrics use the conventional `process_` names.
 * @module
 */
import { DURATION_BUCKETS, STAT_CODES, STAT_TYPES, type StatsCounts, TICKET_OUTCOMES } from "../ipc/stats.ts";
import { SupState } from "../ipc/shm.ts";
import { exitReasonLabel } from "../supervise/exit_reason.ts";
import { fileLimit, listDir } from "../sys/libc.ts";
import { procUsage } from "../sys/proc.ts";
import type { ChildStatus, InstanceStatus } from "./instance_status.ts";
import { type Labels, PromWriter, type Sample } from "./prom_text.ts";
import type { Readiness } from "./readiness.ts";

/** Replacements of each child by reason, as the watchdog saw its processes end (not while stopping). */
export class RestartCounts {
  /** `slot\treason` → count. */
  readonly #counts = new Map<string, number>();

  /** Counts the end of slot `slot`'s process with `last_exit` code `code`. */
  record(slot: number, code: number): void {
    const key = `${slot}\t${exitReasonLabel(code)}`;
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  /** Every (slot, reason, count), slots ascending. */
  entries(): { slot: number; reason: string; count: number }[] {
    return [...this.#counts].map(([k, count]) => {
      const [slot, reason] = k.split("\t");
      return { slot: Number(slot), reason: reason!, count };
    }).sort((a, b) => a.slot - b.slot || a.reason.localeCompare(b.reason));
  }
}

/** What one scrape renders. */
export interface MetricsInput {
  /** The instance's status, or null while no segment is mapped. */
  readonly status: InstanceStatus | null;
  /** Counters summed over every stats block, or null while no segment is mapped. */
  readonly counts: StatsCounts | null;
  readonly restarts: RestartCounts;
  readonly readiness: Readiness;
}

function childLabels(c: ChildStatus): Labels {
  return c.role === "dispatcher" ? { role: "dispatcher" } : { role: "worker", worker: c.id };
}

function requestSamples(counts: StatsCounts): Sample[] {
  const out: Sample[] = [];
  STAT_TYPES.forEach((type, r) =>
    STAT_CODES.forEach((code, c) => {
      const value = counts.requests[r]![c]!;
      if (value > 0) out.push({ labels: { type, code }, value });
    })
  );
  return out;
}

function instanceFamilies(w: PromWriter, s: InstanceStatus, counts: StatsCounts): void {
  const children = [s.dispatcher, ...s.workers];
  w.counter("osps_requests_total", "Requests answered by workers, by request type and status code.", [
    ...requestSamples(counts),
  ]);
  w.histogram(
    "osps_request_duration_seconds",
    "Time from a valid ticket to the answer written, by request type.",
    STAT_TYPES.map((type, r) => ({
      labels: { type },
      bounds: DURATION_BUCKETS,
      counts: counts.buckets[r]!,
      sum: counts.durationSum[r]!,
    })).filter((h, r) => STAT_TYPES[r] !== "other" || h.counts.some((n) => n > 0)),
  );
  w.counter(
    "osps_refusals_total",
    "Connections and lines refused before any service ran (limits, queue full, bad tickets), by code.",
    STAT_CODES.map((code, c) => ({ labels: { code }, value: counts.refusals[c]! })).filter((x) =>
      x.value > 0
    ),
  );
  w.counter(
    "osps_tickets_total",
    "Tickets by outcome: issued, used, expired unused, returned by a client that left, lost with a worker.",
    TICKET_OUTCOMES.map((outcome, i) => ({ labels: { outcome }, value: counts.tickets[i]! })),
  );
  const states = Object.keys(SupState).filter((k) => k !== "NONE").map((k) => k.toLowerCase());
  w.gauge(
    "osps_workers",
    "Workers by supervision state.",
    states.map((state) => ({
      labels: { state },
      value: s.workers.filter((x) => !x.spare && x.state === state).length,
    })),
  );
  w.counter(
    "osps_reloads_total",
    "Reloads finished (SIGHUP, osps reload), by result: done (every worker replaced), failed (the " +
      "configuration did not load, or a new worker did not serve: the old ones serve on).",
    [
      { labels: { result: "done" }, value: s.reloads.done },
      { labels: { result: "failed" }, value: s.reloads.failed },
    ],
  );
  if (s.reloads.last) {
    w.gauge("osps_reload_last_success", "1 when the last reload succeeded, 0 when it failed.", [
      { value: s.reloads.last.ok ? 1 : 0 },
    ]);
  }
  w.gauge("osps_queue_depth", "Clients waiting in the dispatcher's queue for a free worker.", [
    { value: s.queue_depth },
  ]);
  w.gauge(
    "osps_heartbeat_age_seconds",
    "Time since each running child last answered a heartbeat from its main loop.",
    children.filter((c) => c.heartbeat_age_ms !== null).map((c) => ({
      labels: childLabels(c),
      value: c.heartbeat_age_ms! / 1000,
    })),
  );
  w.gauge(
    "osps_connections",
    "Client connections each child holds open.",
    children.map((c) => ({ labels: childLabels(c), value: c.conns })),
  );
  const usage = children.filter((c) => c.pid > 0).map((c) => ({ c, u: procUsage(c.pid) }))
    .filter((x) => x.u !== null);
  w.gauge(
    "osps_process_resident_memory_bytes",
    "Resident memory of each child process.",
    usage.map(({ c, u }) => ({ labels: childLabels(c), value: u!.residentBytes })),
  );
  w.counter(
    "osps_process_cpu_seconds_total",
    "CPU time (user + system) of each child's current process.",
    usage.map(({ c, u }) => ({ labels: childLabels(c), value: u!.cpuSeconds })),
  );
}

function processFamilies(w: PromWriter): void {
  const self = procUsage("self");
  const mem = Deno.memoryUsage();
  if (self) {
    w.counter("process_cpu_seconds_total", "CPU time (user + system) of the watchdog.", [
      { value: self.cpuSeconds },
    ]);
    w.gauge("process_start_time_seconds", "Start of the watchdog, seconds since the epoch.", [
      { value: self.startSeconds },
    ]);
    w.gauge("process_virtual_memory_bytes", "Virtual memory of the watchdog.", [{
      value: self.virtualBytes,
    }]);
  }
  w.gauge("process_resident_memory_bytes", "Resident memory of the watchdog.", [{ value: mem.rss }]);
  w.gauge("process_heap_bytes", "JavaScript heap in use by the watchdog.", [{ value: mem.heapUsed }]);
  w.gauge("process_open_fds", "Open file descriptors of the watchdog.", [
    { value: listDir("/proc/self/fd")?.length ?? 0 },
  ]);
  w.gauge("process_max_fds", "Open file descriptor limit of the watchdog.", [{ value: fileLimit().soft }]);
}

/** Renders one scrape. */
export function renderMetrics(m: MetricsInput): string {
  const w = new PromWriter();
  w.gauge("osps_ready", "1 while the dispatcher and at least one worker can serve (as GET /readyz).", [
    { value: m.readiness.ready ? 1 : 0 },
  ]);
  const restarts = m.restarts.entries();
  w.counter(
    "osps_worker_restarts_total",
    "Worker processes replaced, by worker and reason (exit, signal, hang, request_hang, deadline, " +
      "wedged, recycled, cannot_boot, reload, rss).",
    restarts.filter((r) => r.slot > 0).map((r) => ({
      labels: { worker: r.slot, reason: r.reason },
      value: r.count,
    })),
  );
  w.counter(
    "osps_dispatcher_restarts_total",
    "Dispatcher processes replaced, by reason.",
    restarts.filter((r) => r.slot === 0).map((r) => ({ labels: { reason: r.reason }, value: r.count })),
  );
  if (m.status && m.counts) instanceFamilies(w, m.status, m.counts);
  processFamilies(w);
  return w.text();
}
