/**
 * The group commit's burst, run against any {@link ChatStore} (the SQLite
 * and the PostgreSQL tests share it): several senders queue messages to two
 * channels within one turn; they must be stored in fewer transactions than
 * messages, numbered per channel in the order they were queued, and handed
 * on in that order.
 *
 * Run as a program (`group_commit_burst.ts postgres://…`) it checks a
 * PostgreSQL store: the PostgreSQL client reads environment variables the
 * test runner does not grant, so that test runs it as a child process.
 */
import assert from "node:assert/strict";
import type { ChannelEvent, ChatStore } from "../../mod/chat/chat_store.ts";
import { type Committed, GroupCommit, type Sender } from "../../mod/chat/group_commit.ts";
import { joinOk, newUser } from "./store_contract.ts";

/** A sender that stays live. */
export function sender(origin: string): Sender {
  return { origin, live: () => true };
}

/** A PRIVMSG to queue. */
export function said(channel: string, text: string, source = "x!~u@h") {
  return { channel, event: { kind: "PRIVMSG" as const, source, params: [text] } };
}

/** Creates `channels` (their JOIN is event 1), runs the burst, and checks it; `rounds` messages per sender and channel. */
export async function checkBurst(store: ChatStore, channels: [string, string], rounds = 10): Promise<void> {
  for (const c of channels) {
    await joinOk(store, c, await newUser(store, `op${c.slice(1)}${crypto.randomUUID().slice(0, 6)}`));
  }
  const handedOn: Committed[] = [];
  const commits = new GroupCommit(store, (batch) => handedOn.push(...batch));
  const senders = ["w/1", "w/2", "w/3"].map(sender);
  const queued: Array<{ channel: string; text: string; done: Promise<ChannelEvent | null> }> = [];
  for (let r = 0; r < rounds; r++) {
    for (const s of senders) {
      for (const channel of channels) {
        const text = `${s.origin} ${r}`;
        queued.push({ channel, text, done: commits.append(said(channel, text), s) });
      }
    }
  }
  const events = await Promise.all(queued.map((q) => q.done));
  assert.ok(
    commits.transactions < queued.length / 4,
    `${queued.length} messages in ${commits.transactions} transactions`,
  );
  for (const channel of channels) {
    const texts = queued.filter((q) => q.channel === channel).map((q) => q.text);
    const mine = events.filter((e) => e?.channel === channel);
    assert.deepEqual(mine.map((e) => e!.params[0]), texts, `${channel}: numbered in the order queued`);
    assert.deepEqual(
      mine.map((e) => e!.seq),
      texts.map((_, i) => i + 2),
      `${channel}: 2, 3, … after its JOIN`,
    );
    const stored = await store.eventsBetween(channel, 1, Number.MAX_SAFE_INTEGER);
    assert.deepEqual(stored.map((e) => [e.seq, e.params[0]]), mine.map((e) => [e!.seq, e!.params[0]]));
  }
  assert.deepEqual(handedOn.map((c) => c.ev), events, "handed on once each, in the order queued");
  assert.deepEqual(
    handedOn.map((c) => c.origin),
    queued.map((_, i) => senders[Math.floor(i / 2) % 3]!.origin),
  );
}

if (import.meta.main) {
  const { PostgresStore } = await import("../../mod/chat/postgres_store.ts");
  const store = await PostgresStore.open(Deno.args[0]!);
  try {
    await checkBurst(store, ["#burst-a", "#burst-b"]);
  } finally {
    await store.close();
  }
}
