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
import { waitFor } from "./harness.ts";
import { CommitCancelledError, type Committed, GroupCommit } from "../mod/chat/group_commit.ts";
import { checkBurst, said, sender } from "./support/group_commit_burst.ts";

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

const user = (nick: string, owner = "1.a") => ({
  nick,
  user: "~u",
  host: "h",
  realname: "r",
  away: "",
  modes: "",
  owner,
  signonAt: 0,
});

Deno.test("SqliteStore: nicknames unique by folded name; events numbered per channel; a reap is told once", async () => {
  using t = tempStore();
  const s = t.store;
  assert.equal(await s.claimNick(user("Ann[")), true);
  assert.equal(await s.claimNick(user("ann{", "2.b")), false);
  assert.equal(await s.claimNick(user("bob", "2.b")), true);
  assert.equal(await s.renameNick("bob", "ANN["), null, "rename onto a taken nickname");
  const j1 = await s.join("#Room", "Ann[!~u@h", "Ann[", "", "nt");
  const j2 = await s.join("#room", "bob!~u@h", "bob", "", "nt");
  assert.ok(j1 && typeof j1 === "object" && j2 && typeof j2 === "object");
  assert.deepEqual([j1.seq, j2.seq, j2.channel], [1, 2, "#Room"]);
  assert.equal(await s.join("#room", "bob!~u@h", "bob", "", "nt"), null, "already a member");
  assert.deepEqual(await s.members("#ROOM"), [
    { nick: "Ann[", op: true, voice: false, user: "~u", host: "h" },
    { nick: "bob", op: false, voice: false, user: "~u", host: "h" },
  ]);
  const m = await s.append("#room", { kind: "PRIVMSG", source: "bob!~u@h", params: ["hi"] });
  assert.equal(m?.seq, 3);
  assert.deepEqual((await s.eventsBetween("#room", 1, 3)).map((e) => e.seq), [2]);
  assert.deepEqual((await s.history("#room", { limit: 10 })).map((e) => e.params[0]), ["hi"]);
  await s.append("#room", { kind: "MODE", source: "x", params: ["+k", "key"] }, {
    modes: { modes: "nt", key: "key", limit: 0 },
  });
  assert.equal(await s.join("#room", "c!~u@h", "c", "nokey", "nt"), "bad-key");
  await s.addOwner("2.b", "host:1", 2);
  assert.deepEqual(
    await s.deadOwners("host:1", 2, "2.c", 60_000),
    ["2.b"],
    "a predecessor in the slot is dead",
  );
  const reaped = await s.reapOwner("2.b");
  assert.deepEqual(reaped, [{ nick: "bob", source: "bob!~u@h", channels: ["#Room"] }]);
  assert.deepEqual(await s.reapOwner("2.b"), [], "a second reaper gets nobody");
  assert.equal(await s.user("bob"), null);
  await s.close();
});

Deno.test("SqliteStore: the schema version is recorded, and a newer database is refused", () => {
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
});

Deno.test("ChatHub delivers a channel's events by number; a gap is filled from the store", async () => {
  using t = tempStore();
  const s = t.store;
  const hub = new ChatHub(s);
  const got: string[] = [];
  const me: LocalClient = {
    id: "me/1",
    nick: "me",
    joined: new Map(),
    caps: new Set(),
    echo: false,
    deliver: (out) => got.push(out.line(0)),
    close: () => {},
  };
  await s.claimNick(user("me"));
  const join = await s.join("#o", "me!~u@h", "me", "", "nt");
  assert.ok(join && typeof join === "object");
  hub.register(me);
  hub.joined(me, join);
  const said = [];
  for (let i = 0; i < 4; i++) {
    said.push((await s.append("#o", { kind: "PRIVMSG", source: "x!u@h", params: [`m${i}`] }))!);
  }
  hub.channelEvent(said[2]!, "other/1"); // early: waits
  hub.channelEvent(said[1]!, "other/1"); // still waiting for m0
  assert.equal(got.length, 1, "only the JOIN so far");
  hub.channelEvent(said[0]!, "other/1");
  hub.channelEvent(said[1]!, "other/1"); // a duplicate is dropped
  assert.deepEqual(got.slice(1).map((l) => l.split(":").pop()), ["m0", "m1", "m2"]);
  hub.channelEvent((await s.append("#o", { kind: "PRIVMSG", source: "x!u@h", params: ["m5"] }))!, "other/1");
  // m3 (seq 6) never came over the bus: read from the store once the wait is over.
  await waitFor("gap filled", () => got.length === 6, 5_000);
  assert.deepEqual(got.slice(4).map((l) => l.split(":").pop()), ["m3", "m5"]);
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
  await s.join("#f", "op!~u@h", "op", "", "nt");
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
