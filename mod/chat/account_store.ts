/**
 * What the chat keeps about accounts, as an interface: accounts (name,
 * password hash, SCRAM verifier, verification state), which account each
 * connected user is logged in to, tokens issued to an account (HTTP bearer
 * auth), and registered channels with their access lists. `sqlite_accounts.ts`
 * and `postgres_accounts.ts` implement it on the chat store's own database,
 * in the tables of `account_schema.ts`.
 *
 * Names are keyed by their rfc1459 fold, as nicknames and channels are: an
 * account name is a nickname its owner keeps.
 * @module
 */
import type { ScramVerifier } from "./password.ts";

/** A stored account. */
export interface Account {
  /** As registered (its folded form is the key). */
  readonly name: string;
  /** "" when none was given. */
  readonly email: string;
  /** The scrypt hash (`password.ts`). */
  readonly password: string;
  /** SCRAM-SHA-256 verifier, null for an account that has none. */
  readonly scram: ScramVerifier | null;
  readonly verified: boolean;
  /** The code VERIFY expects while unverified ("" once verified). */
  readonly verifyCode: string;
  /** ms since the epoch. */
  readonly createdAt: number;
}

/** Who may do what in a registered channel. */
export type AccessLevel = "founder" | "op" | "voice";

/** A registered channel. */
export interface ChannelRegistration {
  /** Folded channel name. */
  readonly channel: string;
  /** Founder's account name. */
  readonly founder: string;
  readonly registeredAt: number;
}

/** One entry of a registered channel's access list. */
export interface AccessEntry {
  /** Account name as registered. */
  readonly account: string;
  readonly level: AccessLevel;
}

/** Accounts and registered channels. Every method may throw `StoreError` when the database fails. */
export interface AccountStore {
  /**
   * Creates an account; false when the name is taken. An unverified account
   * created before `replaceUnverifiedBefore` (ms) does not hold the name: it
   * is replaced.
   */
  createAccount(a: Account, replaceUnverifiedBefore: number): Promise<boolean>;
  account(name: string): Promise<Account | null>;
  /** Marks an unverified account verified when `code` matches; false otherwise. */
  verifyAccount(name: string, code: string): Promise<boolean>;
  setPassword(name: string, hash: string, scram: ScramVerifier): Promise<void>;
  /** Deletes an account, its tokens, its access entries and the channels it founded; false when none. */
  dropAccount(name: string): Promise<boolean>;

  /** The account a connected user (by nick) is logged in to ("" to log out). */
  setLogin(nick: string, account: string): Promise<void>;
  /** A connected user's real name (IRCv3 SETNAME). */
  setRealname(nick: string, realname: string): Promise<void>;

  /** Stores a token's SHA-256 (hex) for `account`, valid until `expiresAt` (ms). */
  addToken(hash: string, account: string, expiresAt: number, label: string): Promise<void>;
  /** The account a live token's hash belongs to, or null (unknown or expired). */
  tokenAccount(hash: string, now: number): Promise<string | null>;
  /** Revokes a token; false when there was none. */
  dropToken(hash: string): Promise<boolean>;

  /** Registers a channel to a founder; false when it is registered already. */
  registerChannel(channel: string, founder: string): Promise<boolean>;
  channelRegistration(channel: string): Promise<ChannelRegistration | null>;
  /** Unregisters a channel (its access list goes with it); false when it was not registered. */
  dropChannel(channel: string): Promise<boolean>;
  /** Sets (or with null removes) an account's access to a registered channel. */
  setAccess(channel: string, account: string, level: AccessLevel | null): Promise<void>;
  /** The access list, founder first. */
  accessList(channel: string): Promise<AccessEntry[]>;
  /** One account's level in a channel, or null. */
  accessOf(channel: string, account: string): Promise<AccessLevel | null>;
}

type Row = Record<string, unknown>;

/** An `accounts` row. */
export function accountFrom(r: Row): Account {
  const scram = String(r["scram"] ?? "");
  return {
    name: String(r["name"]),
    email: String(r["email"]),
    password: String(r["password"]),
    scram: scram === "" ? null : JSON.parse(scram) as ScramVerifier,
    verified: Number(r["verified"]) === 1 || r["verified"] === true,
    verifyCode: String(r["verify_code"]),
    createdAt: Number(r["created_at"]),
  };
}

/** A `channel_regs` row joined with its founder's account name (`channel`, `name`, `registered_at`). */
export function registrationFrom(r: Row): ChannelRegistration {
  return {
    channel: String(r["channel"]),
    founder: String(r["name"]),
    registeredAt: Number(r["registered_at"]),
  };
}

/** A `channel_access` row joined with its account's name (`name`, `level`). */
export function accessFrom(r: Row): AccessEntry {
  return { account: String(r["name"]), level: String(r["level"]) as AccessLevel };
}
