/**
 * The dispatcher's door for remote workers: listens on `--link-port`,
 * authenticates each worker that connects (`link_auth.ts`), and gives it a
 * remote slot of the dispatcher's segment and a {@link TcpWorkerLink} (the same
 * one again when that worker, `host:port`, comes back). Bad peers get a clear
 * refusal and a log line, never more: at most a few unauthenticated attempts
 * are handled at once, each with a time limit.
 * @module
 */
import { logger } from "../log.ts";
import { listenOrFail, Server } from "../net/server.ts";
import type { SlotView } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import { acceptWorker } from "./link_auth.ts";
import { LinkChannel } from "./link_wire.ts";
import { type LinkTiming, TcpWorkerLink } from "./tcp_link.ts";

/** Settings of the link server. */
export interface LinkServerOptions {
  readonly host: string;
  readonly port: number;
  /** The current secret, and the previous one during a rotation. */
  readonly secrets: readonly Uint8Array[];
  readonly timing: LinkTiming;
  /** The remote slots of the segment, one per remote worker. */
  readonly slots: readonly SlotView[];
  /** Unauthenticated attempts handled at once; the rest are refused at once. */
  readonly maxPending?: number;
  /** Time a peer has to finish the handshake. */
  readonly handshakeMs?: number;
}

/** Counters of refused link attempts, by reason (for status and tests). */
export type Refusals = Record<string, number>;

/** Accepts remote workers. */
export class LinkServer {
  readonly #opts: LinkServerOptions;
  readonly #clock: Clock;
  readonly #server: Server;
  readonly #links = new Map<string, TcpWorkerLink>();
  #pending = 0;
  readonly refusals: Refusals = {};
  #lastLog = new Map<string, number>();
  /** Called once for each new remote worker (its link is then added to the pool). */
  onNewLink: (link: TcpWorkerLink) => void = () => {};

  constructor(opts: LinkServerOptions, clock: Clock) {
    this.#opts = opts;
    this.#clock = clock;
    this.#server = new Server(listenOrFail(opts.host, opts.port, "dispatcher link port"), 1024);
  }

  /** Starts accepting worker links. */
  start(): void {
    this.#server.serve((conn) => this.#attach(conn));
  }

  async #attach(conn: Deno.TcpConn): Promise<void> {
    const ch = new LinkChannel(conn);
    const peer = ch.peer;
    if (this.#pending >= (this.#opts.maxPending ?? 16)) {
      this.#refused(peer, "too many link attempts at once");
      return await ch.refuse("too many link attempts at once; retry");
    }
    this.#pending++;
    let who;
    try {
      who = await acceptWorker(ch, this.#opts.secrets, this.#opts.handshakeMs ?? 5_000);
    } catch (err) {
      return this.#refused(peer, err instanceof Error ? err.message : String(err));
    } finally {
      this.#pending--;
    }
    const key = `${who.host}:${who.port}`;
    let link = this.#links.get(key);
    if (!link) {
      const taken = new Set([...this.#links.values()].map((l) => l.id));
      const slot = this.#opts.slots.find((s) => !taken.has(s.index));
      if (!slot) {
        this.#refused(peer, "no remote slot free");
        return await ch.refuse(`no room for more remote workers (${this.#opts.slots.length} remote slots)`);
      }
      link = new TcpWorkerLink(slot, who, this.#clock, this.#opts.timing);
      this.#links.set(key, link);
      this.onNewLink(link);
    }
    logger().info("remote worker {key} (pid {pid}, its watchdog {wd}) attached from {peer} as slot {id}", {
      key,
      pid: who.pid,
      wd: who.watchdogPid,
      peer,
      id: link.id,
    });
    link.attach(ch, who);
  }

  #refused(peer: string, why: string): void {
    this.refusals[why] = (this.refusals[why] ?? 0) + 1;
    // One line per reason per second: a flood of bad peers cannot flood the log.
    const now = this.#clock.now();
    if ((this.#lastLog.get(why) ?? -Infinity) > now - 1_000) return;
    this.#lastLog.set(why, now);
    logger().warn("link attempt from {peer} refused: {why} ({n} so far)", {
      peer,
      why,
      n: this.refusals[why],
    });
  }

  /** Stops accepting and closes every link. */
  close(): void {
    this.#server.close();
    for (const l of this.#links.values()) l.close();
  }
}
