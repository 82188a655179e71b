/**
 * What one incarnation of an instance owns, made in order and released in
 * reverse on every path (a `DisposableStack`): the instance record, the
 * shared-memory segment, the FIFO pairs, the notes file, and the operations
 * side's view of the segment. A segment removed under the instance (systemd-
 * logind `RemoveIPC`) is noticed here, and then never unlinked again: its name
 * may already be someone else's.
 * @module
 */
import { type InstancePaths, limitFlags, localSlots, poolFlags, type WatchdogConfig } from "../cli/config.ts";
import { chatFlags } from "../chat/chat_config.ts";
import { httpShown } from "../http/http_config.ts";
import { SysError } from "../errors.ts";
import { ensureFifo, removeFifo } from "../ipc/fifo.ts";
import { Segment, ShmError } from "../ipc/shm.ts";
import { logger } from "../log.ts";
import type { Operations } from "../ops/operations.ts";
import { E } from "../sys/libc.ts";
import { netScope } from "../sys/spawn.ts";
import { Notes, selfStartTime, writeRecord } from "./run_dir.ts";

/** The resources of one incarnation. */
export class Incarnation implements Disposable {
  readonly segment: Segment;
  readonly instanceId: number;
  readonly notes: Notes;
  readonly #paths: InstancePaths;
  readonly #stack = new DisposableStack();
  /** The segment's name vanished (or holds another segment now): it is not ours to unlink any more. */
  vanished = false;

  private constructor(parts: { segment: Segment; instanceId: number; notes: Notes; paths: InstancePaths }) {
    this.segment = parts.segment;
    this.instanceId = parts.instanceId;
    this.notes = parts.notes;
    this.#paths = parts.paths;
  }

  /** Writes the record, creates the segment and the FIFOs, and shows the segment to `ops`. */
  static open(cfg: WatchdogConfig, paths: InstancePaths, ops: Operations): Incarnation {
    using stack = new DisposableStack();
    const instanceId = crypto.getRandomValues(new Uint32Array(1))[0]!;
    const slotCount = localSlots(cfg.workers);
    // A joined host's workers talk to their dispatcher over TCP: no FIFOs there.
    const fifos = cfg.join
      ? []
      : Array.from({ length: slotCount }, (_, i) => [paths.dwtube(i + 1), paths.wdtube(i + 1)]).flat();
    const join = cfg.join ? netScope(cfg.join.host, cfg.join.port) : undefined;
    const chat = cfg.chat.ircPort > 0 ? chatFlags(cfg.chat, true) : undefined;
    const http = cfg.http.port > 0 ? httpShown(cfg) : undefined;
    // Trusted PROXY-protocol senders change whom every limit counts: shown with the limits when there are any.
    const proxies = cfg.proxyFrom.toString();
    const limits = { ...limitFlags(cfg), ...poolFlags(cfg), ...(proxies ? { "proxy-from": proxies } : {}) };
    writeRecord(paths, {
      pid: Deno.pid,
      start_time: selfStartTime(),
      instance_id: instanceId,
      shm: paths.shm,
      fifos,
      host: cfg.host,
      port: cfg.port,
      workers: cfg.workers,
      created: new Date().toISOString(),
      limits,
      link_port: cfg.linkPort || undefined,
      join,
      ...(chat ? { chat } : {}),
      ...(http ? { http } : {}),
    });
    stack.defer(() => removeQuietly(paths.record));
    const notes = stack.use(new Notes(paths));
    const remoteSlots = cfg.linkPort ? cfg.remoteSlots : 0;
    const segment = Segment.create(
      paths.shm,
      slotCount + 1 + remoteSlots,
      instanceId,
      cfg.port,
      cfg.workerConcurrency,
    );
    const inc = new Incarnation({ segment, instanceId, notes, paths });
    stack.defer(() => {
      segment.close();
      if (!inc.vanished) Segment.unlink(paths.shm);
    });
    ops.attach(segment, {
      runDir: cfg.runDir,
      shm: paths.shm,
      limits,
      host: cfg.host,
      workers: cfg.workers,
      linkPort: cfg.linkPort || undefined,
      join,
      chat,
      http,
      notes: () => notes.current,
    });
    stack.defer(() => ops.detach());
    for (const f of fifos) {
      ensureFifo(f);
      stack.defer(() => void removeFifo(f));
    }
    inc.#stack.use(stack.move()); // from here on, the incarnation releases it all
    return inc;
  }

  /**
   * True when the segment is gone (ENOENT) or its name now holds another
   * segment (and then marks it vanished). Any other error (out of
   * descriptors, say) says nothing about the segment: it is logged, and the
   * next heartbeat looks again.
   */
  segmentGone(): boolean {
    if (this.vanished) return true;
    const name = this.#paths.shm;
    try {
      Segment.open(name, this.instanceId).close();
      return false;
    } catch (err) {
      const gone = err instanceof ShmError &&
        (!(err.cause instanceof SysError) || err.cause.errno === E.ENOENT);
      if (gone) return this.vanished = true;
      logger().warn("cannot check shared memory {name}: {err}; checking again next heartbeat", {
        name,
        err: String(err),
      });
      return false;
    }
  }

  /** Releases everything, in reverse order of creation. */
  [Symbol.dispose](): void {
    this.#stack.dispose();
  }
}

function removeQuietly(path: string): void {
  try {
    Deno.removeSync(path);
  } catch { /* already gone */ }
}
