/**
 * {@link AccountStore} on the chat's SQLite database (the connection of
 * `SqliteStore`, tables of `account_schema.ts`).
 * @module
 */
import type { DatabaseSync } from "node:sqlite";
import { fold } from "./irc_message.ts";
import {
  type AccessEntry,
  type AccessLevel,
  type Account,
  accountFrom,
  type AccountStore,
  type ChannelRegistration,
} from "./account_store.ts";
import type { ScramVerifier } from "./password.ts";
import { Statements } from "./sqlite_statements.ts";

/** SQLite implementation of {@link AccountStore}. */
export class SqliteAccounts implements AccountStore {
  readonly #st: Statements;

  constructor(db: DatabaseSync) {
    this.#st = new Statements(db);
  }

  createAccount(a: Account, replaceUnverifiedBefore: number): Promise<boolean> {
    const st = this.#st;
    return Promise.resolve(st.tx(() => {
      st.run(
        "DELETE FROM accounts WHERE folded = ? AND verified = 0 AND created_at < ?",
        fold(a.name),
        replaceUnverifiedBefore,
      );
      return st.run(
        "INSERT INTO accounts(folded, name, email, password, scram, verified, verify_code, created_at) " +
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(folded) DO NOTHING",
        fold(a.name),
        a.name,
        a.email,
        a.password,
        a.scram ? JSON.stringify(a.scram) : "",
        a.verified ? 1 : 0,
        a.verifyCode,
        a.createdAt,
      ) === 1;
    }));
  }

  account(name: string): Promise<Account | null> {
    const r = this.#st.get("SELECT * FROM accounts WHERE folded = ?", fold(name));
    return Promise.resolve(r ? accountFrom(r) : null);
  }

  verifyAccount(name: string, code: string): Promise<boolean> {
    const n = this.#st.run(
      "UPDATE accounts SET verified = 1, verify_code = '' WHERE folded = ? AND verified = 0 AND verify_code = ?",
      fold(name),
      code,
    );
    return Promise.resolve(n === 1);
  }

  setPassword(name: string, hash: string, scram: ScramVerifier): Promise<void> {
    this.#st.run(
      "UPDATE accounts SET password = ?, scram = ? WHERE folded = ?",
      hash,
      JSON.stringify(scram),
      fold(name),
    );
    return Promise.resolve();
  }

  dropAccount(name: string): Promise<boolean> {
    const st = this.#st;
    return Promise.resolve(st.tx(() => {
      const f = fold(name);
      st.run("DELETE FROM channel_access WHERE account = ?", f);
      st.run(
        "DELETE FROM channel_access WHERE channel IN (SELECT channel FROM channel_regs WHERE founder = ?)",
        f,
      );
      st.run("DELETE FROM channel_regs WHERE founder = ?", f);
      st.run("DELETE FROM account_tokens WHERE account = ?", f);
      return st.run("DELETE FROM accounts WHERE folded = ?", f) === 1;
    }));
  }

  setLogin(nick: string, account: string): Promise<void> {
    this.#st.run("UPDATE users SET account = ? WHERE folded = ?", account, fold(nick));
    return Promise.resolve();
  }

  setRealname(nick: string, realname: string): Promise<void> {
    this.#st.run("UPDATE users SET realname = ? WHERE folded = ?", realname, fold(nick));
    return Promise.resolve();
  }

  addToken(hash: string, account: string, expiresAt: number, label: string): Promise<void> {
    this.#st.run(
      "INSERT INTO account_tokens(hash, account, expires_at, label) VALUES (?, ?, ?, ?)",
      hash,
      fold(account),
      expiresAt,
      label,
    );
    return Promise.resolve();
  }

  tokenAccount(hash: string, now: number): Promise<string | null> {
    const r = this.#st.get(
      "SELECT a.name FROM account_tokens t JOIN accounts a ON a.folded = t.account " +
        "WHERE t.hash = ? AND t.expires_at > ? AND a.verified = 1",
      hash,
      now,
    );
    return Promise.resolve(r ? String(r["name"]) : null);
  }

  dropToken(hash: string): Promise<boolean> {
    return Promise.resolve(this.#st.run("DELETE FROM account_tokens WHERE hash = ?", hash) === 1);
  }

  registerChannel(channel: string, founder: string): Promise<boolean> {
    const st = this.#st;
    return Promise.resolve(st.tx(() => {
      const c = fold(channel);
      const n = st.run(
        "INSERT INTO channel_regs(channel, founder, registered_at) VALUES (?, ?, ?) ON CONFLICT(channel) DO NOTHING",
        c,
        fold(founder),
        Date.now(),
      );
      if (n === 1) {
        st.run(
          "INSERT INTO channel_access(channel, account, level) VALUES (?, ?, 'founder') " +
            "ON CONFLICT(channel, account) DO UPDATE SET level = 'founder'",
          c,
          fold(founder),
        );
      }
      return n === 1;
    }));
  }

  channelRegistration(channel: string): Promise<ChannelRegistration | null> {
    const r = this.#st.get(
      "SELECT r.channel, a.name, r.registered_at FROM channel_regs r JOIN accounts a ON a.folded = r.founder " +
        "WHERE r.channel = ?",
      fold(channel),
    );
    return Promise.resolve(
      r
        ? {
          channel: String(r["channel"]),
          founder: String(r["name"]),
          registeredAt: Number(r["registered_at"]),
        }
        : null,
    );
  }

  dropChannel(channel: string): Promise<boolean> {
    const st = this.#st;
    return Promise.resolve(st.tx(() => {
      st.run("DELETE FROM channel_access WHERE channel = ?", fold(channel));
      return st.run("DELETE FROM channel_regs WHERE channel = ?", fold(channel)) === 1;
    }));
  }

  setAccess(channel: string, account: string, level: AccessLevel | null): Promise<void> {
    if (level === null) {
      this.#st.run(
        "DELETE FROM channel_access WHERE channel = ? AND account = ?",
        fold(channel),
        fold(account),
      );
    } else {
      this.#st.run(
        "INSERT INTO channel_access(channel, account, level) VALUES (?, ?, ?) " +
          "ON CONFLICT(channel, account) DO UPDATE SET level = excluded.level",
        fold(channel),
        fold(account),
        level,
      );
    }
    return Promise.resolve();
  }

  accessList(channel: string): Promise<AccessEntry[]> {
    const rows = this.#st.all(
      "SELECT a.name, x.level FROM channel_access x JOIN accounts a ON a.folded = x.account WHERE x.channel = ? " +
        "ORDER BY CASE x.level WHEN 'founder' THEN 0 WHEN 'op' THEN 1 ELSE 2 END, a.name",
      fold(channel),
    );
    return Promise.resolve(
      rows.map((r) => ({ account: String(r["name"]), level: String(r["level"]) as AccessLevel })),
    );
  }

  accessOf(channel: string, account: string): Promise<AccessLevel | null> {
    const r = this.#st.get(
      "SELECT level FROM channel_access WHERE channel = ? AND account = ?",
      fold(channel),
      fold(account),
    );
    return Promise.resolve(r ? String(r["level"]) as AccessLevel : null);
  }
}
