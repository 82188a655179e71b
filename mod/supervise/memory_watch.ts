/**
 * Resident memory of the children, published in their slots every
 * heartbeat, and the graceful replacement of a worker that grew over
 * `--max-worker-rss-mb`.
 * @module
 */
import type { Segment } from "../ipc/shm.ts";
import { logger } from "../log.ts";
import { procUsage } from "../sys/proc.ts";
import { ExitReason } from "./exit_reason.ts";
import type { SupervisedChild } from "./supervisor.ts";
import type { WorkerSlots } from "./worker_slots.ts";

/**
 * Publishes each running child's resident memory in its slot, and replaces
 * (the graceful way) an enlisted worker that has grown over
 * `--max-worker-rss-mb`: it finishes its requests, it is never killed for it.
 */
export function watchMemory(
  children: SupervisedChild[],
  slots: WorkerSlots,
  limitMb: number,
  segment: Segment,
): void {
  const rss = new Map<SupervisedChild, number>();
  for (const c of children) {
    const bytes = c.pid > 0 ? procUsage(c.pid)?.residentBytes ?? 0 : 0;
    rss.set(c, bytes);
    c.spec.slot.store("rss_kb", Math.round(bytes / 1024));
  }
  if (limitMb <= 0) return;
  for (const w of slots.enlisted) {
    const mb = rss.get(w)! / 1024 / 1024;
    if (w.state !== "ready" || mb <= limitMb || slots.pending(w)) continue;
    logger().warn(
      "{name} (pid {pid}) is resident {mb} MiB, over --max-worker-rss-mb {limit}: " +
        "replacing it (it finishes its requests first)",
      {
        name: w.spec.name,
        pid: w.pid,
        mb: Math.round(mb),
        limit: limitMb,
      },
    );
    void slots.replace(w, ExitReason.REPLACED_RSS).then((how) => {
      if (how !== "skipped") segment.setHeader("replaced_rss", segment.header("replaced_rss") + 1);
    });
  }
}
