/**
 * The chat under failure: a worker killed with members, a client that
 * stops reading, a flooder, a dispatcher restart, and every process killed
 * then started again on the same data.
 */
import assert from "node:assert/strict";
import { assertNothingLeft, rolesOf, startInstance, waitFor, waitReplaced } from "./harness.ts";
import { LibClient, RawIrc } from "./support/irc.ts";
import { SqliteStore } from "../mod/chat/sqlite_store.ts";
import {
  chatFlags,
  clientsOnEveryWorker,
  membersOnTwoWorkers,
  newChatPlace,
  slotOf,
  withChat,
} from "./support/chat_instance.ts";

Deno.test("chat: kill -9 of a worker: its members' QUIT reaches the others, their nicknames are free", async () => {
  await withChat({ workers: 2 }, async (inst, { ircPort }) => {
    const [one, two] = await clientsOnEveryWorker(ircPort, "k");
    const [victim, witness] = [one!, two!.client];
    await victim.client.join("#room");
    await witness.join("#room");
    await victim.client.waitLine("witness joined", (m) => m.command === "JOIN" && m.nick === witness.nick);
    const slot = slotOf(victim.owner);
    const pid = (await inst.status()).workers[slot - 1]!.pid;
    Deno.kill(pid, "SIGKILL");
    const quit = await witness.waitLine(
      "the victim's QUIT",
      (m) => m.command === "QUIT" && m.nick === victim.client.nick,
    );
    assert.match(quit.params[0]!, /Connection lost/);
    await victim.client.closed();
    // Gone from the channel and the nickname free, on the surviving worker and on the replacement.
    witness.seen.length = 0;
    witness.raw("NAMES #room");
    const names = await witness.waitLine("names", (m) => m.command === "353" && m.line.includes("#room"));
    assert.ok(!names.params[3]!.split(" ").some((n) => n.replace("@", "") === victim.client.nick));
    await waitReplaced(inst, slot, pid);
    const again = await LibClient.connect(ircPort, victim.client.nick);
    assert.ok(again.registered, "the dead client's nickname can be taken again");
    await again.quit();
    await witness.quit();
  });
});

for (const io of ["epoll", "deno"]) {
  Deno.test(`chat (--irc-io ${io}): a client that does not read is cut off at its send queue cap; the others get everything`, async () => {
    const flags = [`--irc-io=${io}`, "--irc-flood-rate=0", "--irc-sendq-bytes=65536"];
    await withChat({ workers: 2, flags }, async (_inst, { ircPort }) => {
      const sender = await RawIrc.connect(ircPort);
      await sender.register("sender");
      const reader = await LibClient.connect(ircPort, "reader");
      await sender.send("JOIN #flood");
      await reader.join("#flood");
      const sleeper = await RawIrc.connect(ircPort, false); // never reads a byte
      await sleeper.send("NICK sleeper", "USER s 0 * :s", "JOIN #flood");
      await reader.waitLine("sleeper joined", (m) => m.command === "JOIN" && m.nick === "sleeper");
      const text = "z".repeat(400);
      let sent = 0;
      while (!reader.seen.some((m) => m.command === "QUIT" && m.nick === "sleeper") && sent < 40_000) {
        await sender.send(...Array.from({ length: 200 }, (_, i) => `PRIVMSG #flood :${sent + i} ${text}`));
        sent += 200;
        // Paced by the honest reader: it keeps up, so only the sleeper's queue grows.
        await waitFor(`reader got ${sent}`, () => reader.lines("PRIVMSG").length === sent, 30_000);
      }
      const quit = await reader.waitLine(
        "sleeper cut off",
        (m) => m.command === "QUIT" && m.nick === "sleeper",
      );
      assert.match(quit.params[0]!, /SendQ exceeded/);
      await waitFor(`reader got all ${sent}`, () => reader.lines("PRIVMSG").length === sent, 30_000);
      await sleeper.close();
      await sender.close();
      await reader.quit();
    });
  });
}

Deno.test("chat: flood control delays a flooder's lines (never drops them) while others are served first", async () => {
  await withChat(
    { workers: 1, flags: ["--irc-flood-burst=3", "--irc-flood-rate=20"] },
    async (_inst, { ircPort }) => {
      const flooder = await RawIrc.connect(ircPort);
      await flooder.register("flooder");
      const honest = await RawIrc.connect(ircPort);
      await honest.register("honest");
      await flooder.send(...Array.from({ length: 40 }, (_, i) => `PING :f${i}`));
      await flooder.waitFor("first pongs", (m) => m.command === "PONG" && m.params[1] === "f0");
      await honest.send("PING :h");
      await honest.waitFor("honest pong", (m) => m.command === "PONG" && m.params[1] === "h");
      const answered = flooder.seen.filter((m) => m.command === "PONG").length;
      assert.ok(
        answered < 40,
        `the honest client was answered before the flooder's backlog (${answered} of 40)`,
      );
      await flooder.waitFor("every flooder line, late", (m) => m.command === "PONG" && m.params[1] === "f39");
      assert.equal(flooder.seen.filter((m) => m.command === "PONG").length, 40);
      assert.equal(flooder.eof, false, "delayed, not disconnected");
      await flooder.close();
      await honest.close();
    },
  );
});

Deno.test("chat: a dispatcher restart drops no chat session; what was said meanwhile arrives", async () => {
  await withChat({ workers: 2 }, async (inst, { ircPort }) => {
    const [one, two] = await membersOnTwoWorkers(ircPort, "d", "#d");
    const [a, b] = [one!.client, two!.client];
    const dpid = (await inst.status()).dispatcher.pid;
    Deno.kill(dpid, "SIGKILL");
    a.client.say("#d", "while the dispatcher was down");
    await waitFor("dispatcher back", async () => {
      const s = await inst.status();
      return s.dispatcher.pid !== dpid && s.dispatcher.state === "ready";
    });
    await b.waitLine("message across the restart", (m) => m.params[1] === "while the dispatcher was down");
    b.client.say("#d", "after");
    await a.waitLine("and back", (m) => m.params[1] === "after");
    await a.quit();
    await b.quit();
  });
});

Deno.test("chat: registered channels keep topic and modes across kill -9 of every process and a restart on another port; unregistered ones vanish, their history stays", async () => {
  const place = newChatPlace();
  const runDir = `${Deno.makeTempDirSync({ prefix: "osps-chat-run-" })}/run`;
  const start = () => startInstance({ workers: 2, runDir, port, flags: chatFlags(place) });
  let port = 0;
  try {
    const first = await startInstance({ workers: 2, runDir, flags: chatFlags(place) });
    port = first.port;
    const a = await RawIrc.connect(place.ircPort);
    await a.register("keeper");
    await a.send("JOIN #keep", "TOPIC #keep :kept topic", "MODE #keep +k sesame");
    await a.send("JOIN #temp", "TOPIC #temp :temp topic", "MODE #temp +k zz", "PRIVMSG #temp :said in temp");
    for (let i = 1; i <= 3; i++) await a.send(`PRIVMSG #keep :message ${i}`);
    const b = await LibClient.connect(place.ircPort, "witness");
    b.raw("JOIN #keep sesame");
    b.raw("CHATHISTORY LATEST #keep * 10");
    // Acknowledged: another client has seen message 3.
    await b.waitLine("message 3", (m) => m.command === "PRIVMSG" && m.params[1] === "message 3");
    // #keep is registered (the hook ChanServ uses); #temp is not.
    const hook = SqliteStore.open(`${place.dataDir}/chat.sqlite`);
    assert.equal(await hook.setRegistered("#keep", true), true);
    await hook.close();
    first.process.kill("SIGKILL"); // the watchdog; its children die with it (PR_SET_PDEATHSIG)
    await first.exited();
    await waitFor("every role gone", () => rolesOf(runDir).length === 0);
    await a.close();
    await b.closed();

    const second = await start();
    const c = await RawIrc.connect(place.ircPort);
    await c.register("keeper"); // the nickname of a dead instance is free again
    await c.send("JOIN #keep");
    await c.waitFor("475 without the key", (m) => m.command === "475");
    await c.send("CAP REQ :batch", "JOIN #keep sesame", "CHATHISTORY LATEST #keep * 10");
    await c.waitFor("topic", (m) => m.command === "332" && m.params[2] === "kept topic");
    await c.waitFor("history", (m) => m.command === "BATCH" && m.params[0]!.startsWith("-"));
    const history = c.seen.filter((m) => m.command === "PRIVMSG").map((m) => m.params[1]);
    assert.deepEqual(history, ["message 1", "message 2", "message 3"]);
    // #temp vanished with its last member (RFC 2812): no key, no topic, a new operator; its history stays.
    await c.send("JOIN #temp", "CHATHISTORY LATEST #temp * 10");
    await c.waitFor("op of a new #temp", (m) => m.command === "353" && m.params[3] === "@keeper");
    await c.waitFor("its history", (m) => m.command === "PRIVMSG" && m.params[1] === "said in temp");
    assert.ok(!c.seen.some((m) => m.command === "332" && m.params[1] === "#temp"), "no topic kept");
    await c.send("PRIVMSG #keep :message 4");
    await c.send("QUIT");
    await c.close();
    assert.equal(await second.stop(), 0);

    // Another dispatcher port, the same data dir: the same chat (the database is named by the data dir).
    const third = await startInstance({ workers: 2, flags: chatFlags(place) });
    assert.notEqual(third.port, port);
    const d = await RawIrc.connect(place.ircPort);
    await d.register("reader");
    await d.send("JOIN #keep sesame", "CHATHISTORY LATEST #keep * 1");
    await d.waitFor(
      "message 4 after a stop/start",
      (m) => m.command === "PRIVMSG" && m.params[1] === "message 4",
    );
    await d.close();
    assert.equal(await third.stop(), 0);
    await assertNothingLeft(third);
    assert.equal(Deno.statSync(place.dataDir).mode! & 0o777, 0o700, "the data dir is 0700");
  } finally {
    Deno.removeSync(place.dataDir, { recursive: true });
    Deno.removeSync(runDir.slice(0, runDir.lastIndexOf("/")), { recursive: true });
  }
});
