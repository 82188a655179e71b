/**
 * Two osps instances, one PostgreSQL: one chat. A client of instance A and
 * one of instance B meet in a channel, a nickname held on A is refused on B,
 * and a QUIT on one side reaches the other (LISTEN/NOTIFY); the group commit
 * numbers a burst in order. Runs against a
 * real PostgreSQL this test starts; skipped, saying why, only where
 * PostgreSQL is not installed.
 */
import assert from "node:assert/strict";
import { type Instance, RUN_FLAGS, withInstance } from "./harness.ts";
import { LibClient, RawIrc } from "./support/irc.ts";
import { startPostgres } from "./support/postgres.ts";
import { type ChatPlace, newChatPlace } from "./support/chat_instance.ts";

const pg = await startPostgres();
if (typeof pg === "string") console.warn(`chat_postgres_test: SKIPPED: ${pg}`);

/**
 * Two instances on the test server's database, A with `workersA` workers and B with one;
 * `body` gets their chat places (IRC ports). Their data dirs are removed afterwards.
 */
async function withTwoInstances(
  url: string,
  options: { workersA: number; flags?: string[] },
  body: (a: ChatPlace, b: ChatPlace, inst: [Instance, Instance]) => Promise<void>,
): Promise<void> {
  const [a, b] = [newChatPlace(), newChatPlace()];
  const flags = [`--store=${url}`, ...(options.flags ?? [])];
  try {
    await withInstance(
      { workers: options.workersA, flags: [`--irc-port=${a.ircPort}`, ...flags] },
      async (instA) => {
        await withInstance({ workers: 1, flags: [`--irc-port=${b.ircPort}`, ...flags] }, async (instB) => {
          await body(a, b, [instA, instB]);
        });
      },
    );
  } finally {
    for (const p of [a, b]) Deno.removeSync(p.dataDir, { recursive: true });
  }
}

/**
 * Runs a support program against the test server, as a real process as a
 * worker is: the PostgreSQL client needs env access the test runner lacks.
 */
async function runAgainstPostgres(program: string, url: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, new URL(program, import.meta.url).pathname, url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

Deno.test({
  name: "chat on PostgreSQL: clients of two instances chat in one channel; nicknames are unique across them",
  ignore: typeof pg === "string",
  async fn() {
    if (typeof pg === "string") return;
    await withTwoInstances(pg.url, { workersA: 2 }, async (a, b, [instA, instB]) => {
      assert.notEqual(instA.port, instB.port);
      const alice = await LibClient.connect(a.ircPort, "alice");
      const bob = await LibClient.connect(b.ircPort, "bob");
      await alice.join("#multi");
      await bob.join("#multi");
      await alice.waitLine("bob joins, from B", (m) => m.command === "JOIN" && m.nick === "bob");
      alice.client.say("#multi", "hello from A");
      await bob.waitLine(
        "A's message on B",
        (m) => m.command === "PRIVMSG" && m.params[1] === "hello from A",
      );
      bob.client.say("#multi", "hello from B");
      await alice.waitLine(
        "B's message on A",
        (m) => m.command === "PRIVMSG" && m.params[1] === "hello from B",
      );
      bob.client.say("alice", "private, across hosts");
      await alice.waitLine("private message", (m) => m.params[1] === "private, across hosts");
      const dup = await RawIrc.connect(b.ircPort);
      await dup.send("NICK ALICE", "USER x 0 * :x");
      await dup.waitFor("433 on B for A's nickname", (m) => m.command === "433");
      await dup.close();
      await bob.quit("leaving B");
      const quit = await alice.waitLine("bob's QUIT", (m) => m.command === "QUIT" && m.nick === "bob");
      assert.equal(quit.params[0], "Quit: leaving B");
      await alice.quit();
    });
  },
});

Deno.test({
  name: "chat on PostgreSQL: a burst from several senders is stored in few transactions, numbered in order",
  ignore: typeof pg === "string",
  async fn() {
    if (typeof pg === "string") return;
    await runAgainstPostgres("./support/group_commit_burst.ts", pg.url);
  },
});

Deno.test({
  name:
    "chat on PostgreSQL: an account registered on one instance logs in on the other; MONITOR and account-notify cross",
  ignore: typeof pg === "string",
  async fn() {
    if (typeof pg === "string") return;
    await withTwoInstances(pg.url, { workersA: 1, flags: ["--irc-auth-rate=0"] }, async (a, b) => {
      const reg = await RawIrc.connect(a.ircPort);
      await reg.send("CAP LS 302", "CAP REQ :account-notify", "NICK pgacct", "USER p 0 * :p");
      await reg.send("REGISTER * * pg-password", "CAP END");
      await reg.waitFor("registered on A", (m) => m.command === "REGISTER" && m.params[0] === "SUCCESS");
      await reg.send("MONITOR + pgother", "JOIN #pg");
      await reg.waitFor("731", (m) => m.command === "731");
      const other = await LibClient.connect(b.ircPort, "pgother", {
        account: { account: "pgacct", password: "pg-password" },
      });
      assert.ok(other.lines("900").length === 1, "SASL on B with A's account");
      await reg.waitFor(
        "730 across instances",
        (m) => m.command === "730" && m.params[1]!.startsWith("pgother!"),
      );
      await other.join("#pg");
      other.raw("PRIVMSG NickServ :LOGOUT");
      await reg.waitFor("ACCOUNT * from B", (m) => m.command === "ACCOUNT" && m.params[0] === "*");
      await other.quit();
      await reg.waitFor("731 across instances", (m) => m.command === "731" && m.params[1] === "pgother");
      await reg.close();
    });
  },
});

Deno.test({
  name: "chat on PostgreSQL: accounts, tokens, registered channels, bans, invitations, WHOWAS and counts",
  ignore: typeof pg === "string",
  async fn() {
    if (typeof pg === "string") return;
    await runAgainstPostgres("./support/account_checks.ts", pg.url);
  },
});

Deno.test({
  name: "chat on PostgreSQL: tear down the test server",
  ignore: typeof pg === "string",
  async fn() {
    if (typeof pg !== "string") await pg.stop();
  },
});
