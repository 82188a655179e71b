/**
 * The dispatcher's door for remote workers: listens on `--link-port`,
 * authenticates each worker that connects (`link_auth.ts`), and gives it a
 * remote slot of the dispatcher's segment and a {@link TcpWorkerLink} (the same
 * one again when that worker comes back).
 *
 * Strangers get a clear refusal and a counted, rate-limited log line, never
 * more: the handshake door holds a bounded number of attempts per address and
 * in all, the newest taking the oldest's place (`link_door.ts`); refusals are
 * counted by kind, a fixed set, whatever a peer sends.
 *
 * A remote worker is who the link proves: a peer holding the secret, at the
 * address it connects from. It must claim to serve clients on that very
 * address (its `--host`), so its slot's key `host:port` cannot name another
 * host's worker. A slot whose worker left (or whose link was lost) is given
 * to a new worker when no slot was ever free, longest unused first, so the
 * table never fills with workers that are gone.
 * @module
 */
import { logger } from "../log.ts";
import { addrKey, hostOf } from "../net/admission.ts";
import { formatIp, parseIp, unmapped } from "../net/ip_addr.ts";
import { listenOrFail, Server } from "../net/server.ts";
import type { SlotView } from "../ipc/shm.ts";
import type { Clock } from "../sys/clock.ts";
import {
  acceptWorker,
  LinkRefusal,
  REFUSAL_KINDS,
  type RefusalKind,
  type WorkerIdentity,
} from "./link_auth.ts";
import { DOOR_LIMITS, type DoorLimits, LinkDoor } from "./link_door.ts";
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
  /** Handshakes in progress at once, in all and per address (default {@link DOOR_LIMITS}). */
  readonly door?: DoorLimits;
  /** Time a peer has to finish the handshake. */
  readonly handshakeMs?: number;
}

/** Counters of refused link attempts, by kind (for status and tests); always the same keys. */
export type Refusals = Record<RefusalKind, number>;

/**
 * True when two hosts name the same machine as the link compares them: any
 * loopback name or address is loopback, an IPv4-mapped IPv6 address is its
 * IPv4 one, IP addresses compare in their canonical text, names lower-cased.
 */
export function sameHost(a: string, b: string): boolean {
  return canonicalHost(a) === canonicalHost(b);
}

function canonicalHost(host: string): string {
  if (host.toLowerCase() === "localhost") return "loopback";
  const parsed = parseIp(host);
  if (!parsed) return host.toLowerCase();
  const ip = unmapped(parsed);
  if (ip.length === 4 ? ip[0] === 127 : ip.every((b, i) => b === (i === 15 ? 1 : 0))) return "loopback";
  return formatIp(ip);
}

/** Accepts remote workers. */
export class LinkServer {
  readonly #opts: LinkServerOptions;
  readonly #clock: Clock;
  readonly #server: Server;
  readonly #door: LinkDoor;
  readonly #links = new Map<string, TcpWorkerLink>();
  /** Links given to a worker whose handshake is finishing: not free for another, though not attached yet. */
  readonly #admitted = new Set<TcpWorkerLink>();
  readonly refusals = Object.fromEntries(REFUSAL_KINDS.map((k) => [k, 0])) as Refusals;
  readonly #lastLog = Object.fromEntries(REFUSAL_KINDS.map((k) => [k, -Infinity])) as Record<
    RefusalKind,
    number
  >;
  /** Called once for each new remote slot taken (its link is then added to the pool). */
  onNewLink: (link: TcpWorkerLink) => void = () => {};

  constructor(opts: LinkServerOptions, clock: Clock) {
    this.#opts = opts;
    this.#clock = clock;
    this.#door = new LinkDoor(opts.door ?? DOOR_LIMITS);
    this.#server = new Server(listenOrFail(opts.host, opts.port, "dispatcher link port"), 1024);
  }

  /** Starts accepting worker links. */
  start(): void {
    this.#server.serve((conn) => this.#attach(conn));
  }

  async #attach(conn: Deno.TcpConn): Promise<void> {
    const ch = new LinkChannel(conn);
    const peer = ch.peer;
    const from = hostOf(peer);
    let evicted = false;
    const leave = this.#door.enter(addrKey(from), () => {
      evicted = true;
      void ch.refuse("too many link attempts at once (a newer one took this place); retry");
    });
    let link: TcpWorkerLink | undefined;
    let who: WorkerIdentity;
    try {
      who = await acceptWorker(ch, this.#opts.secrets, this.#opts.handshakeMs ?? 5_000, (w) => {
        link = this.#admit(w, from);
      });
    } catch (err) {
      const kind = evicted ? "door full" : err instanceof LinkRefusal ? err.kind : "handshake";
      return this.#refused(peer, kind, evicted ? "too many link attempts at once" : (err as Error).message);
    } finally {
      leave();
      if (link) this.#admitted.delete(link);
    }
    logger().info("remote worker {key} (pid {pid}, its watchdog {wd}) attached from {peer} as slot {id}", {
      key: link!.key,
      pid: who.pid,
      wd: who.watchdogPid,
      peer,
      id: link!.id,
    });
    link!.attach(ch, who);
  }

  /** The link `who`, connecting from `from`, gets; throws a {@link LinkRefusal} when none. */
  #admit(who: WorkerIdentity, from: string): TcpWorkerLink {
    if (!sameHost(who.host, from)) {
      throw new LinkRefusal(
        "identity",
        `claims to serve on ${who.host}:${who.port} but connects from ${from}; ` +
          "a worker joins from the address it serves on (--host)",
      );
    }
    const key = `${canonicalHost(who.host)}:${who.port}`;
    const link = this.#links.get(key) ?? this.#newSlot(key, who);
    this.#admitted.add(link);
    return link;
  }

  /** A slot for a worker not seen before: one never used, else one whose worker is gone. */
  #newSlot(key: string, who: WorkerIdentity): TcpWorkerLink {
    const taken = new Set([...this.#links.values()].map((l) => l.id));
    const slot = this.#opts.slots.find((s) => !taken.has(s.index));
    if (slot) {
      const link = new TcpWorkerLink(slot, key, who, this.#clock, this.#opts.timing);
      this.#links.set(key, link);
      this.onNewLink(link);
      return link;
    }
    // Every slot was taken once: give the new worker the slot of one that is gone (left first, then the
    // longest lost), so the table never fills with workers that will not come back.
    const gone = [...this.#links.values()].filter((l) => !l.attached && !this.#admitted.has(l));
    const ghost = gone.sort((x, y) => Number(y.left) - Number(x.left) || x.detachedAt - y.detachedAt)[0];
    if (!ghost) {
      throw new LinkRefusal(
        "no room",
        `no room for more remote workers (${this.#opts.slots.length} remote slots, all attached)`,
      );
    }
    logger().info("remote slot {id} of {old} (gone) goes to {key}", { id: ghost.id, old: ghost.key, key });
    this.#links.delete(ghost.key);
    ghost.rebind(key, who);
    this.#links.set(key, ghost);
    return ghost;
  }

  #refused(peer: string, kind: RefusalKind, why: string): void {
    const n = ++this.refusals[kind];
    // One line per kind per second: a flood of bad peers cannot flood the log.
    const now = this.#clock.now();
    if (this.#lastLog[kind] > now - 1_000) return;
    this.#lastLog[kind] = now;
    logger().warn("link attempt from {peer} refused: {why} ({n} refused as {kind} so far)", {
      peer,
      why,
      n,
      kind,
    });
  }

  /** Stops accepting and closes every link. */
  close(): void {
    this.#server.close();
    for (const l of this.#links.values()) l.close();
  }
}
