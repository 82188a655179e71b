/**
 * Checks of the account and list stores, run against any chat store (the
 * SQLite test calls them directly; the PostgreSQL test runs this file as a
 * program, `account_checks.ts postgres://…`, since the PostgreSQL client
 * reads environment variables the test runner does not grant).
 */
import assert from "node:assert/strict";
import type { ChatStore } from "../../mod/chat/chat_store.ts";
import { AccountError, AccountService, DEFAULT_POLICY } from "../../mod/chat/accounts.ts";
import { storesBeside } from "../../mod/chat/open_accounts.ts";

const user = (nick: string) => ({
  nick,
  user: "~u",
  host: "h",
  realname: "r",
  away: "",
  modes: "",
  owner: "1.a",
  signonAt: 0,
});

/** Accounts: register, authenticate, SCRAM verifier, verify policy, tokens, logins, drop. */
export async function checkAccounts(store: ChatStore): Promise<void> {
  const { accounts } = storesBeside(store);
  const service = new AccountService(accounts, { ...DEFAULT_POLICY, attemptsPerMinute: 0 });
  const r = await service.register("Ann[", "correct horse", {
    address: "192.0.2.1",
    email: "ann@example.org",
  });
  assert.deepEqual(r, { account: "Ann[", verified: true });
  await assert.rejects(
    service.register("ann{", "another one", { address: "192.0.2.1" }),
    (e: AccountError) => e.code === "ACCOUNT_EXISTS",
  );
  await assert.rejects(
    service.register("NickServ", "correct horse", { address: "192.0.2.1" }),
    (e: AccountError) => e.code === "BAD_ACCOUNT_NAME",
  );
  await assert.rejects(
    service.register("bob", "short", { address: "192.0.2.1" }),
    (e: AccountError) => e.code === "WEAK_PASSWORD",
  );
  await assert.rejects(
    service.register("bob", "correct horse", { address: "x", email: "nope" }),
    (e: AccountError) => e.code === "INVALID_EMAIL",
  );
  assert.equal(
    await service.authenticate("ANN{", "correct horse", "192.0.2.1"),
    "Ann[",
    "folded name logs in",
  );
  assert.equal(await service.authenticate("ann[", "wrong horse", "192.0.2.1"), null);
  assert.equal(await service.authenticate("nobody", "correct horse", "192.0.2.1"), null);
  const stored = await accounts.account("ann[");
  assert.ok(stored && !stored.password.includes("correct"), "the password is not stored");
  assert.match(stored.password, /^\$scrypt\$ln=15,r=8,p=1\$/);
  const scram = await service.scram("ann[");
  assert.equal(scram?.account, "Ann[");
  assert.ok(scram && scram.verifier.iterations >= 4096 && scram.verifier.storedKey.length > 0);

  // Logins show on the user's row (WHOIS, WHO and account-tag read it).
  await store.claimNick(user("ann["));
  await accounts.setLogin("ANN[", "Ann[");
  assert.equal((await store.user("ann["))?.account, "Ann[");
  await store.releaseNick("ann[");

  // Verification by code (the operator's log has it), and a pending account holds no login.
  const pending = new AccountService(accounts, {
    ...DEFAULT_POLICY,
    registration: "verify",
    attemptsPerMinute: 0,
  });
  assert.deepEqual(await pending.register("carol", "correct horse", { address: "x" }), {
    account: "carol",
    verified: false,
  });
  assert.equal(await pending.authenticate("carol", "correct horse", "x"), null, "unverified: no login");
  await assert.rejects(pending.verify("carol", "bad"), (e: AccountError) => e.code === "INVALID_CODE");
  const code = (await accounts.account("carol"))!.verifyCode;
  assert.equal(await pending.verify("carol", code), "carol");
  assert.equal(await pending.authenticate("carol", "correct horse", "x"), "carol");
  const closed = new AccountService(accounts, { ...DEFAULT_POLICY, registration: "closed" });
  await assert.rejects(
    closed.register("dave", "correct horse", { address: "x" }),
    (e: AccountError) => e.code === "DISALLOWED",
  );

  // Tokens: given once, stored hashed, revocable, gone with the account.
  const token = await service.issueToken("carol", { label: "test" });
  assert.equal(await service.tokenAccount(token), "carol");
  assert.equal(await service.tokenAccount(token + "x"), null);
  assert.equal(await service.revokeToken(token), true);
  assert.equal(await service.tokenAccount(token), null);
  const expired = await service.issueToken("carol", { ttlMs: -1 });
  assert.equal(await service.tokenAccount(expired), null, "expired");
  const kept = await service.issueToken("carol");

  // Registered channels and access lists.
  assert.equal(await accounts.registerChannel("#Reg", "carol"), true);
  assert.equal(await accounts.registerChannel("#reg", "Ann["), false, "registered once");
  await accounts.setAccess("#reg", "ann{", "op");
  assert.deepEqual(await accounts.accessList("#REG"), [
    { account: "carol", level: "founder" },
    { account: "Ann[", level: "op" },
  ]);
  assert.equal(await accounts.accessOf("#reg", "ANN["), "op");
  assert.equal((await accounts.channelRegistration("#reg"))?.founder, "carol");
  await service.setPassword("carol", "a new password", "x");
  assert.equal(await service.authenticate("carol", "correct horse", "x"), null);
  assert.equal(await service.authenticate("carol", "a new password", "x"), "carol");
  assert.equal(await service.drop("carol"), true);
  assert.equal(await accounts.channelRegistration("#reg"), null, "its channels are unregistered");
  assert.equal(await service.tokenAccount(kept), null, "its tokens are gone");
  assert.equal(await accounts.dropChannel("#reg"), false);
}

/** Bans, invitations, WHOWAS and counts. */
export async function checkLists(store: ChatStore): Promise<void> {
  const { lists } = storesBeside(store);
  await store.claimNick(user("op"));
  await store.join("#L", "op!~u@h", "op", "", "nt");
  assert.equal(await lists.addBan("#l", { mask: "*!*@bad", setBy: "op!~u@h", setAt: 1 }), true);
  assert.equal(await lists.addBan("#L", { mask: "*!*@bad", setBy: "op!~u@h", setAt: 2 }), false, "once");
  assert.deepEqual(await lists.bans("#l"), [{ mask: "*!*@bad", setBy: "op!~u@h", setAt: 1 }]);
  assert.equal(await lists.removeBan("#l", "*!*@bad"), true);
  assert.equal(await lists.removeBan("#l", "*!*@bad"), false);
  await lists.invite("#l", "Guest[");
  assert.equal(await lists.takeInvite("#L", "guest{", 0), true);
  assert.equal(await lists.takeInvite("#L", "guest{", 0), false, "used up");
  await lists.invite("#l", "late");
  assert.equal(await lists.takeInvite("#l", "late", Date.now() + 60_000), false, "expired");
  for (let i = 0; i < 12; i++) {
    await lists.addWhowas({
      nick: "Gone",
      user: "~g",
      host: "h",
      realname: `r${i}`,
      account: "",
      at: 1000 + i,
    });
  }
  const was = await lists.whowas("gone", 100);
  assert.equal(was.length, 8, "pruned to the newest entries");
  assert.deepEqual([was[0]!.realname, was[7]!.realname], ["r11", "r4"]);
  const counts = await lists.counts();
  assert.ok(counts.users >= 1 && counts.channels >= 1, JSON.stringify(counts));
}

if (import.meta.main) {
  const { PostgresStore } = await import("../../mod/chat/postgres_store.ts");
  const store = await PostgresStore.open(Deno.args[0]!);
  try {
    await checkAccounts(store);
    await checkLists(store);
  } finally {
    await store.close();
  }
}
