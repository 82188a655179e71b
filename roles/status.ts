/**
 * `osps status`: what each process of an instance is doing, read straight from
 * the shared-memory table (so it works while the dispatcher is down).
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { OspsError } from "../mod/errors.ts";
import { isLocked, readRecord } from "../mod/supervise/run_dir.ts";
import { Segment, type SlotView, stateName, SupState, WorkState } from "../mod/ipc/shm.ts";
import { exitReasonText } from "../mod/supervise/child_states.ts";

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
}

/** The whole status object (`--json`). */
export interface InstanceStatus {
  watchdog: { pid: number; run_dir: string; shm: string; state: string };
  /** Limit flags in force (from instance.json), e.g. `"max-conns": 1024`. */
  limits: Readonly<Record<string, number>>;
  dispatcher: ChildStatus;
  workers: ChildStatus[];
}

function row(slot: SlotView, role: string, now: number): ChildStatus {
  const pid = slot.load("pid");
  const hb = slot.load("heartbeat_ms");
  const started = slot.load("started_ms");
  const req = slot.load("request_started_ms");
  return {
    id: slot.index,
    role,
    pid,
    port: slot.load("port"),
    state: stateName(SupState, slot.load("sup_state")),
    work: role === "dispatcher" ? "-" : stateName(WorkState, slot.load("work")),
    restarts: slot.load("restarts"),
    served: slot.load("served"),
    heartbeat_age_ms: pid && hb ? now - hb : null,
    uptime_ms: pid && started ? now - started : null,
    request: req > 0 ? slot.text("request_type") : null,
    request_age_ms: req > 0 ? now - req : null,
    backoff_ms: Math.max(0, slot.load("backoff_until_ms") - now),
    last_exit: exitReasonText(slot.load("last_exit")),
    wedged: pid > 0 && slot.load("link_wedged_ms") > started,
  };
}

/** Reads the status of the instance in `runDir`. */
export function readStatus(runDir: string): InstanceStatus {
  const paths = instancePaths(runDir);
  const rec = readRecord(paths);
  if (!rec || !isLocked(paths)) throw new NotRunning(`no osps instance is running in "${runDir}"`);
  const seg = Segment.open(rec.shm, rec.instance_id);
  try {
    const now = Date.now();
    return {
      watchdog: {
        pid: seg.header("watchdog_pid"),
        run_dir: runDir,
        shm: rec.shm,
        state: seg.header("state") === 2 ? "stopping" : "running",
      },
      limits: rec.limits ?? {},
      dispatcher: row(seg.slot(0), "dispatcher", now),
      workers: Array.from({ length: seg.slotCount - 1 }, (_, i) => row(seg.slot(i + 1), "worker", now)),
    };
  } finally {
    seg.close();
  }
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
    "REQUEST",
    "LAST EXIT",
  ];
  const rows = [s.dispatcher, ...s.workers].map((c) => [
    c.role === "dispatcher" ? "dispatcher" : `worker ${c.id}`,
    String(c.pid || "-"),
    String(c.port),
    c.state + (c.backoff_ms > 0 ? ` (${ms(c.backoff_ms)})` : ""),
    c.work + (c.wedged ? " (wedged)" : ""),
    String(c.restarts),
    String(c.served),
    ms(c.heartbeat_age_ms),
    ms(c.uptime_ms),
    c.request ? `${c.request} ${ms(c.request_age_ms)}` : "-",
    c.last_exit,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [
    `watchdog pid ${s.watchdog.pid} (${s.watchdog.state}), run dir ${s.watchdog.run_dir}, shm ${s.watchdog.shm}`,
    fmt(head),
    ...rows.map(fmt),
    `limits: ${Object.entries(s.limits).map(([k, v]) => `${k}=${v}`).join(" ") || "-"}`,
  ].join("\n");
}
