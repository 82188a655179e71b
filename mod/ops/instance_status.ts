/**
 * What each process of an instance is doing, read from its shared-memory
 * segment: the rows `osps status` prints, the watchdog's metrics and status
 * page read, and the table for people. Reading needs only the mapping, so it
 * works while the dispatcher is down.
 * @module
 */
import { LinkState, type Segment, type SlotView, stateName, SupState } from "../ipc/shm.ts";
import { workSummary } from "../link/ticket_reports.ts";
import { exitReasonText } from "../supervise/exit_reason.ts";
import type { NotesRecord } from "../supervise/run_dir.ts";
import { localSlots } from "../cli/config.ts";
import { decodeQuarantine } from "../dispatch/quarantine.ts";

/** One row of the status. */
export interface ChildStatus {
  /** Its slot in this instance's segment (the metrics' `worker` label). */
  id: number;
  /**
   * How people call it: `dispatcher`, `worker <slot>` for a local worker, and
   * a remote worker by its address, `worker <host>:<port>`, the same on its own
   * host's status and on the dispatcher's.
   */
  name: string;
  role: string;
  pid: number;
  port: number;
  state: string;
  /** What it does: idle, assigned, busy, draining, offline; with several tickets per worker "busy 3/8". */
  work: string;
  /** Requests it runs now, and how many tickets it may hold at once (--worker-concurrency). */
  busy: number;
  capacity: number;
  restarts: number;
  served: number;
  heartbeat_age_ms: number | null;
  uptime_ms: number | null;
  request: string | null;
  request_age_ms: number | null;
  backoff_ms: number;
  last_exit: string;
  /** The dispatcher's probe through this worker's FIFO pair went unanswered (it routes nothing to it). */
  wedged: boolean;
  /** Client connections the child holds. */
  conns: number;
  /** A worker `assigned` past its ticket's expiry (never expected; the watchdog logs it too), ms late. */
  ticket_overdue_ms: number | null;
  /** Address clients reach it at. */
  host: string;
  /** How the dispatcher reaches it: "local" (FIFOs and shm), or a TCP link's state: attached, lost, connecting. */
  link: string;
  /** The pid of the watchdog that supervises it (a remote worker's own watchdog on its host). */
  watchdog_pid: number;
  /** Resident memory of its process, bytes (local children; null when none runs or it is remote). */
  rss_bytes: number | null;
  /** A worker in the spare slot (replacing another: a reload, or one over --max-worker-rss-mb). */
  spare: boolean;
}

/** Reloads and graceful replacements since the instance started. */
export interface ReloadStatus {
  /** Reloads asked for (SIGHUP, osps reload; asks during a reload are served by one more). */
  asked: number;
  /** Reloads that succeeded: every worker replaced. */
  done: number;
  /** Reloads that failed: the configuration did not load, or a new worker did not serve (the old ones serve on). */
  failed: number;
  /** Since the last reload finished, ms (null: none yet). */
  last_ms_ago: number | null;
  /** The last reload's result in one line (null: none yet). */
  last: { ok: boolean; text: string } | null;
  /** Workers replaced for going over --max-worker-rss-mb. */
  replaced_rss: number;
  /** Why --max-worker-rss-mb is not applied (below what a fresh worker holds), or null. */
  rss_limit_refused: string | null;
}

/** A request type refused for now (quarantine). */
export interface QuarantineStatus {
  type: string;
  refused_for_ms: number;
  kills: number;
}

/** The whole status object (`--json`). */
export interface InstanceStatus {
  watchdog: {
    pid: number;
    run_dir: string;
    shm: string;
    state: string;
    ready_for_ms: number | null;
    /** The dispatcher's port for remote workers, when it has one. */
    link_port?: number;
    /** On a joined host: the dispatcher link address this host's workers attach to. */
    joined?: string;
  };
  /** Limit flags in force (from instance.json), e.g. `"max-conns": 1024`, `"proxy-from": "127.0.0.2/32"`. */
  limits: Readonly<Record<string, number | string>>;
  /** Chat settings and limits in force (from instance.json), when chat is on. */
  chat: Readonly<Record<string, string | number | boolean>> | null;
  /** HTTP API settings in force (from instance.json), when it is on. */
  http?: Readonly<Record<string, string | number>> | null;
  dispatcher: ChildStatus;
  workers: ChildStatus[];
  /** Clients waiting for a worker. */
  queue_depth: number;
  /** Request types the dispatcher refuses for now because they kept killing workers. */
  quarantine: QuarantineStatus[];
  reloads: ReloadStatus;
}

/** What a row takes from the instance itself (its host, its watchdog). */
interface Local {
  readonly host: string;
  readonly watchdogPid: number;
}

function row(slot: SlotView, role: string, now: number, local: Local, remote = false): ChildStatus {
  const pid = slot.load("pid");
  const hb = slot.load("heartbeat_at");
  const started = slot.load("started_at");
  const work = workSummary(slot, now);
  const req = work.oldest;
  const ms = (v: number) => Math.round(v);
  const host = slot.text("host") || local.host;
  return {
    id: slot.index,
    name: role === "dispatcher"
      ? "dispatcher"
      : remote
      ? `worker ${host}:${slot.load("port")}`
      : `worker ${slot.index}`,
    role,
    pid,
    port: slot.load("port"),
    state: stateName(SupState, slot.load("sup_state")),
    work: role === "dispatcher" ? "-" : work.text,
    busy: role === "dispatcher" ? 0 : work.busy,
    capacity: role === "dispatcher" ? 0 : work.capacity,
    restarts: slot.load("restarts"),
    served: slot.load("served"),
    heartbeat_age_ms: pid && hb ? ms(now - hb) : null,
    uptime_ms: pid && started ? ms(now - started) : null,
    request: req ? req.request : null,
    request_age_ms: req ? ms(now - req.startedAt) : null,
    backoff_ms: ms(Math.max(0, slot.load("backoff_until") - now)),
    last_exit: exitReasonText(slot.load("last_exit")),
    wedged: pid > 0 && slot.load("link_wedged_at") > started,
    conns: slot.load("conns"),
    ticket_overdue_ms: role !== "dispatcher" && work.overdueMs > 0 ? ms(work.overdueMs) : null,
    host,
    link: stateName(LinkState, slot.load("link_state")),
    watchdog_pid: slot.load("remote_watchdog_pid") || local.watchdogPid,
    rss_bytes: pid > 0 && slot.load("rss_kb") > 0 ? slot.load("rss_kb") * 1024 : null,
    spare: slot.load("spare") === 1,
  };
}

/** Where an instance lives (from its run dir and `instance.json`). */
export interface InstanceWhere {
  readonly runDir: string;
  readonly shm: string;
  readonly limits?: Readonly<Record<string, number | string>>;
  /** The instance's `--host` (local workers listen there). */
  readonly host?: string;
  /** Local workers (slots 1..workers, and the spare after them); then remote workers' slots (with a link port). */
  readonly workers?: number;
  readonly linkPort?: number;
  /** On a joined host: the dispatcher link address. */
  readonly join?: string;
  /** Chat settings in force (no secrets), when chat is on. */
  readonly chat?: Readonly<Record<string, string | number | boolean>>;
  /** The watchdog's notes (`watchdog.json`: the last reload's result, a refused memory limit). */
  readonly notes?: () => NotesRecord;
  /** HTTP API settings in force, when it is on. */
  readonly http?: Readonly<Record<string, string | number>>;
}

/** The status of the instance mapped in `seg`, at monotonic time `now`. */
export function segmentStatus(seg: Segment, where: InstanceWhere, now: number): InstanceStatus {
  const readyAt = seg.header("ready_at");
  const local = { host: where.host ?? "", watchdogPid: seg.header("watchdog_pid") };
  const count = where.workers !== undefined ? localSlots(where.workers) : seg.slotCount - 1;
  const workers: ChildStatus[] = [];
  for (let i = 1; i <= count; i++) {
    const slot = seg.slot(i);
    // The spare slot is shown only while a worker runs there (a new worker starting, or one replaced finishing).
    if (slot.load("spare") === 0 || slot.load("pid") > 0) workers.push(row(slot, "worker", now, local));
  }
  // Remote workers of this dispatcher, in the slots after the local ones: those attached or lost (not left).
  for (let i = count + 1; i < seg.slotCount; i++) {
    const slot = seg.slot(i);
    const link = slot.load("link_state");
    if (link !== LinkState.LOCAL && link !== LinkState.LEFT) {
      workers.push(row(slot, "worker", now, local, true));
    }
  }
  const dispatcher = row(seg.slot(0), "dispatcher", now, local);
  const notes = where.notes?.() ?? {};
  return {
    watchdog: {
      pid: seg.header("watchdog_pid"),
      run_dir: where.runDir,
      shm: where.shm,
      state: seg.header("state") === 2 ? "stopping" : readyAt ? "running" : "starting",
      ready_for_ms: readyAt ? Math.round(now - readyAt) : null,
      ...(where.linkPort ? { link_port: where.linkPort } : {}),
      ...(where.join ? { joined: where.join } : {}),
    },
    limits: where.limits ?? {},
    chat: where.chat ?? null,
    http: where.http ?? null,
    dispatcher: where.join
      ? { ...dispatcher, host: where.join, state: "remote", link: "remote" }
      : dispatcher,
    workers,
    queue_depth: seg.slot(0).load("queue_depth"),
    quarantine: decodeQuarantine(seg.headerText("quarantine"))
      .filter((q) => q.until > now)
      .map((q) => ({ type: q.type, refused_for_ms: Math.round(q.until - now), kills: q.kills })),
    reloads: {
      asked: seg.header("reloads_asked"),
      done: seg.header("reloads_done"),
      failed: seg.header("reloads_failed"),
      last_ms_ago: seg.header("reloaded_at") ? Math.round(now - seg.header("reloaded_at")) : null,
      last: notes.last_reload ? { ok: notes.last_reload.ok, text: notes.last_reload.text } : null,
      replaced_rss: seg.header("replaced_rss"),
      rss_limit_refused: notes.memory_limit?.reason ?? null,
    },
  };
}

/** Formats the status as a table for people. */
export function statusTable(s: InstanceStatus): string {
  const ms = (v: number | null) => (v === null ? "-" : v < 10_000 ? `${v}ms` : `${Math.round(v / 1000)}s`);
  const head = [
    "ROLE",
    "PID",
    "HOST",
    "PORT",
    "LINK",
    "STATE",
    "WORK",
    "RESTARTS",
    "SERVED",
    "HEARTBEAT",
    "UPTIME",
    "CONNS",
    "RSS",
    "REQUEST",
    "LAST EXIT",
    "WATCHDOG",
  ];
  const rows = [s.dispatcher, ...s.workers].map((c) => [
    `${c.name}${c.spare ? " (spare)" : ""}`,
    String(c.pid || "-"),
    c.host,
    String(c.port),
    c.link,
    (c.state === "failed" ? "failing" : c.state) +
    (c.backoff_ms > 0 ? ` (retry in ${ms(c.backoff_ms)})` : ""),
    c.work + (c.wedged ? " (wedged)" : "") +
    (c.ticket_overdue_ms !== null ? ` (ticket ${ms(c.ticket_overdue_ms)} overdue)` : ""),
    String(c.restarts),
    String(c.served),
    ms(c.heartbeat_age_ms),
    ms(c.uptime_ms),
    String(c.conns),
    c.rss_bytes === null ? "-" : `${Math.round(c.rss_bytes / 1048576)}M`,
    c.request ? `${c.request} ${ms(c.request_age_ms)}` : "-",
    c.last_exit,
    String(c.watchdog_pid || "-"),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [
    `watchdog pid ${s.watchdog.pid} (${s.watchdog.state}), run dir ${s.watchdog.run_dir}, shm ${s.watchdog.shm}` +
    (s.watchdog.joined ? `, joined to the dispatcher at ${s.watchdog.joined}` : "") +
    (s.watchdog.link_port ? `, remote workers on port ${s.watchdog.link_port}` : ""),
    fmt(head),
    ...rows.map(fmt),
    `queue: ${s.queue_depth} waiting`,
    ...reloadLines(s.reloads, ms),
    ...s.quarantine.map((q) =>
      `quarantine: ${q.type} refused for ${ms(q.refused_for_ms)} more (it cost ${q.kills} workers)`
    ),
    `limits: ${Object.entries(s.limits).map(([k, v]) => `${k}=${v}`).join(" ") || "-"}`,
    ...(s.chat ? [`chat: ${Object.entries(s.chat).map(([k, v]) => `${k}=${v}`).join(" ")}`] : []),
    ...(s.http ? [`http: ${Object.entries(s.http).map(([k, v]) => `${k}=${v}`).join(" ")}`] : []),
  ].join("\n");
}

/** The reload and replacement lines of the table (none before the first). */
function reloadLines(r: ReloadStatus, ms: (v: number | null) => string): string[] {
  const out: string[] = [];
  if (r.asked > 0) {
    out.push(
      `reloads: ${r.done} done, ${r.failed} failed` +
        (r.last && r.last_ms_ago !== null ? `; last ${ms(r.last_ms_ago)} ago: ${r.last.text}` : ""),
    );
  }
  if (r.replaced_rss > 0) out.push(`replaced over --max-worker-rss-mb: ${r.replaced_rss} workers`);
  if (r.rss_limit_refused) out.push(`memory limit refused: ${r.rss_limit_refused}`);
  return out;
}
