/**
 * Passwords of chat accounts: a memory-hard hash to store and check them
 * (scrypt from `node:crypto`), and the SCRAM-SHA-256 verifiers (RFC 5802,
 * RFC 7677) that let a client prove it knows the password without sending it.
 *
 * Hashing never runs on the event loop: `node:crypto`'s asynchronous scrypt
 * and PBKDF2 run on a thread of the runtime's blocking pool, so a worker keeps
 * answering heartbeats and serving clients while a hash is computed. What a
 * flood could still do is fill that pool and the memory (each scrypt holds
 * 128·N·r bytes, 32 MiB by default): {@link HashGate} bounds the hashes in
 * progress and the ones waiting, and refuses the rest at once.
 *
 * Stored form (PHC-like, so that the cost can be raised later and old hashes
 * still check): `$scrypt$ln=15,r=8,p=1$<salt base64>$<hash base64>`.
 * @module
 */
import { createHash, createHmac, pbkdf2, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { OspsError } from "../errors.ts";

/** scrypt's cost: N = 2^ln, block size r, parallelism p. */
export interface ScryptCost {
  readonly ln: number;
  readonly r: number;
  readonly p: number;
}

/**
 * The default cost: N = 2^15, r = 8, p = 1 — 32 MiB and about 0.1–0.2 s of one
 * core per hash on the reference 2-core VM (measured in tests/chat_accounts_test.ts
 * and the report). OWASP's floor for scrypt is 2^17 (128 MiB, ~0.6 s here); a
 * whole network reconnecting after a restart pays one hash per SASL PLAIN login,
 * so osps takes the smaller memory and documents it. SCRAM logins cost the
 * server no hash at all.
 */
export const DEFAULT_SCRYPT: ScryptCost = { ln: 15, r: 8, p: 1 };

/** PBKDF2-HMAC-SHA-256 iterations of new SCRAM verifiers (OWASP 2023 for PBKDF2-SHA-256). */
export const SCRAM_ITERATIONS = 600_000;

const KEY_BYTES = 32;
const SALT_BYTES = 16;

/** The hash gate is full: too many hashes in progress and waiting. */
export class HashBusyError extends OspsError {}

/**
 * Bounds hashing: at most `concurrency` hashes run at once, at most `queue`
 * wait; past that {@link HashGate.run} throws {@link HashBusyError} at once.
 */
export class HashGate {
  readonly #concurrency: number;
  readonly #queue: number;
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  constructor(concurrency = 1, queue = 16) {
    this.#concurrency = concurrency;
    this.#queue = queue;
  }

  /** Hashes in progress and waiting. */
  get load(): number {
    return this.#running + this.#waiting.length;
  }

  /** Runs `fn` when a place is free; throws {@link HashBusyError} when the queue is full. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#concurrency) {
      if (this.#waiting.length >= this.#queue) {
        throw new HashBusyError("the server is busy hashing passwords");
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next(); // the place passes on: #running stays
      else this.#running--;
    }
  }
}

function scryptAsync(password: string, salt: Uint8Array, cost: ScryptCost): Promise<Uint8Array> {
  const N = 2 ** cost.ln;
  return new Promise((resolve, reject) =>
    scrypt(
      password.normalize("NFKC"),
      salt,
      KEY_BYTES,
      { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r + (1 << 20) },
      (err, key) => err ? reject(err) : resolve(new Uint8Array(key)),
    )
  );
}

const b64 = (bytes: Uint8Array): string => btoa(String.fromCharCode(...bytes));
const unb64 = (text: string): Uint8Array => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

/**
 * Hashes a password for storage.
 *
 * @example
 * ```ts
 * const stored = await hashPassword("correct horse"); // "$scrypt$ln=15,r=8,p=1$…$…"
 * await checkPassword("correct horse", stored); // true
 * ```
 */
export async function hashPassword(password: string, cost: ScryptCost = DEFAULT_SCRYPT): Promise<string> {
  const salt = new Uint8Array(randomBytes(SALT_BYTES));
  const key = await scryptAsync(password, salt, cost);
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64(salt)}$${b64(key)}`;
}

/** Checks a password against a stored hash (constant time); false for a malformed hash. */
export async function checkPassword(password: string, stored: string): Promise<boolean> {
  const m = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(
    stored,
  );
  if (!m) return false;
  const cost = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (cost.ln < 1 || cost.ln > 20 || cost.r < 1 || cost.p < 1) return false;
  const want = unb64(m[5]!);
  const got = await scryptAsync(password, unb64(m[4]!), cost);
  return want.length === got.length && timingSafeEqual(want, got);
}

/** What the server keeps to check SCRAM-SHA-256 logins (RFC 5802 §3): never the password. */
export interface ScramVerifier {
  /** Salt, base64. */
  readonly salt: string;
  readonly iterations: number;
  /** H(ClientKey), base64. */
  readonly storedKey: string;
  /** HMAC(SaltedPassword, "Server Key"), base64. */
  readonly serverKey: string;
}

/** PBKDF2-HMAC-SHA-256 of `password` (SCRAM's SaltedPassword), off the event loop. */
export function saltedPassword(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    pbkdf2(
      password.normalize("NFKC"),
      salt,
      iterations,
      KEY_BYTES,
      "sha256",
      (err, key) => err ? reject(err) : resolve(new Uint8Array(key)),
    )
  );
}

/** HMAC-SHA-256 (microseconds: synchronous). */
export function hmac(key: Uint8Array, data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

/** SHA-256. */
export function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/** Makes the SCRAM-SHA-256 verifier of a password (a new random salt). */
export async function scramVerifier(password: string, iterations = SCRAM_ITERATIONS): Promise<ScramVerifier> {
  const salt = new Uint8Array(randomBytes(SALT_BYTES));
  const salted = await saltedPassword(password, salt, iterations);
  return {
    salt: b64(salt),
    iterations,
    storedKey: b64(sha256(hmac(salted, "Client Key"))),
    serverKey: b64(hmac(salted, "Server Key")),
  };
}

/** Base64 helpers shared with the SASL mechanisms. */
export const base64 = { encode: b64, decode: unb64 };
