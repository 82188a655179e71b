/**
 * The handshake of the TCP worker link: both sides prove they hold the
 * instance's secret, without sending it, over fresh nonces from each side,
 * and derive a key for this session alone (see `link_wire.ts`).
 *
 * 1. dispatcher → worker `HELLO {v, nonce_d}`
 * 2. worker → dispatcher `AUTH {v, nonce_w, who, mac_w}`,
 *    mac_w = HMAC(secret, "osps-link/2 worker proof" ‖ nonce_d ‖ nonce_w ‖ who)
 * 3. dispatcher → worker `WELCOME {mac_d}` (or `REFUSED {reason}`),
 *    mac_d = HMAC(secret, "osps-link/2 dispatcher proof" ‖ nonce_w ‖ nonce_d)
 * 4. both: key = HMAC(secret, "osps-link/2 session" ‖ nonce_d ‖ nonce_w); every frame after is authenticated.
 *
 * An old transcript replayed to the dispatcher fails at step 2 (its nonce_d is
 * new); replayed to a worker, at step 3 (its nonce_w is new). A peer without
 * the secret learns nothing it can use: nonces and MACs only.
 * @module
 */
import {
  Frame,
  hmac,
  jsonPayload,
  LINK_VERSION,
  LinkChannel,
  LinkError,
  parseJson,
  sameMac,
} from "./link_wire.ts";

/**
 * Why the dispatcher refused a link: a fixed set, so that what it counts stays
 * the same size whatever peers send (the text of a refusal goes to the peer
 * and, escaped, to the log, never into a table).
 */
export type RefusalKind =
  | "door full"
  | "handshake"
  | "version"
  | "authentication"
  | "identity"
  | "no room";

/** Every {@link RefusalKind}, in the order status and logs show them. */
export const REFUSAL_KINDS: readonly RefusalKind[] = [
  "door full",
  "handshake",
  "version",
  "authentication",
  "identity",
  "no room",
];

/** A link refused by the dispatcher, with the kind of refusal. */
export class LinkRefusal extends LinkError {
  readonly kind: RefusalKind;
  constructor(kind: RefusalKind, message: string, options?: ErrorOptions) {
    super(message, 0, options);
    this.kind = kind;
  }
}

/** What a worker tells the dispatcher about itself when it attaches. */
export interface WorkerIdentity {
  /** Address clients reach it at. */
  readonly host: string;
  readonly port: number;
  /** Its worker number on its host. */
  readonly id: number;
  readonly pid: number;
  /** Its own watchdog's pid (shown by the dispatcher host's status). */
  readonly watchdogPid: number;
  /** Requests it has served (its slot's counter). */
  readonly served: number;
  /** Its work state now: idle, draining, busy or assigned. */
  readonly state: string;
  /** Tickets it may hold at once (its --worker-concurrency); absent: 1. */
  readonly capacity?: number;
  /** Requests it runs or tickets it holds now, issued by a dispatcher before this link. */
  readonly live?: number;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
function unhex(s: unknown, bytes: number, what: string): Uint8Array {
  if (typeof s !== "string" || !new RegExp(`^[0-9a-f]{${bytes * 2}}$`).test(s)) {
    throw new LinkError(`bad ${what}`);
  }
  return Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));
}
const nonce = () => crypto.getRandomValues(new Uint8Array(32));

function checkIdentity(text: unknown): WorkerIdentity {
  let w: Record<string, unknown>;
  try {
    w = JSON.parse(String(text));
  } catch {
    throw new LinkRefusal("identity", "bad worker identity");
  }
  const int = (v: unknown) => Number.isInteger(v) && (v as number) >= 0;
  if (
    typeof w.host !== "string" || w.host.length === 0 || w.host.length > 64 ||
    !/^[0-9A-Za-z.:_-]+$/.test(w.host) ||
    !int(w.port) || (w.port as number) > 65535 || !int(w.id) || !int(w.pid) || !int(w.watchdogPid) ||
    !int(w.served) || typeof w.state !== "string" ||
    (w.capacity !== undefined && !(int(w.capacity) && (w.capacity as number) >= 1)) ||
    (w.live !== undefined && !int(w.live))
  ) throw new LinkRefusal("identity", "bad worker identity");
  return w as unknown as WorkerIdentity;
}

/**
 * Dispatcher side. Returns the worker's identity once it proved itself and
 * `admit` let it in (`admit` throws a {@link LinkRefusal} to refuse it: the
 * refusal then comes in the handshake, before any session exists); on any
 * failure sends REFUSED with the reason, closes, and throws a {@link LinkRefusal}.
 */
export async function acceptWorker(
  ch: LinkChannel,
  secrets: readonly Uint8Array[],
  timeoutMs: number,
  admit: (who: WorkerIdentity) => void = () => {},
): Promise<WorkerIdentity> {
  const nonceD = nonce();
  try {
    ch.send(Frame.HELLO, jsonPayload({ v: LINK_VERSION, nonce: hex(nonceD) }));
    const auth = await ch.read(timeoutMs);
    if (!auth) throw new LinkError("closed during the handshake");
    if (auth.type !== Frame.AUTH) throw new LinkError("expected AUTH");
    const a = parseJson(auth);
    if (a.v !== LINK_VERSION) {
      throw new LinkRefusal("version", `speaks ${String(a.v).slice(0, 20)}, this dispatcher ${LINK_VERSION}`);
    }
    const nonceW = unhex(a.nonce, 32, "nonce");
    const macW = unhex(a.mac, 32, "proof");
    const who = String(a.who ?? "");
    // The current secret, or during a rotation the previous one (see secret.ts).
    const secret = secrets.find((s) =>
      sameMac(macW, hmac(s, "osps-link/2 worker proof", nonceD, nonceW, who))
    );
    if (!secret) {
      throw new LinkRefusal(
        "authentication",
        "authentication failed (wrong secret, or a replayed handshake)",
      );
    }
    const identity = checkIdentity(who);
    admit(identity);
    ch.send(
      Frame.WELCOME,
      jsonPayload({ mac: hex(hmac(secret, "osps-link/2 dispatcher proof", nonceW, nonceD)) }),
    );
    ch.key(hmac(secret, "osps-link/2 session", nonceD, nonceW), "dispatcher");
    return identity;
  } catch (err) {
    const refusal = err instanceof LinkRefusal
      ? err
      : new LinkRefusal("handshake", err instanceof LinkError ? err.message : "handshake failed", {
        cause: err,
      });
    await ch.refuse(refusal.message);
    throw refusal;
  }
}

/**
 * Worker side: answers the dispatcher's HELLO, checks its proof, and keys
 * the session. Throws {@link LinkError} (with the dispatcher's reason when it
 * refused) and closes on any failure.
 */
export async function joinDispatcher(
  ch: LinkChannel,
  secret: Uint8Array,
  who: WorkerIdentity,
  timeoutMs: number,
): Promise<void> {
  try {
    const hello = await ch.read(timeoutMs);
    if (!hello) throw new LinkError("the dispatcher closed the link during the handshake");
    if (hello.type !== Frame.HELLO) throw new LinkError("expected HELLO");
    const h = parseJson(hello);
    if (h.v !== LINK_VERSION) {
      throw new LinkError(`the dispatcher speaks ${String(h.v).slice(0, 20)}, this worker ${LINK_VERSION}`);
    }
    const nonceD = unhex(h.nonce, 32, "nonce");
    const nonceW = nonce();
    const whoText = JSON.stringify(who);
    const mac = hmac(secret, "osps-link/2 worker proof", nonceD, nonceW, whoText);
    ch.send(Frame.AUTH, jsonPayload({ v: LINK_VERSION, nonce: hex(nonceW), who: whoText, mac: hex(mac) }));
    const answer = await ch.read(timeoutMs);
    if (!answer) throw new LinkError("the dispatcher closed the link during the handshake");
    if (answer.type === Frame.REFUSED) {
      throw new LinkError(`refused: ${String(parseJson(answer).reason ?? "")}`);
    }
    if (answer.type !== Frame.WELCOME) throw new LinkError("expected WELCOME");
    const macD = unhex(parseJson(answer).mac, 32, "proof");
    if (!sameMac(macD, hmac(secret, "osps-link/2 dispatcher proof", nonceW, nonceD))) {
      throw new LinkError("the dispatcher failed authentication (wrong secret?)");
    }
    ch.key(hmac(secret, "osps-link/2 session", nonceD, nonceW), "worker");
  } catch (err) {
    ch.close();
    throw err instanceof LinkError ? err : new LinkError("handshake failed", 0, { cause: err });
  }
}
