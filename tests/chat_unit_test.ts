/**
 * The chat's building blocks on their own: the IRC grammar, case mapping,
 * flood control on a driven clock, the SQLite store's rules, the group
 * commit of channel messages, and the hub's per-channel ordering with gaps
 * filled from the store.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { fold, formatMessage, parseMessage, validChannel, validNick } from "../mod/chat/irc_message.ts";
import { FakeLag } from "../mod/chat/fake_lag.ts";
import { SqliteStore } from "../mod/chat/sqlite_store.ts";
import { StoreError } from "../mod/chat/chat_store.ts";
import { SCHEMA } from "../mod/chat/store_schema.ts";
import { ChatHub, type LocalClient } from "../mod/chat/chat_hub.ts";
import type { Actor } from "../mod/chat/chat_store.ts";
import { joinOk, newUser, storeContract } from "./support/store_contract.ts";
import { waitFor } from "./harness.ts";
import { CommitCancelledError, type Committed, GroupCommit } from "../mod/chat/group_commit.ts";
import { checkBurst, said, said as msg, sender } from "./support/group_commit_burst.ts";

Deno.test("parseMessage reads tags, prefix, command, middles and a trailing parameter", () => {
  const m = parseMessage("@time=2020-01-01T00:00:00Z;a=b\\sc :nick!u@h privmsg #chan :hello  there :)")!;
  assert.deepEqual(m.tags, { time: "2020-01-01T00:00:00Z", a: "b c" });
  assert.equal(m.prefix, "nick!u@h");
  assert.equal(m.command, "PRIVMSG");
  assert.deepEqual(m.params, ["#chan", "hello  there :)"]);
  assert.deepEqual(parseMessage("NICK   spaced  ")!.params, ["spaced"]);
  assert.equal(parseMessage(""), null);
  assert.equal(parseMessage(":only.prefix"), null);
  const many = parseMessage(`CMD ${Array.from({ length: 20 }, (_, i) => `p${i}`).join(" ")}`)!;
  assert.equal(many.params.length, 15, "the 15th parameter takes the rest of the line");
  assert.equal(many.params[14], "p14 p15 p16 p17 p18 p19");
});

Deno.test("formatMessage adds a colon only where the last parameter needs one, and escapes tags", () => {
  assert.equal(formatMessage("srv", "001", ["nick", "Welcome"]), ":srv 001 nick Welcome");
  assert.equal(formatMessage("srv", "001", ["nick", "Welcome home"]), ":srv 001 nick :Welcome home");
  assert.equal(formatMessage("", "PRIVMSG", ["#a", ""]), "PRIVMSG #a :");
  assert.equal(formatMessage("", "PRIVMSG", ["#a", ":)"]), "PRIVMSG #a ::)");
  assert.equal(formatMessage("", "TOPIC", ["#a", "x"], { trailing: true }), "TOPIC #a :x");
  assert.equal(formatMessage("s", "X", [], { tags: { k: "a b;c" } }), "@k=a\\sb\\:c :s X");
  const back = parseMessage(formatMessage("n!u@h", "PRIVMSG", ["#a", "round trip"], { tags: { t: "v v" } }))!;
  assert.deepEqual([back.tags, back.params], [{ t: "v v" }, ["#a", "round trip"]]);
});

Deno.test("rfc1459 case mapping folds []\\~ to {}|^; nick and channel names are checked", () => {
  assert.equal(fold("Nick[Away]\\~"), "nick{away}|^");
  assert.equal(fold("#Chan"), "#chan");
  assert.ok(validNick("a[b]c`_^{|}-1"));
  for (const bad of ["", "1abc", "-abc", "a b", "a!b", "a@b", "x".repeat(31)]) {
    assert.ok(!validNick(bad), bad);
  }
  assert.ok(validChannel("#ok.chan-1"));
  for (const bad of ["#", "chan", "#a b", "#a,b", "#a:b", "#a\x07"]) assert.ok(!validChannel(bad), bad);
});

Deno.test("FakeLag: a burst at once, then one line per 1/rate s; idle time refills the bucket", () => {
  let now = 0;
  const lag = new FakeLag(3, 2, () => now);
  assert.deepEqual([lag.take(), lag.take(), lag.take()], [0, 0, 0]);
  assert.equal(lag.take(), 500);
  assert.equal(lag.take(), 1000, "each further line waits behind the previous one");
  now = 10_000;
  assert.equal(lag.take(), 0, "refilled after a pause");
  assert.equal(new FakeLag(1, 0, () => 0).take() + new FakeLag(1, 0, () => 0).take(), 0, "rate 0: off");
});

function tempStore(): { store: SqliteStore; path: string; [Symbol.dispose](): void } {
  const dir = Deno.makeTempDirSync({ prefix: "osps-store-" });
  const path = `${dir}/chat.sqlite`;
  const store = SqliteStore.open(path);
  return { store, path, [Symbol.dispose]: () => Deno.removeSync(dir, { recursive: true }) };
}

Deno.test("SqliteStore keeps the store contract (nicknames, numbering, modes as deltas, channel life, reaping, history)", async () => {
  using t = tempStore();
  await storeContract(t.store);
  await t.store.close();
});

Deno.test("SqliteStore: the schema version is recorded, v1 is migrated, and a newer database is refused", () => {
  using t = tempStore();
  t.store.close();
  const db = new DatabaseSync(t.path);
  assert.equal(
    (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
    SCHEMA.length,
  );
  assert.equal((db.prepare("PRAGMA journal_mode").get() as { journal_mode: string }).journal_mode, "wal");
  db.exec("PRAGMA user_version = 99");
  db.close();
  assert.throws(() => SqliteStore.open(t.path), StoreError);
  // A version 1 database (channels never removed) comes up with its empty channels gone.
  const dir = Deno.makeTempDirSync({ prefix: "osps-store-v1-" });
  try {
    const v1 = new DatabaseSync(`${dir}/chat.sqlite`);
    v1.exec(SCHEMA[0]!.sqlite);
    v1.exec(`INSERT INTO channels VALUES ('#empty', '#empty', '', '', 0, 'ntk', 'zz', 0, 0, 3),
      ('#busy', '#Busy', 'hi', 'x', 1, 'nt', '', 0, 0, 2);
      INSERT INTO users VALUES ('ann', 'ann', '~u', 'h', 'r', '', '', '1.a', 0);
      INSERT INTO members VALUES ('#busy', 'ann', 1);
      INSERT INTO events VALUES ('#busy', 2, 500, 'PRIVMSG', 'ann!~u@h', '["hi"]'); PRAGMA user_version = 1;`);
    v1.close();
    const store = SqliteStore.open(`${dir}/chat.sqlite`);
    const db2 = new DatabaseSync(`${dir}/chat.sqlite`);
    const rows = db2.prepare("SELECT folded, users, last_at FROM channels").all();
    assert.deepEqual(rows.map((r) => ({ ...r })), [{ folded: "#busy", users: 1, last_at: 500 }]);
    db2.close();
    store.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("SqliteStore: a version 2 database (accounts) becomes version 3: registered channels stay, empty ones go with their bans", () => {
  const dir = Deno.makeTempDirSync({ prefix: "osps-store-v2-" });
  try {
    const v2 = new DatabaseSync(`${dir}/chat.sqlite`);
    v2.exec(SCHEMA[0]!.sqlite);
    v2.exec(SCHEMA[1]!.sqlite);
    v2.exec(`INSERT INTO channels VALUES ('#kept', '#Kept', 'kept topic', 'x', 1, 'nt', 'k', 0, 0, 4),
        ('#gone', '#gone', '', '', 0, 'nt', 'zz', 0, 0, 2);
      INSERT INTO accounts VALUES ('carol', 'carol', '', 'x', '', 1, '', 0);
      INSERT INTO channel_regs VALUES ('#kept', 'carol', 0);
      INSERT INTO bans VALUES ('#gone', 'x!*@*', 'op', 0), ('#kept', 'y!*@*', 'op', 0);
      PRAGMA user_version = 2;`);
    v2.close();
    SqliteStore.open(`${dir}/chat.sqlite`).close();
    const db = new DatabaseSync(`${dir}/chat.sqlite`);
    assert.equal((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version, 3);
    const rows = db.prepare("SELECT folded, registered, topic, key FROM channels").all().map((r) => ({
      ...r,
    }));
    assert.deepEqual(rows, [{ folded: "#kept", registered: 1, topic: "kept topic", key: "k" }]);
    db.exec("PRAGMA foreign_keys = ON"); // as the store runs
    const bans = db.prepare("SELECT channel FROM bans").all().map((r) => r["channel"]);
    assert.deepEqual(bans, ["#kept"], "the vanished channel's bans went with it");
    db.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** A local client that records the lines it was given. */
function localClient(nick: string, id = `me/${nick}`): LocalClient & { got: string[] } {
  const got: string[] = [];
  return {
    id,
    nick,
    joined: new Map(),
    got,
    caps: new Set(),
    deliver: (out) => void got.push(out.line(0)),
    deliverAll: (batch) => void got.push(...batch.outs.map((o) => o.line(0))),
    close: () => {},
  };
}

/** Joins `c` to `channel` through the hub the way the JOIN command does (pin, store, snapshot, join). */
async function hubJoin(
  hub: ChatHub,
  s: SqliteStore,
  c: LocalClient,
  a: Actor,
  channel: string,
): Promise<void> {
  const need = hub.pin(channel);
  const r = await s.join(channel, a, "", { createModes: "nt", snapshot: need });
  if (r.snapshot) hub.load(channel, r.snapshot);
  hub.joined(c, r.ev!);
  hub.unpin(channel);
  await hub.whenApplied(channel, r.ev!.seq);
}

Deno.test("ChatHub applies a channel's events by number; a gap is filled from the store", async () => {
  using t = tempStore();
  const s = t.store;
  const hub = new ChatHub(s);
  const me = localClient("me");
  const a = await newUser(s, "me");
  hub.register(me);
  await hubJoin(hub, s, me, a, "#o");
  const said = [];
  for (let i = 0; i < 4; i++) said.push((await s.appendMany([msg("#o", `m${i}`)]))[0]!);
  hub.channelEvent(said[2]!, "other/1"); // early: waits
  hub.channelEvent(said[1]!, "other/1"); // still waiting for m0
  assert.equal(me.got.length, 1, "only the JOIN so far");
  hub.channelEvent(said[0]!, "other/1");
  hub.channelEvent(said[1]!, "other/1"); // a duplicate is dropped
  await hub.whenApplied("#o", said[2]!.seq);
  assert.deepEqual(me.got.slice(1).map((l) => l.split(":").pop()), ["m0", "m1", "m2"]);
  hub.channelEvent((await s.appendMany([msg("#o", "m5")]))[0]!, "other/1");
  // m3 (seq 6) never came over the bus: read from the store once the wait is over.
  await waitFor("gap filled", () => me.got.length === 6, 5_000);
  assert.deepEqual(me.got.slice(4).map((l) => l.split(":").pop()), ["m3", "m5"]);
  // Resync reads what a lost bus message held, even with nothing after it.
  const lost = (await s.appendMany([msg("#o", "lost")]))[0]!;
  await hub.resync();
  await hub.whenApplied("#o", lost.seq);
  assert.equal(me.got.at(-1), `:x!~u@h PRIVMSG #o :lost`);
  assert.equal(hub.replica("#o")?.seq, lost.seq);
  hub.close();
  await s.close();
});

Deno.test("ChatHub: a QUIT or NICK reaches a member once, from the last channel they share", async () => {
  using t = tempStore();
  const s = t.store;
  const hub = new ChatHub(s);
  const [me, x] = [localClient("me"), await newUser(s, "x")];
  const a = await newUser(s, "me");
  for (const ch of ["#a", "#b"]) {
    await joinOk(s, ch, x);
    await hubJoin(hub, s, me, a, ch);
  }
  const renamed = await s.renameNick(x, "y");
  assert.ok(Array.isArray(renamed) && renamed.length === 2);
  for (const ev of renamed) hub.channelEvent(ev, "other/1");
  const quit = await s.quit({ nick: "y", sid: x.sid, source: "y!~u@h" }, "bye");
  for (const ev of quit!.events) hub.channelEvent(ev, "other/1");
  await hub.whenApplied("#b", quit!.events.at(-1)!.seq);
  assert.deepEqual(me.got.filter((l) => !l.includes(" JOIN ")), [":x!~u@h NICK y", ":y!~u@h QUIT :bye"]);
  assert.deepEqual([...hub.replica("#a")!.members.keys()], ["me"]);
  hub.close();
  await s.close();
});

Deno.test("ChatHub: PART then JOIN keeps the JOIN, even when the PART is applied after the JOIN arrived", async () => {
  using t = tempStore();
  const s = t.store;
  const hub = new ChatHub(s);
  const me = localClient("me");
  const [a, other] = [await newUser(s, "me"), await newUser(s, "other")];
  await joinOk(s, "#p", other);
  await hubJoin(hub, s, me, a, "#p");
  const gap = (await s.appendMany([msg("#p", "from another worker", "other!~u@h")]))[0]!; // not delivered yet
  const part = await s.part("#p", a, "brb");
  assert.ok("ev" in part);
  hub.channelEvent(part.ev, me.id); // waits for the gap
  hub.pin("#p");
  const rejoin = await s.join("#p", a, "", { createModes: "nt", snapshot: false });
  hub.joined(me, rejoin.ev!);
  hub.unpin("#p");
  hub.channelEvent(gap, "other/1");
  await hub.whenApplied("#p", rejoin.ev!.seq);
  assert.deepEqual(me.got.slice(-3).map((l) => l.split(" ")[1]), ["PRIVMSG", "PART", "JOIN"]);
  assert.equal(me.joined.get("#p"), rejoin.ev!.seq, "still in the channel");
  const after = (await s.appendMany([msg("#p", "after", "other!~u@h")]))[0]!;
  hub.channelEvent(after, "other/1");
  await hub.whenApplied("#p", after.seq);
  assert.equal(me.got.at(-1), ":other!~u@h PRIVMSG #p :after");
  hub.close();
  await s.close();
});

Deno.test("ChatHub delivers a burst a slice at a time: the event loop turns in between", async () => {
  using t = tempStore();
  const s = t.store;
  const hub = new ChatHub(s);
  const members = Array.from({ length: 300 }, (_, i) => localClient(`m${i}`));
  for (const m of members) await hubJoin(hub, s, m, await newUser(s, m.nick), "#big");
  const events = await s.appendMany(Array.from({ length: 3_000 }, (_, i) => msg("#big", `b${i}`)));
  const total = () => members.reduce((n, m) => n + m.got.length, 0);
  const before = total();
  for (const ev of events) hub.channelEvent(ev!, "other/1");
  const atNextTurn = await new Promise<number>((r) => setTimeout(() => r(total() - before), 0));
  assert.ok(atNextTurn < 300 * 3_000, `a timer ran before the burst was all delivered (${atNextTurn})`);
  await hub.whenApplied("#big", events.at(-1)!.seq);
  assert.equal(total() - before, 300 * 3_000, "then everything was delivered");
  hub.close();
  await s.close();
});

Deno.test("GroupCommit: a burst from several senders is stored in few transactions, numbered and handed on in order", async () => {
  using t = tempStore();
  await checkBurst(t.store, ["#one", "#two"]);
  await t.store.close();
});

Deno.test("GroupCommit: a failed transaction fails exactly its messages; the senders of other batches are served", async () => {
  using t = tempStore();
  const s = t.store;
  await joinOk(s, "#f", await newUser(s, "op"));
  // A real store failure: the database refuses one message (and so the whole transaction holding it).
  const db = new DatabaseSync(t.path);
  db.exec(
    "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.params LIKE '%boom%' " +
      "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
  );
  db.close();
  const handedOn: Committed[] = [];
  const commits = new GroupCommit(s, (batch) => handedOn.push(...batch));
  const [a, b, c] = [sender("w/a"), sender("w/b"), sender("w/c")];
  const first = commits.append(said("#f", "a1"), a); // the store was idle: committed at once, alone
  const failing = [commits.append(said("#f", "boom"), b), commits.append(said("#f", "c1"), c)]; // one batch
  const outcomes = await Promise.allSettled([first, ...failing]);
  assert.deepEqual(outcomes.map((o) => o.status), ["fulfilled", "rejected", "rejected"]);
  for (const o of outcomes.slice(1)) {
    assert.match(String((o as PromiseRejectedResult).reason), /refused by the test/);
  }
  assert.equal(commits.transactions, 2);
  const later = await Promise.all([commits.append(said("#f", "a2"), a), commits.append(said("#f", "c2"), c)]);
  assert.deepEqual(later.map((e) => e?.seq), [3, 4], "numbers continue after the failed batch without a gap");
  const stored = await s.eventsBetween("#f", 1, 100);
  assert.deepEqual(
    stored.map((e) => e.params[0]),
    ["a1", "a2", "c2"],
    "nothing of the failed batch is stored",
  );
  assert.deepEqual(handedOn.map((h) => h.ev.params[0]), ["a1", "a2", "c2"], "nor handed on");
  const gone = { origin: "w/d", live: () => false };
  await assert.rejects(commits.append(said("#f", "d1"), gone), CommitCancelledError);
  await s.close();
});
