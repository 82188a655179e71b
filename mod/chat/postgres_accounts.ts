/**
 * {@link AccountStore} on the chat's PostgreSQL database (the pool of
 * `PostgresStore`, tables of `account_schema.ts`).
 * @module
 */
import type postgres from "postgres";
import { fold } from "./irc_message.ts";
import {
  type AccessEntry,
  accessFrom,
  type AccessLevel,
  type Account,
  accountFrom,
  type AccountStore,
  type ChannelRegistration,
  registrationFrom,
} from "./account_store.ts";
import type { ScramVerifier } from "./password.ts";

/** PostgreSQL implementation of {@link AccountStore}. */
export class PostgresAccounts implements AccountStore {
  readonly #sql: postgres.Sql;

  constructor(sql: postgres.Sql) {
    this.#sql = sql;
  }

  createAccount(a: Account, replaceUnverifiedBefore: number): Promise<boolean> {
    const f = fold(a.name);
    return this.#sql.begin(async (tx) => {
      await tx`DELETE FROM accounts WHERE folded = ${f} AND verified = 0 AND created_at < ${replaceUnverifiedBefore}`;
      const r =
        await tx`INSERT INTO accounts (folded, name, email, password, scram, verified, verify_code, created_at)
        VALUES (${f}, ${a.name}, ${a.email}, ${a.password}, ${a.scram ? JSON.stringify(a.scram) : ""},
          ${a.verified ? 1 : 0}, ${a.verifyCode}, ${a.createdAt})
        ON CONFLICT (folded) DO NOTHING`;
      return r.count === 1;
    }) as Promise<boolean>;
  }

  async account(name: string): Promise<Account | null> {
    const [r] = await this.#sql`SELECT * FROM accounts WHERE folded = ${fold(name)}`;
    return r ? accountFrom(r) : null;
  }

  async verifyAccount(name: string, code: string): Promise<boolean> {
    const r = await this.#sql`UPDATE accounts SET verified = 1, verify_code = ''
      WHERE folded = ${fold(name)} AND verified = 0 AND verify_code = ${code}`;
    return r.count === 1;
  }

  async setPassword(name: string, hash: string, scram: ScramVerifier): Promise<void> {
    await this.#sql`UPDATE accounts SET password = ${hash}, scram = ${JSON.stringify(scram)}
      WHERE folded = ${fold(name)}`;
  }

  dropAccount(name: string): Promise<boolean> {
    const f = fold(name);
    return this.#sql.begin(async (tx) => {
      await tx`DELETE FROM channel_access WHERE account = ${f}`;
      await tx`DELETE FROM channel_access WHERE channel IN (SELECT channel FROM channel_regs WHERE founder = ${f})`;
      // Its channels are registered no more: an empty one vanishes (the chat's life cycle, `chat_store.ts`).
      // Channel rows are locked first, in name order, as every chat transaction does (no deadlock).
      await tx`SELECT 1 FROM channels WHERE folded IN (SELECT channel FROM channel_regs WHERE founder = ${f})
        ORDER BY folded FOR UPDATE`;
      await tx`UPDATE channels SET registered = 0
        WHERE folded IN (SELECT channel FROM channel_regs WHERE founder = ${f})`;
      await tx`DELETE FROM channels WHERE users <= 0
        AND folded IN (SELECT channel FROM channel_regs WHERE founder = ${f})`;
      await tx`DELETE FROM channel_regs WHERE founder = ${f}`;
      await tx`DELETE FROM account_tokens WHERE account = ${f}`;
      return (await tx`DELETE FROM accounts WHERE folded = ${f}`).count === 1;
    }) as Promise<boolean>;
  }

  async setLogin(nick: string, account: string): Promise<void> {
    await this.#sql`UPDATE users SET account = ${account} WHERE folded = ${fold(nick)}`;
  }

  async setRealname(nick: string, realname: string): Promise<void> {
    await this.#sql`UPDATE users SET realname = ${realname} WHERE folded = ${fold(nick)}`;
  }

  async addToken(hash: string, account: string, expiresAt: number, label: string): Promise<void> {
    await this.#sql`INSERT INTO account_tokens (hash, account, expires_at, label)
      VALUES (${hash}, ${fold(account)}, ${expiresAt}, ${label})`;
  }

  async tokenAccount(hash: string, now: number): Promise<string | null> {
    const [r] = await this.#sql`SELECT a.name FROM account_tokens t JOIN accounts a ON a.folded = t.account
      WHERE t.hash = ${hash} AND t.expires_at > ${now} AND a.verified = 1`;
    return r ? String(r["name"]) : null;
  }

  async dropToken(hash: string): Promise<boolean> {
    return (await this.#sql`DELETE FROM account_tokens WHERE hash = ${hash}`).count === 1;
  }

  registerChannel(channel: string, founder: string): Promise<boolean> {
    const [c, f] = [fold(channel), fold(founder)];
    return this.#sql.begin(async (tx) => {
      const r =
        await tx`INSERT INTO channel_regs (channel, founder, registered_at) VALUES (${c}, ${f}, ${Date.now()})
        ON CONFLICT (channel) DO NOTHING`;
      if (r.count !== 1) return false;
      await tx`INSERT INTO channel_access (channel, account, level) VALUES (${c}, ${f}, 'founder')
        ON CONFLICT (channel, account) DO UPDATE SET level = 'founder'`;
      return true;
    }) as Promise<boolean>;
  }

  async channelRegistration(channel: string): Promise<ChannelRegistration | null> {
    const [r] = await this.#sql`SELECT r.channel, a.name, r.registered_at FROM channel_regs r
      JOIN accounts a ON a.folded = r.founder WHERE r.channel = ${fold(channel)}`;
    return r ? registrationFrom(r) : null;
  }

  dropChannel(channel: string): Promise<boolean> {
    const c = fold(channel);
    return this.#sql.begin(async (tx) => {
      await tx`DELETE FROM channel_access WHERE channel = ${c}`;
      return (await tx`DELETE FROM channel_regs WHERE channel = ${c}`).count === 1;
    }) as Promise<boolean>;
  }

  async setAccess(channel: string, account: string, level: AccessLevel | null): Promise<void> {
    const [c, a] = [fold(channel), fold(account)];
    if (level === null) {
      await this.#sql`DELETE FROM channel_access WHERE channel = ${c} AND account = ${a}`;
    } else {
      await this.#sql`INSERT INTO channel_access (channel, account, level) VALUES (${c}, ${a}, ${level})
        ON CONFLICT (channel, account) DO UPDATE SET level = EXCLUDED.level`;
    }
  }

  async accessList(channel: string): Promise<AccessEntry[]> {
    const rows = await this.#sql`SELECT a.name, x.level FROM channel_access x
      JOIN accounts a ON a.folded = x.account WHERE x.channel = ${fold(channel)}
      ORDER BY CASE x.level WHEN 'founder' THEN 0 WHEN 'op' THEN 1 ELSE 2 END, a.name`;
    return rows.map(accessFrom);
  }

  async accessOf(channel: string, account: string): Promise<AccessLevel | null> {
    const [r] = await this.#sql`SELECT level FROM channel_access
      WHERE channel = ${fold(channel)} AND account = ${fold(account)}`;
    return r ? String(r["level"]) as AccessLevel : null;
  }
}
