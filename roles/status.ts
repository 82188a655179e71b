/**
 * `osps status`: what each process of an instance is doing, read straight from
 * the shared-memory table (so it works while the dispatcher is down).
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { OspsError } from "../mod/errors.ts";
import { isLocked, readRecord } from "../mod/supervise/run_dir.ts";
import { Segment, type SlotView, stateName, SupState, WorkState, workState } from "../mod/ipc/shm.ts";
import { exitReasonText } from "../mod/supervise/exit_reason.ts";
import { decodeQuarantine } from "../mod/dispatch/quarantine.ts";
import { systemClock } from "../mod/sys/clock.ts";

/** No live instance at that run dir. */
export class NotRunning extends OspsError {}

/** One row of the status. */
export interface ChildStatus {
  id: number;
  role: string;
  pid: number;
  port: number;
  state: string;
  work: string;
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
}

/** A request type refused for now (quarantine). */
export interface QuarantineStatus {
  type: string;
  refused_for_ms: number;
  kills: number;
}

/** The whole status object (`--json`). */
export interface InstanceStatus {
  watchdog: { pid: number; run_dir: string; shm: string; state: string; ready_for_ms: number | null };
  /** Limit flags in force (from instance.json), e.g. `"max-conns": 1024`. */
  limits: Readonly<Record<string, number>>;
  /** Chat settings and limits in force (from instance.json), when chat is on. */
  chat: Readonly<Record<string, string | number | boolean>> | null;
  dispatcher: ChildStatus;
  workers: ChildStatus[];
  /** Clients waiting for a worker. */
  queue_depth: number;
  /** Request types the dispatcher refuses for now because they kept killing workers. */
  quarantine: QuarantineStatus[];
}

function row(slot: SlotView, role: string, now: number): ChildStatus {
  const pid = slot.load("pid");
  const hb = slot.load("heartbeat_at");
  const started = slot.load("started_at");
  const req = slot.load("request_started_at");
  const work = workState(slot.load("work"));
  const late = now - slot.load("ticket_expires_at");
  const ms = (v: number) => Math.round(v);
  return {
    id: slot.index,
    role,
    pid,
    port: slot.load("port"),
    state: stateName(SupState, slot.load("sup_state")),
    work: role === "dispatcher" ? "-" : stateName(WorkState, work),
    restarts: slot.load("restarts"),
    served: slot.load("served"),
    heartbeat_age_ms: pid && hb ? ms(now - hb) : null,
    uptime_ms: pid && started ? ms(now - started) : null,
    request: req > 0 ? requestText(slot) : null,
    request_age_ms: req > 0 ? ms(now - req) : null,
    backoff_ms: ms(Math.max(0, slot.load("backoff_until") - now)),
    last_exit: exitReasonText(slot.load("last_exit")),
    wedged: pid > 0 && slot.load("link_wedged_at") > started,
    conns: slot.load("conns"),
    ticket_overdue_ms: role !== "dispatcher" && work === WorkState.ASSIGNED && late > 0 ? ms(late) : null,
  };
}

function requestText(slot: SlotView): string {
  const arg = slot.text("request_arg");
  return arg ? `${slot.text("request_type")} ${arg}` : slot.text("request_type");
}

/** Reads the status of the instance in `runDir`. */
export function readStatus(runDir: string): InstanceStatus {
  const paths = instancePaths(runDir);
  const rec = readRecord(paths);
  if (!rec || !isLocked(paths)) throw new NotRunning(`no osps instance is running in "${runDir}"`);
  using seg = Segment.open(rec.shm, rec.instance_id);
  const now = systemClock.now();
  const readyAt = seg.header("ready_at");
  return {
    watchdog: {
      pid: seg.header("watchdog_pid"),
      run_dir: runDir,
      shm: rec.shm,
      state: seg.header("state") === 2 ? "stopping" : readyAt ? "running" : "starting",
      ready_for_ms: readyAt ? Math.round(now - readyAt) : null,
    },
    limits: rec.limits ?? {},
    chat: rec.chat ?? null,
    dispatcher: row(seg.slot(0), "dispatcher", now),
    workers: Array.from({ length: seg.slotCount - 1 }, (_, i) => row(seg.slot(i + 1), "worker", now)),
    queue_depth: seg.slot(0).load("queue_depth"),
    quarantine: decodeQuarantine(seg.headerText("quarantine"))
      .filter((q) => q.until > now)
      .map((q) => ({ type: q.type, refused_for_ms: Math.round(q.until - now), kills: q.kills })),
  };
}

/** Formats the status as a table for people. */
export function statusTable(s: InstanceStatus): string {
  const ms = (v: number | null) => (v === null ? "-" : v < 10_000 ? `${v}ms` : `${Math.round(v / 1000)}s`);
  const head = [
    "ROLE",
    "PID",
    "PORT",
    "STATE",
    "WORK",
    "RESTARTS",
    "SERVED",
    "HEARTBEAT",
    "UPTIME",
    "CONNS",
    "REQUEST",
    "LAST EXIT",
  ];
  const rows = [s.dispatcher, ...s.workers].map((c) => [
    c.role === "dispatcher" ? "dispatcher" : `worker ${c.id}`,
    String(c.pid || "-"),
    String(c.port),
    (c.state === "failed" ? "failing" : c.state) +
    (c.backoff_ms > 0 ? ` (retry in ${ms(c.backoff_ms)})` : ""),
    c.work + (c.wedged ? " (wedged)" : "") +
    (c.ticket_overdue_ms !== null ? ` (ticket ${ms(c.ticket_overdue_ms)} overdue)` : ""),
    String(c.restarts),
    String(c.served),
    ms(c.heartbeat_age_ms),
    ms(c.uptime_ms),
    String(c.conns),
    c.request ? `${c.request} ${ms(c.request_age_ms)}` : "-",
    c.last_exit,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [
    `watchdog pid ${s.watchdog.pid} (${s.watchdog.state}), run dir ${s.watchdog.run_dir}, shm ${s.watchdog.shm}`,
    fmt(head),
    ...rows.map(fmt),
    `queue: ${s.queue_depth} waiting`,
    ...s.quarantine.map((q) =>
      `quarantine: ${q.type} refused for ${ms(q.refused_for_ms)} more (it cost ${q.kills} workers)`
    ),
    `limits: ${Object.entries(s.limits).map(([k, v]) => `${k}=${v}`).join(" ") || "-"}`,
    ...(s.chat ? [`chat: ${Object.entries(s.chat).map(([k, v]) => `${k}=${v}`).join(" ")}`] : []),
  ].join("\n");
}
