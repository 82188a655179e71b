/**
 * {@link AccountStore} on the chat's SQLite database (the connection of
 * `SqliteStore`, tables of `account_schema.ts`).
 * @module
 */
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
import type { SqliteDb } from "./sqlite_db.ts";

/** SQLite implementation of {@link AccountStore}. */
export class SqliteAccounts implements AccountStore {
  readonly #db: SqliteDb;

  constructor(db: SqliteDb) {
    this.#db = db;
  }

  createAccount(a: Account, replaceUnverifiedBefore: number): Promise<boolean> {
    const st = this.#db;
    return st.write(() => {
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
    });
  }

  account(name: string): Promise<Account | null> {
    return this.#db.retry(() => {
      const r = this.#db.get("SELECT * FROM accounts WHERE folded = ?", fold(name));
      return r ? accountFrom(r) : null;
    });
  }

  verifyAccount(name: string, code: string): Promise<boolean> {
    return this.#db.retry(() => {
      const n = this.#db.run(
        "UPDATE accounts SET verified = 1, verify_code = '' WHERE folded = ? AND verified = 0 AND verify_code = ?",
        fold(name),
        code,
      );
      return n === 1;
    });
  }

  setPassword(name: string, hash: string, scram: ScramVerifier): Promise<void> {
    return this.#db.retry(() => {
      this.#db.run(
        "UPDATE accounts SET password = ?, scram = ? WHERE folded = ?",
        hash,
        JSON.stringify(scram),
        fold(name),
      );
    });
  }

  dropAccount(name: string): Promise<boolean> {
    const st = this.#db;
    return st.write(() => {
      const f = fold(name);
      st.run("DELETE FROM channel_access WHERE account = ?", f);
      st.run(
        "DELETE FROM channel_access WHERE channel IN (SELECT channel FROM channel_regs WHERE founder = ?)",
        f,
      );
      // Its channels are registered no more: an empty one vanishes (the chat's life cycle, `chat_store.ts`).
      const founded = "SELECT channel FROM channel_regs WHERE founder = ?";
      st.run(`UPDATE channels SET registered = 0 WHERE folded IN (${founded})`, f);
      st.run(`DELETE FROM channels WHERE users <= 0 AND folded IN (${founded})`, f);
      st.run("DELETE FROM channel_regs WHERE founder = ?", f);
      st.run("DELETE FROM account_tokens WHERE account = ?", f);
      return st.run("DELETE FROM accounts WHERE folded = ?", f) === 1;
    });
  }

  setLogin(nick: string, account: string): Promise<void> {
    return this.#db.retry(() => {
      this.#db.run("UPDATE users SET account = ? WHERE folded = ?", account, fold(nick));
    });
  }

  setRealname(nick: string, realname: string): Promise<void> {
    return this.#db.retry(() => {
      this.#db.run("UPDATE users SET realname = ? WHERE folded = ?", realname, fold(nick));
    });
  }

  addToken(hash: string, account: string, expiresAt: number, label: string): Promise<void> {
    return this.#db.retry(() => {
      this.#db.run(
        "INSERT INTO account_tokens(hash, account, expires_at, label) VALUES (?, ?, ?, ?)",
        hash,
        fold(account),
        expiresAt,
        label,
      );
    });
  }

  tokenAccount(hash: string, now: number): Promise<string | null> {
    return this.#db.retry(() => {
      const r = this.#db.get(
        "SELECT a.name FROM account_tokens t JOIN accounts a ON a.folded = t.account " +
          "WHERE t.hash = ? AND t.expires_at > ? AND a.verified = 1",
        hash,
        now,
      );
      return r ? String(r["name"]) : null;
    });
  }

  dropToken(hash: string): Promise<boolean> {
    return this.#db.retry(() => {
      return this.#db.run("DELETE FROM account_tokens WHERE hash = ?", hash) === 1;
    });
  }

  registerChannel(channel: string, founder: string): Promise<boolean> {
    const st = this.#db;
    return st.write(() => {
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
    });
  }

  channelRegistration(channel: string): Promise<ChannelRegistration | null> {
    return this.#db.retry(() => {
      const r = this.#db.get(
        "SELECT r.channel, a.name, r.registered_at FROM channel_regs r JOIN accounts a ON a.folded = r.founder " +
          "WHERE r.channel = ?",
        fold(channel),
      );
      return r ? registrationFrom(r) : null;
    });
  }

  dropChannel(channel: string): Promise<boolean> {
    const st = this.#db;
    return st.write(() => {
      st.run("DELETE FROM channel_access WHERE channel = ?", fold(channel));
      return st.run("DELETE FROM channel_regs WHERE channel = ?", fold(channel)) === 1;
    });
  }

  setAccess(channel: string, account: string, level: AccessLevel | null): Promise<void> {
    return this.#db.retry(() => {
      if (level === null) {
        this.#db.run(
          "DELETE FROM channel_access WHERE channel = ? AND account = ?",
          fold(channel),
          fold(account),
        );
      } else {
        this.#db.run(
          "INSERT INTO channel_access(channel, account, level) VALUES (?, ?, ?) " +
            "ON CONFLICT(channel, account) DO UPDATE SET level = excluded.level",
          fold(channel),
          fold(account),
          level,
        );
      }
    });
  }

  accessList(channel: string): Promise<AccessEntry[]> {
    return this.#db.retry(() => {
      const rows = this.#db.all(
        "SELECT a.name, x.level FROM channel_access x JOIN accounts a ON a.folded = x.account WHERE x.channel = ? " +
          "ORDER BY CASE x.level WHEN 'founder' THEN 0 WHEN 'op' THEN 1 ELSE 2 END, a.name",
        fold(channel),
      );
      return rows.map(accessFrom);
    });
  }

  accessOf(channel: string, account: string): Promise<AccessLevel | null> {
    return this.#db.retry(() => {
      const r = this.#db.get(
        "SELECT level FROM channel_access WHERE channel = ? AND account = ?",
        fold(channel),
        fold(account),
      );
      return r ? String(r["level"]) as AccessLevel : null;
    });
  }
}
