/**
 * The account service, independent of any transport: IRC's SASL, REGISTER
 * and NickServ, and the HTTP API's Basic and bearer auth all call it, so an
 * account means the same thing everywhere.
 *
 * - `register` creates an account (scrypt hash and SCRAM-SHA-256 verifier of
 *   the password, never the password itself). Policy (`--irc-register`):
 *   `open` (default) — the account is verified at once; `verify` — it waits
 *   for `VERIFY <account> <code>`, and the code goes to the server's log, for
 *   the operator to hand on (osps sends no mail); `closed` — no registration.
 *   An unverified account older than a day no longer holds its name.
 * - `authenticate` checks a name and password (PLAIN, IDENTIFY, HTTP Basic).
 * - `scram` gives the stored SCRAM verifier (the SASL SCRAM-SHA-256 exchange
 *   is in `sasl.ts`; it costs the server no hash).
 * - tokens: `issueToken` returns a random bearer token once and stores only
 *   its SHA-256; `tokenAccount` maps a presented token to its account.
 *
 * Every operation that hashes a password takes a place in a {@link HashGate}
 * (bounded work and queue: a flood gets TEMPORARILY_UNAVAILABLE, it never
 * stalls the worker) and one of its address's attempts ({@link AttemptLimiter}).
 * Passwords are never logged, and errors never contain them.
 * @module
 */
import { logger } from "../log.ts";
import { OspsError } from "../errors.ts";
import { addrKey } from "../net/admission.ts";
import { fold, validNick } from "./irc_message.ts";
import type { Account, AccountStore } from "./account_store.ts";
import type { ChatConfig } from "./chat_config.ts";
import {
  base64,
  checkPassword,
  HashBusyError,
  HashGate,
  hashPassword,
  SCRAM_ITERATIONS,
  type ScramVerifier,
  scramVerifier,
  sha256,
} from "./password.ts";

/** Why an account operation failed (IRCv3 standard-reply codes where one exists). */
export type AccountFailure =
  | "ACCOUNT_EXISTS"
  | "BAD_ACCOUNT_NAME"
  | "WEAK_PASSWORD"
  | "INVALID_EMAIL"
  | "DISALLOWED"
  | "RATE_LIMITED"
  | "TEMPORARILY_UNAVAILABLE"
  | "INVALID_CODE"
  | "ACCOUNT_NOT_FOUND";

/** An account operation was refused; `code` says why, `message` says it to a person. */
export class AccountError extends OspsError {
  readonly code: AccountFailure;
  constructor(code: AccountFailure, message: string) {
    super(message);
    this.code = code;
  }
}

/** How accounts may be created. */
export type RegistrationPolicy = "open" | "verify" | "closed";

/** The service's rules (from the `--irc-register*` flags). */
export interface AccountPolicy {
  readonly registration: RegistrationPolicy;
  /** Shortest password accepted. */
  readonly minPasswordLength: number;
  /** Password-checking attempts one address may make at once… */
  readonly attemptBurst: number;
  /** …then per minute (0: no limit). */
  readonly attemptsPerMinute: number;
}

/** The policy the chat flags set (`--irc-register`, `--irc-password-min`, `--irc-auth-rate`). */
export function accountPolicy(cfg: Pick<ChatConfig, "register" | "passwordMin" | "authRate">): AccountPolicy {
  return {
    registration: cfg.register,
    minPasswordLength: cfg.passwordMin,
    attemptBurst: Math.max(1, cfg.authRate),
    attemptsPerMinute: cfg.authRate,
  };
}

/** The defaults of the flags. */
export const DEFAULT_POLICY: AccountPolicy = {
  registration: "open",
  minPasswordLength: 8,
  attemptBurst: 10,
  attemptsPerMinute: 10,
};

/** Longest password accepted, in characters (an upper bound on the work one attempt costs). */
export const MAX_PASSWORD_LENGTH = 300;
/** Nicknames that belong to the server's services: no user or account may take them. */
export const SERVICE_NAMES: ReadonlySet<string> = new Set(["nickserv", "chanserv"]);
/** An unverified account stops holding its name after this long. */
export const UNVERIFIED_TTL_MS = 24 * 3600_000;
/** Default lifetime of a bearer token. */
export const TOKEN_TTL_MS = 30 * 24 * 3600_000;

/** Checked when the name has no account, so that an unknown name costs what a known one does. */
const NO_ACCOUNT_HASH = `$scrypt$ln=15,r=8,p=1$${base64.encode(new Uint8Array(16))}$${
  base64.encode(new Uint8Array(32))
}`;

const EMAIL = /^[^@\s,]{1,64}@[^@\s,]{1,190}\.[^@\s,]{1,63}$/;

/** Password attempts per client address, as a token bucket each (bounded: full buckets are forgotten). */
export class AttemptLimiter {
  readonly #burst: number;
  readonly #perMinute: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(burst: number, perMinute: number, now: () => number = () => performance.now()) {
    this.#burst = burst;
    this.#perMinute = perMinute;
    this.#now = now;
  }

  /** Takes one attempt for `address`; false when it has none left (a refusal costs none). */
  take(address: string): boolean {
    if (this.#perMinute <= 0) return true;
    const key = addrKey(address);
    const now = this.#now();
    if (this.#buckets.size > 4096) this.#buckets.clear(); // bounded; at worst a burst is granted again
    const b = this.#buckets.get(key) ?? { tokens: this.#burst, at: now };
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMinute / 60_000);
    b.at = now;
    this.#buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

/** The account service. */
export class AccountService {
  readonly store: AccountStore;
  readonly policy: AccountPolicy;
  readonly #gate: HashGate;
  readonly #attempts: AttemptLimiter;

  constructor(
    store: AccountStore,
    policy: AccountPolicy = DEFAULT_POLICY,
    options: { gate?: HashGate; attempts?: AttemptLimiter } = {},
  ) {
    this.store = store;
    this.policy = policy;
    this.#gate = options.gate ?? new HashGate();
    this.#attempts = options.attempts ?? new AttemptLimiter(policy.attemptBurst, policy.attemptsPerMinute);
  }

  /** Checks a name for an account (it is also a nickname its owner keeps); throws BAD_ACCOUNT_NAME. */
  static checkName(name: string): void {
    if (!validNick(name) || SERVICE_NAMES.has(fold(name))) {
      throw new AccountError("BAD_ACCOUNT_NAME", `"${name}" cannot be an account name`);
    }
  }

  /** Throws RATE_LIMITED when `address` has no attempt left; runs `fn` in the hash gate. */
  async #hashing<T>(address: string, fn: () => Promise<T>): Promise<T> {
    if (!this.#attempts.take(address)) {
      throw new AccountError("RATE_LIMITED", "Too many password attempts from your address; try again later");
    }
    try {
      return await this.#gate.run(fn);
    } catch (err) {
      if (err instanceof HashBusyError) {
        throw new AccountError("TEMPORARILY_UNAVAILABLE", "The server is busy; try again in a moment");
      }
      throw err;
    }
  }

  #checkPassword(password: string): void {
    if (password.length < this.policy.minPasswordLength) {
      throw new AccountError(
        "WEAK_PASSWORD",
        `Passwords must be at least ${this.policy.minPasswordLength} characters long`,
      );
    }
    if (password.length > MAX_PASSWORD_LENGTH) {
      throw new AccountError(
        "WEAK_PASSWORD",
        `Passwords must be at most ${MAX_PASSWORD_LENGTH} characters long`,
      );
    }
  }

  /**
   * Creates an account. Returns whether it is verified (else a code must be
   * given to {@link verify}; the operator finds it in the server's log).
   *
   * @example
   * ```ts
   * const { verified } = await accounts.register("alice", "correct horse", { address: "192.0.2.1" });
   * ```
   */
  async register(
    name: string,
    password: string,
    options: { email?: string; address: string },
  ): Promise<{ account: string; verified: boolean }> {
    if (this.policy.registration === "closed") {
      throw new AccountError("DISALLOWED", "Account registration is disabled on this server");
    }
    AccountService.checkName(name);
    const email = options.email === undefined || options.email === "*" ? "" : options.email;
    if (email !== "" && !EMAIL.test(email)) {
      throw new AccountError("INVALID_EMAIL", "That e-mail address is not valid");
    }
    this.#checkPassword(password);
    if (await this.store.account(name)) {
      throw new AccountError("ACCOUNT_EXISTS", `The account "${name}" is already registered`);
    }
    const verified = this.policy.registration === "open";
    const [hash, scram] = await this.#hashing(
      options.address,
      () => Promise.all([hashPassword(password), scramVerifier(password)]),
    );
    const verifyCode = verified ? "" : base64.encode(crypto.getRandomValues(new Uint8Array(6)))
      .replace(/[+/=]/g, "x");
    const account: Account = {
      name,
      email,
      password: hash,
      scram,
      verified,
      verifyCode,
      createdAt: Date.now(),
    };
    if (!(await this.store.createAccount(account, Date.now() - UNVERIFIED_TTL_MS))) {
      throw new AccountError("ACCOUNT_EXISTS", `The account "${name}" is already registered`);
    }
    if (!verified) {
      logger().warn("chat: account {name} waits for verification: its code is {code}", {
        name,
        code: verifyCode,
      });
    } else {
      logger().info("chat: account {name} registered", { name });
    }
    return { account: name, verified };
  }

  /** Verifies a pending account with its code; returns the account name. */
  async verify(name: string, code: string): Promise<string> {
    const a = await this.store.account(name);
    if (!a) throw new AccountError("ACCOUNT_NOT_FOUND", `There is no account "${name}"`);
    if (a.verified) throw new AccountError("INVALID_CODE", `The account "${a.name}" is verified already`);
    if (!(await this.store.verifyAccount(name, code))) {
      throw new AccountError("INVALID_CODE", "That code is not valid");
    }
    return a.name;
  }

  /**
   * Checks a name and password; returns the account's name as registered,
   * or null when they do not match (or the account is unverified). Throws
   * RATE_LIMITED or TEMPORARILY_UNAVAILABLE.
   */
  async authenticate(name: string, password: string, address: string): Promise<string | null> {
    if (password.length > MAX_PASSWORD_LENGTH || !validNick(name)) return null;
    const a = await this.store.account(name);
    // An unknown name costs a hash too, so that timing does not tell which names exist.
    const stored = a?.password ?? NO_ACCOUNT_HASH;
    const ok = await this.#hashing(address, () => checkPassword(password, stored));
    return ok && a && a.verified ? a.name : null;
  }

  /** Counts a SCRAM attempt against `address` (SCRAM checks cost no hash, but they are guesses all the same). */
  attempt(address: string): void {
    if (!this.#attempts.take(address)) {
      throw new AccountError("RATE_LIMITED", "Too many password attempts from your address; try again later");
    }
  }

  /** The SCRAM-SHA-256 verifier of a verified account, or null. */
  async scram(name: string): Promise<{ account: string; verifier: ScramVerifier } | null> {
    if (!validNick(name)) return null;
    const a = await this.store.account(name);
    return a && a.verified && a.scram ? { account: a.name, verifier: a.scram } : null;
  }

  /** Sets a new password (hash and SCRAM verifier). */
  async setPassword(name: string, password: string, address: string): Promise<void> {
    this.#checkPassword(password);
    const [hash, scram] = await this.#hashing(
      address,
      () => Promise.all([hashPassword(password), scramVerifier(password, SCRAM_ITERATIONS)]),
    );
    await this.store.setPassword(name, hash, scram);
  }

  /** Deletes an account, with its tokens and the channels it founded; false when none. */
  drop(name: string): Promise<boolean> {
    return this.store.dropAccount(name);
  }

  /** Issues a bearer token for `account` (returned once; only its SHA-256 is stored). */
  async issueToken(account: string, options: { ttlMs?: number; label?: string } = {}): Promise<string> {
    const token = base64.encode(crypto.getRandomValues(new Uint8Array(32)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    await this.store.addToken(
      tokenHash(token),
      account,
      Date.now() + (options.ttlMs ?? TOKEN_TTL_MS),
      options.label ?? "",
    );
    return token;
  }

  /** The account a bearer token belongs to, or null (unknown, expired, or its account gone). */
  tokenAccount(token: string): Promise<string | null> {
    if (token.length > 100) return Promise.resolve(null);
    return this.store.tokenAccount(tokenHash(token), Date.now());
  }

  /** Revokes a token; false when it was not there. */
  revokeToken(token: string): Promise<boolean> {
    return this.store.dropToken(tokenHash(token));
  }
}

function tokenHash(token: string): string {
  return Array.from(sha256(token), (b) => b.toString(16).padStart(2, "0")).join("");
}
