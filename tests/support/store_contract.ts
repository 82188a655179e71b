/**
 * What every {@link ChatStore} must do, run against any of them: the SQLite
 * tests call {@link storeContract} in-process; run as a program
 * (`store_contract.ts postgres://…`) it checks a PostgreSQL store (the
 * PostgreSQL client reads environment variables the test runner does not
 * grant, so that test runs it as a child process).
 *
 * Each check starts from a fresh set of names, so the checks share one
 * database.
 */
import assert from "node:assert/strict";
import type { Actor, ChannelEvent, ChatStore, ChatUser } from "../../mod/chat/chat_store.ts";
import { parseModes } from "../../mod/chat/channel_modes.ts";

let unique = 0;

/** A user held by a session of owner `owner`, registered in the store. */
export async function newUser(store: ChatStore, nick: string, owner = "1.t"): Promise<Actor> {
  const sid = `${owner}/${++unique}`;
  const u: ChatUser = {
    nick,
    user: "~u",
    host: "h",
    realname: "r",
    away: "",
    modes: "",
    owner,
    sid,
    signonAt: 0,
  };
  assert.equal(await store.claimNick(u), true, `claim ${nick}`);
  return { nick, sid, source: `${nick}!~u@h` };
}

/** Joins and returns the JOIN event (fails the test otherwise). */
export async function joinOk(store: ChatStore, channel: string, a: Actor, key = ""): Promise<ChannelEvent> {
  const r = await store.join(channel, a, key, { createModes: "nt", snapshot: false });
  assert.ok(r.ev, `${a.nick} joins ${channel}: ${r.refused ?? "already in"}`);
  return r.ev;
}

/** A name no earlier check used. */
function fresh(prefix: string): string {
  return `${prefix}${++unique}`;
}

const msg = (channel: string, text: string, source = "x!~u@h") => ({
  channel,
  event: { kind: "PRIVMSG" as const, source, params: [text] },
});

/** Nicknames, sessions, renames and QUIT events. */
async function users(store: ChatStore): Promise<void> {
  const ann = await newUser(store, fresh("Ann["));
  assert.equal(
    await store.claimNick({ ...(await store.user(ann.nick))!, nick: ann.nick.replace("[", "{") }),
    false,
  );
  const bob = await newUser(store, fresh("bob"));
  assert.equal(await store.renameNick(bob, ann.nick.toUpperCase()), "taken", "rename onto a taken nickname");
  assert.equal(
    await store.renameNick({ ...bob, sid: "other/1" }, fresh("x")),
    "gone",
    "only its session renames",
  );
  const c = fresh("#Room");
  await joinOk(store, c, ann);
  await joinOk(store, c, bob);
  const to = fresh("bobby");
  const nick = await store.renameNick(bob, to);
  assert.ok(
    Array.isArray(nick) && nick.length === 1 && nick[0]!.kind === "NICK" && nick[0]!.params[0] === to,
  );
  const bobby = { nick: to, sid: bob.sid, source: `${to}!~u@h` };
  assert.equal(
    await store.quit({ ...bobby, sid: "stale/1" }, "x"),
    null,
    "a stale session cannot QUIT the nick",
  );
  const gone = await store.quit(bobby, "bye");
  assert.deepEqual(gone?.events.map((e) => [e.kind, e.params[0], e.channel]), [["QUIT", "bye", c]]);
  assert.equal(await store.user(to), null);
  const r = await store.join(c, bobby, "", { createModes: "nt", snapshot: false });
  assert.equal(r.refused, "gone", "a JOIN after its session ended adds no member");
  assert.deepEqual((await store.members(c)).map((m) => m.nick), [ann.nick]);
}

/** Numbering, snapshots, keys, limits, refusals, and RFC 2812 channel life. */
async function channels(store: ChatStore): Promise<void> {
  const [op, b, c] = [
    await newUser(store, fresh("op")),
    await newUser(store, fresh("b")),
    await newUser(store, fresh("c")),
  ];
  const ch = fresh("#Life");
  const first = await store.join(ch, op, "", { createModes: "nt", snapshot: true });
  assert.equal(first.ev?.seq, 1);
  assert.equal(first.ev?.meta?.bits, 1, "the first member is operator");
  assert.deepEqual(first.snapshot?.members, [], "the snapshot is the channel just before the JOIN");
  const second = await store.join(ch, b, "", { createModes: "nt", snapshot: true });
  assert.deepEqual(second.snapshot?.members.map((m) => [m.nick, m.bits]), [[op.nick, 1]]);
  assert.equal(second.snapshot?.seq, 1);
  assert.deepEqual(
    await store.join(ch, b, "", { createModes: "nt", snapshot: false }),
    {},
    "already a member",
  );
  const mode = await store.changeModes(ch, op, parseModes("+kl", ["sesame", "2"]).ops);
  assert.ok("ev" in mode && mode.ev);
  assert.deepEqual(mode.ev.params, ["+kl", "sesame", "2"]);
  assert.equal((await store.join(ch, c, "nope", { createModes: "nt", snapshot: false })).refused, "bad-key");
  assert.equal((await store.join(ch, c, "sesame", { createModes: "nt", snapshot: false })).refused, "full");
  assert.deepEqual(await store.kick(ch, b, op.nick, "x"), { refused: "not-op" });
  assert.deepEqual(await store.kick(ch, op, c.nick, "x"), { refused: "no-victim" });
  assert.deepEqual(await store.part(ch, c, undefined), { refused: "not-member" });
  assert.deepEqual(await store.part(fresh("#none"), c, undefined), { refused: "no-channel" });
  const big = await store.changeModes(ch, op, parseModes("+l", ["2147483647"]).ops);
  assert.ok("ev" in big && big.ev, "the largest limit is kept exactly");
  assert.equal((await store.channel(ch))?.limit, 2147483647);
  const kicked = await store.kick(ch, op, b.nick, "out");
  assert.ok("ev" in kicked && kicked.ev.params[0] === b.nick);
  const left = await store.part(ch, op, "bye");
  assert.ok("ev" in left && left.ev.seq === 6);
  assert.equal(await store.channel(ch), null, "an unregistered channel vanishes with its last member");
  const again = await store.join(ch, c, "", { createModes: "nt", snapshot: true });
  assert.equal(again.ev?.seq, 7, "numbering continues after the history of the earlier channel");
  assert.equal(again.snapshot?.info.key, "", "its key is gone with it");
  assert.equal(again.ev?.meta?.bits, 1, "and the new first member is operator");
  assert.deepEqual((await store.eventsBetween(ch, 0, 100)).map((e) => e.seq), [1, 2, 3, 4, 5, 6, 7]);
  // Registered (ChanServ's hook): kept, with topic and modes, when empty.
  assert.equal(await store.setRegistered(ch, true), true);
  assert.ok("ev" in await store.setTopic(ch, c, "kept"));
  assert.ok("ev" in await store.changeModes(ch, c, parseModes("+s", []).ops));
  assert.ok("ev" in await store.part(ch, c, undefined));
  const kept = await store.channel(ch);
  assert.deepEqual([kept?.topic, kept?.modes, kept?.users, kept?.registered], ["kept", "nst", 0, true]);
  assert.equal(await store.setRegistered(ch, false), true);
  assert.equal(await store.channel(ch), null, "unregistered while empty: gone");
}

/** MODE applies a delta to the state as it is: two operators never undo each other's change. */
async function modes(store: ChatStore): Promise<void> {
  const [a, b] = [await newUser(store, fresh("a")), await newUser(store, fresh("b"))];
  const ch = fresh("#modes");
  await joinOk(store, ch, a);
  await joinOk(store, ch, b);
  const oped = await store.changeModes(ch, a, parseModes("+o", [b.nick.toUpperCase()]).ops);
  assert.ok(
    "ev" in oped && oped.ev?.params.join(" ") === `+o ${b.nick}`,
    "a prefix names the member as shown",
  );
  // Both read "+nt" before either wrote: each change still lands.
  await Promise.all([
    store.changeModes(ch, a, parseModes("+s", []).ops),
    store.changeModes(ch, b, parseModes("+k", ["key"]).ops),
  ]);
  const info = await store.channel(ch);
  assert.deepEqual([info?.modes, info?.key], ["nst", "key"]);
  const none = await store.changeModes(ch, a, parseModes("+st", []).ops);
  assert.deepEqual(none, { ev: null, missing: [] }, "what is already so changes nothing");
  const miss = await store.changeModes(ch, a, parseModes("+v", ["ghost"]).ops);
  assert.deepEqual(miss, { ev: null, missing: ["ghost"] });
}

/** Owners, leases and reaping a slice at a time; only one reaper gets each user. */
async function owners(store: ChatStore): Promise<void> {
  const owner = fresh("9.");
  await store.addOwner(owner, "host:1", 9);
  const ch = fresh("#reap");
  const keeper = await newUser(store, fresh("keeper"));
  await joinOk(store, ch, keeper);
  for (let i = 0; i < 5; i++) await joinOk(store, ch, await newUser(store, fresh("r"), owner));
  const [x, y] = await Promise.all([store.reapOwner(owner, "gone", 3), store.reapOwner(owner, "gone", 3)]);
  const rest = await store.reapOwner(owner, "gone", 3);
  const all = [...x, ...y, ...rest];
  assert.equal(all.length, 5, "every user once");
  assert.equal(new Set(all.map((d) => d.nick)).size, 5);
  assert.ok(all.every((d) => d.events.length === 1 && d.events[0]!.kind === "QUIT"));
  assert.equal(await store.touchOwner(owner), false, "a reaped owner's renewal says so");
  assert.ok(!(await store.owners()).some((l) => l.owner === owner));
  assert.deepEqual((await store.members(ch)).map((m) => m.nick), [keeper.nick]);
}

/** Event times strictly increase per channel; history pages by time or id and skips nothing. */
async function history(store: ChatStore): Promise<void> {
  const a = await newUser(store, fresh("h"));
  const ch = fresh("#hist");
  await joinOk(store, ch, a);
  const burst = await store.appendMany(Array.from({ length: 60 }, (_, i) => msg(ch, `m${i}`)));
  const at = burst.map((e) => e!.at);
  assert.ok(at.every((t, i) => i === 0 || t > at[i - 1]!), "one transaction, 60 distinct increasing times");
  const texts = (evs: ChannelEvent[]) => evs.map((e) => e.params[0]);
  assert.deepEqual(texts(await store.history(ch, { limit: 3, newest: true })), ["m57", "m58", "m59"]);
  // LATEST after a point: the newest messages after it, not before.
  const after = await store.history(ch, { after: { seq: burst[50]!.seq }, limit: 3, newest: true });
  assert.deepEqual(texts(after), ["m57", "m58", "m59"]);
  const afterTime = await store.history(ch, { after: { at: burst[57]!.at }, limit: 10, newest: true });
  assert.deepEqual(texts(afterTime), ["m58", "m59"]);
  // Paging back by time, 7 at a time: every message exactly once.
  const seen: string[] = [];
  let before: { at: number } | undefined;
  for (;;) {
    const page = await store.history(ch, { ...(before ? { before } : {}), limit: 7, newest: true });
    if (page.length === 0) break;
    seen.unshift(...texts(page) as string[]);
    before = { at: page[0]!.at };
  }
  assert.deepEqual(seen, burst.map((e) => e!.params[0]));
  const between = await store.history(ch, {
    after: { seq: burst[10]!.seq },
    before: { seq: burst[14]!.seq },
    limit: 10,
    newest: false,
  });
  assert.deepEqual(texts(between), ["m11", "m12", "m13"]);
  const last = await store.lastActivity([ch, fresh("#quiet")], 0, Number.MAX_SAFE_INTEGER);
  assert.deepEqual([...last], [[ch, burst[59]!.at]]);
  // The last stored number of each channel that exists, by the name asked (a PING's barrier).
  const seqs = await store.lastSeqs([ch.toUpperCase(), fresh("#none")]);
  assert.deepEqual([...seqs], [[ch.toUpperCase(), burst[59]!.seq]]);
  // Retention by count keeps the newest; by age removes the old.
  const kept = async () => (await store.eventsBetween(ch, 0, 1000)).length;
  for (let i = 0; i < 100 && await kept() > 10; i++) {
    await store.prune({ maxAgeMs: 0, maxPerChannel: 10 }, 1000);
  }
  assert.equal(await kept(), 10);
  assert.deepEqual(texts(await store.history(ch, { limit: 100, newest: true })).at(0), "m50");
  await new Promise((r) => setTimeout(r, 100)); // a burst's times run ahead of the clock, 1 ms per event
  for (let i = 0; i < 100 && await kept() > 0; i++) {
    await store.prune({ maxAgeMs: 5, maxPerChannel: 0 }, 1000);
  }
  assert.equal(await kept(), 0, "older than the age limit: removed");
}

/** LIST pages through channels in name order, with user-count filters. */
async function listing(store: ChatStore): Promise<void> {
  const tag = fresh("#lst");
  const a = await newUser(store, fresh("l")), b = await newUser(store, fresh("l"));
  for (const n of ["a", "b", "c", "d", "e"]) await joinOk(store, `${tag}${n}`, a);
  await joinOk(store, `${tag}c`, b);
  const names: string[] = [];
  for (let after = tag;;) {
    const page = await store.listChannels({ after, limit: 2 });
    names.push(...page.map((i) => i.name).filter((n) => n.startsWith(tag)));
    if (page.length < 2 || !page[page.length - 1]!.name.startsWith(tag)) break;
    after = page[page.length - 1]!.name.toLowerCase();
  }
  assert.deepEqual(names, ["a", "b", "c", "d", "e"].map((n) => `${tag}${n}`));
  const busy = await store.listChannels({ after: tag, limit: 100, minUsers: 1 });
  assert.deepEqual(busy.filter((i) => i.name.startsWith(tag)).map((i) => [i.name, i.users]), [[
    `${tag}c`,
    2,
  ]]);
}

/**
 * Changes that lock a channel and its members, from many sessions at once
 * (PART, KICK, MODE +o/+v, NICK, QUIT, messages): none may deadlock or fail.
 */
async function concurrency(store: ChatStore): Promise<void> {
  const ch = [fresh("#cca"), fresh("#ccb")];
  const op = await newUser(store, fresh("cop"));
  for (const c of ch) await joinOk(store, c, op);
  const others: Actor[] = [];
  for (let i = 0; i < 8; i++) {
    const u = await newUser(store, fresh("cu"));
    for (const c of ch) await joinOk(store, c, u);
    others.push(u);
  }
  await Promise.all(others.map(async (u, i) => {
    for (let round = 0; round < 5; round++) {
      await store.changeModes(ch[round % 2]!, op, parseModes(i % 2 ? "+v-o" : "+o-v", [u.nick, u.nick]).ops);
      await store.appendMany([msg(ch[0]!, "x"), msg(ch[1]!, "y")]);
      if (round === 2 && i % 2 === 0) await store.kick(ch[1]!, op, u.nick, "k");
    }
    if (i % 3 === 0) await store.part(ch[0]!, u, "p");
    else if (i % 3 === 1) await store.quit(u, "q");
    else await store.renameNick(u, `${u.nick}_`);
  }));
  // A KICK, a PART and a NICK of one user at once (the victim renames while an op kicks it and its own PART is on
  // its way with the nick it had): whatever order they take, no member stays that the channel's events say left.
  await Promise.all(Array.from({ length: 8 }, async () => {
    const u = await newUser(store, fresh("cr"));
    for (const c of ch) await joinOk(store, c, u);
    await Promise.all([
      store.kick(ch[1]!, op, u.nick, "k"),
      store.renameNick(u, `${u.nick}_`),
      store.part(ch[0]!, u, "p"),
    ]);
  }));
  for (const c of ch) {
    const evs = await store.eventsBetween(c, 0, 10_000);
    assert.deepEqual(evs.map((e) => e.seq), evs.map((_, i) => i + 1), `${c}: numbered without gaps`);
    const members = (await store.members(c)).map((m) => m.nick.toLowerCase()).sort();
    assert.deepEqual(members, replayMembers(evs), `${c}: its members are those its events leave in it`);
  }
}

/** The members a channel's events leave in it, from its first event (folded nicks, sorted). */
function replayMembers(evs: readonly ChannelEvent[]): string[] {
  const nickOf = (source: string) => source.split("!")[0]!.toLowerCase();
  const in_ = new Set<string>();
  for (const e of evs) {
    const who = nickOf(e.source);
    if (e.kind === "JOIN") in_.add(who);
    else if (e.kind === "PART" || e.kind === "QUIT") in_.delete(who);
    else if (e.kind === "KICK") in_.delete(e.params[0]!.toLowerCase());
    else if (e.kind === "NICK" && in_.delete(who)) in_.add(e.params[0]!.toLowerCase());
  }
  return [...in_].sort();
}

/** Runs every check. */
export async function storeContract(store: ChatStore): Promise<void> {
  await users(store);
  await channels(store);
  await modes(store);
  await owners(store);
  await history(store);
  await listing(store);
  await concurrency(store);
}

if (import.meta.main) {
  const { PostgresStore } = await import("../../mod/chat/postgres_store.ts");
  const store = await PostgresStore.open(Deno.args[0]!);
  try {
    await storeContract(store);
  } finally {
    await store.close();
  }
}
