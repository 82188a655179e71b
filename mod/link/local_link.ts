/**
 * The local dispatcher↔worker link: the assignment lives in the worker's shm
 * slot, and a FIFO pair carries one-byte doorbells (`dwtube<i>` dispatcher →
 * worker, `wdtube<i>` worker → dispatcher).
 *
 * Shared memory is the truth; doorbells only wake the peer. The slot's `work`
 * field moves by compare-and-swap (idle → assigned by the dispatcher,
 * assigned → busy by the worker on a valid ticket, busy → idle by the worker,
 * assigned → idle by the dispatcher when a ticket expires), so a restarted
 * dispatcher rebuilds its view from the segment alone, and a ticket can be
 * used once even when both sides race.
 * @module
 */
import type { InstancePaths } from "../cli/config.ts";
import { FIFO_RETRY_MS, FifoReader, FifoWriter } from "../ipc/fifo.ts";
import { logger } from "../log.ts";
import { Doorbell } from "../net/protocol.ts";
import { type Segment, type SlotView, WorkState } from "../ipc/shm.ts";
import type {
  ClaimRefusal,
  DispatcherLink,
  DispatcherLinkEvents,
  Ticket,
  WorkerLink,
  WorkerLinkEvents,
} from "./worker_link.ts";

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Constant-time comparison, so a guessed ticket learns nothing from timing. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Keeps a FIFO write end connected: retries while the reader is missing. */
class Bell {
  readonly writer: FifoWriter;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  readonly #onConnect: () => void;

  constructor(path: string, onConnect: () => void) {
    this.writer = new FifoWriter(path);
    this.#onConnect = onConnect;
  }

  connect(): void {
    if (this.#closed || this.#timer !== undefined) return;
    const attempt = () => {
      this.#timer = undefined;
      if (this.#closed) return;
      if (this.writer.tryConnect()) this.#onConnect();
      else this.#timer = setTimeout(attempt, FIFO_RETRY_MS);
    };
    attempt();
  }

  ring(byte: number): boolean {
    if (this.writer.send(byte)) return true;
    this.connect(); // reader gone: reconnect when it comes back
    return false;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.writer.close();
  }
}

/** Dispatcher side of the local link to worker `id`. */
export class LocalWorkerLink implements WorkerLink {
  readonly id: number;
  readonly host: string;
  readonly #slot: SlotView;
  readonly #reader: FifoReader;
  readonly #bell: Bell;
  #events: WorkerLinkEvents | undefined;
  #draining = false;
  #wedged = false;

  constructor(segment: Segment, paths: InstancePaths, id: number, host: string) {
    this.id = id;
    this.host = host;
    this.#slot = segment.slot(id);
    this.#reader = new FifoReader(paths.wdtube(id));
    this.#bell = new Bell(paths.dwtube(id), () => this.#maybeReady());
  }

  get port(): number {
    return this.#slot.load("port");
  }

  start(events: WorkerLinkEvents): void {
    this.#events = events;
    this.#reader.run({
      onConnect: () => this.#maybeReady(),
      onClose: () => {
        this.#wedged = false; // that worker is gone; its successor gets a fresh start
        this.#slot.store("link_wedged_ms", 0);
        this.#bell.writer.close();
        this.#bell.connect();
        events.onClosed(this.id);
      },
      onByte: (b) => {
        if (b === Doorbell.ACK) events.onAck(this.id);
        else if (b === Doorbell.DONE) events.onDone(this.id);
        else if (b === Doorbell.PROBE) events.onProbe(this.id);
      },
    }).catch((err) => {
      // A broken pipe file is fatal for this link only; the dispatcher keeps the others.
      logger().error("link to worker {id} failed: {err}", { id: this.id, err: String(err) });
      events.onClosed(this.id);
    });
    this.#bell.connect();
  }

  #maybeReady(): void {
    if (this.available()) this.#events?.onReady(this.id);
  }

  available(): boolean {
    return !this.#draining && !this.#wedged && this.#reader.connected && this.#bell.writer.connected &&
      this.#slot.load("pid") > 0 && this.#slot.load("work") === WorkState.IDLE;
  }

  assign(t: Ticket): boolean {
    if (!this.available() || !this.#slot.cas("work", WorkState.IDLE, WorkState.ASSIGNED)) return false;
    this.#slot.bytes("ticket").set(hexToBytes(t.ticket));
    this.#slot.setText("request_type", t.type);
    this.#slot.setText("client_addr", t.clientAddr);
    this.#slot.store("ticket_expires_ms", t.expiresMs);
    this.#slot.add("assign_seq", 1);
    // The ticket is in shm before the bell rings: the worker can validate a
    // client that arrives before the doorbell is read.
    if (!this.#bell.ring(Doorbell.ASSIGN)) {
      this.reclaim();
      return false;
    }
    return true;
  }

  reclaim(): boolean {
    if (!this.#slot.cas("work", WorkState.ASSIGNED, WorkState.IDLE)) return false;
    this.#slot.bytes("ticket").fill(0);
    return true;
  }

  probe(): boolean {
    return this.#bell.ring(Doorbell.PROBE);
  }

  setDraining(on: boolean): void {
    this.#draining = on;
  }

  markWedged(): void {
    this.#wedged = true;
    this.#slot.store("link_wedged_ms", Date.now());
  }

  close(): void {
    this.#reader.stop();
    this.#bell.close();
  }
}

/** Worker side of the local link. */
export class LocalDispatcherLink implements DispatcherLink {
  readonly #slot: SlotView;
  readonly #reader: FifoReader;
  readonly #bell: Bell;

  constructor(segment: Segment, paths: InstancePaths, id: number) {
    this.#slot = segment.slot(id);
    this.#reader = new FifoReader(paths.dwtube(id));
    this.#bell = new Bell(paths.wdtube(id), () => {});
  }

  start(events: DispatcherLinkEvents): void {
    this.#reader.run({
      onConnect: () => {
        // A new dispatcher opened its ends. Our write end may still be open from
        // its predecessor, so it has not heard our hello: say it again, and
        // that we are free when we are.
        if (this.#bell.ring(Doorbell.HELLO) && this.#slot.load("work") === WorkState.IDLE) {
          this.#bell.ring(Doorbell.DONE);
        }
        events.onConnected();
      },
      onClose: () => events.onDisconnected(),
      onByte: (b) => {
        if (b === Doorbell.ASSIGN) {
          this.#bell.ring(Doorbell.ACK);
          events.onAssigned();
        } else if (b === Doorbell.PROBE) this.#bell.ring(Doorbell.PROBE);
      },
    }).catch((err) => {
      logger().error("link to the dispatcher failed: {err}", { err: String(err) });
      events.onDisconnected();
    });
    this.#bell.connect();
  }

  ready(): void {
    // A previous incarnation may have died mid-request: start clean.
    this.#slot.bytes("ticket").fill(0);
    this.#slot.store("request_started_ms", 0);
    this.#slot.store("work", WorkState.IDLE);
    this.#bell.ring(Doorbell.DONE);
  }

  claim(ticket: string, type: string): ClaimRefusal | null {
    if (this.#slot.load("work") !== WorkState.ASSIGNED) return "no-ticket";
    if (!sameBytes(this.#slot.bytes("ticket"), hexToBytes(ticket))) return "mismatch";
    if (Date.now() > this.#slot.load("ticket_expires_ms")) return "expired";
    if (this.#slot.text("request_type") !== type) return "wrong-type";
    if (!this.#slot.cas("work", WorkState.ASSIGNED, WorkState.BUSY)) return "no-ticket";
    this.#slot.bytes("ticket").fill(0); // one use
    this.#slot.store("request_started_ms", Date.now());
    return null;
  }

  done(retire = false): void {
    this.#slot.store("request_started_ms", 0);
    this.#slot.add("served", 1);
    // One compare-and-swap: a retiring worker is never seen idle, so no ticket can slip in.
    this.#slot.cas("work", WorkState.BUSY, retire ? WorkState.DRAINING : WorkState.IDLE);
    if (!retire) this.#bell.ring(Doorbell.DONE);
  }

  close(): void {
    this.#reader.stop();
    this.#bell.close();
  }
}
