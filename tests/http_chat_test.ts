/**
 * The chat over HTTP against a live instance with chat on: an IRC user on
 * TCP, an IRC user over the WebSocket at /v1/irc and an HTTP reader of the
 * channel's event stream are in one chat — the same events, in the same
 * order, with the same ids as CHATHISTORY's msgid — and a reader that
 * reconnects with Last-Event-ID misses nothing. Every REST answer is checked
 * against the OpenAPI document.
 */
import assert from "node:assert/strict";
import { freePorts, waitFor } from "./harness.ts";
import { withChat } from "./support/chat_instance.ts";
import { LibClient } from "./support/irc.ts";
import { ApiContract } from "./support/openapi_contract.ts";
import { SseReader, WsIrc } from "./support/http_clients.ts";

Deno.test("an IRC user, a WebSocket IRC user and an HTTP event stream share one channel; Last-Event-ID resumes without a gap", async () => {
  const httpPort = freePorts(1);
  const base = `http://127.0.0.1:${httpPort}`;
  await withChat(
    { workers: 2, flags: [`--http-port=${httpPort}`, "--irc-flood-rate=0"] },
    async (_inst, place) => {
      const api = await ApiContract.load(base);
      const get = async (path: string) => {
        const res = await fetch(`${base}${path}`);
        return { status: res.status, body: await api.check("GET", path, res) as Record<string, unknown> };
      };
      assert.deepEqual((await get("/v1/channels")).body, { channels: [] });
      assert.equal((await get("/v1/channels/room")).status, 404);

      const alice = await LibClient.connect(place.ircPort, "alice");
      await alice.join("#room");
      const bob = await WsIrc.connect(base, "bob", [
        "draft/chathistory",
        "server-time",
        "batch",
        "message-tags",
      ]);
      await bob.join("#room");
      await alice.waitLine("bob joins", (m) => m.command === "JOIN" && m.nick === "bob");

      const url = `${base}/v1/channels/%23room/events`;
      const reader = await SseReader.open(url);
      api.checkHead("GET", "/v1/channels/%23room/events", reader.response);
      alice.raw("PRIVMSG #room :one from TCP");
      bob.send("PRIVMSG #room :two from WebSocket");
      await bob.waitLine("alice's message", (l) => l.includes("PRIVMSG #room :one from TCP"));
      await alice.waitLine(
        "bob's message",
        (m) => m.command === "PRIVMSG" && m.params[1] === "two from WebSocket",
      );
      await reader.waitEvent("two", (e) => e.data["text"] === "two from WebSocket");
      const texts = reader.events.filter((e) => e.event === "privmsg").map((e) => e.data["text"]);
      assert.deepEqual(texts.toSorted(), ["one from TCP", "two from WebSocket"]);

      // REST: the channel, its members, its messages with the ids the stream gave.
      const room = (await get("/v1/channels/room")).body;
      assert.equal(room["name"], "#room");
      assert.deepEqual(
        (room["members"] as Array<{ nick: string }>).map((m) => m.nick).sort(),
        ["alice", "bob"],
      );
      const list = (await get("/v1/channels")).body;
      assert.deepEqual(list, { channels: [{ name: "#room", topic: "", users: 2, modes: "nt" }] });
      const history = (await get("/v1/channels/%23room/messages?limit=10")).body["messages"] as Array<
        Record<string, unknown>
      >;
      assert.deepEqual(history.map((m) => m["text"]), texts, "history in the stream's order");
      const streamIds = reader.events.filter((e) => e.event === "privmsg").map((e) =>
        (e.data as { id: string }).id
      );
      assert.deepEqual(history.map((m) => m["id"]), streamIds);

      // The same ids as CHATHISTORY's msgid.
      bob.send("CHATHISTORY LATEST #room * 10");
      await bob.waitLine("end of the history batch", (l) => /^:\S+ BATCH -/.test(l));
      const msgids = bob.lines.filter((l) => l.includes("PRIVMSG #room") && l.includes("batch="))
        .map((l) => /msgid=([^; ]+)/.exec(l)![1]);
      assert.deepEqual(msgids, streamIds);

      // Paging: before and after a message id.
      const after = (await get(`/v1/channels/room/messages?after=${encodeURIComponent(streamIds[0]!)}`)).body;
      assert.deepEqual((after["messages"] as Array<{ id: string }>).map((m) => m.id), [streamIds[1]]);
      const before =
        (await get(`/v1/channels/room/messages?before=${encodeURIComponent(streamIds[1]!)}`)).body;
      assert.deepEqual((before["messages"] as Array<{ id: string }>).map((m) => m.id), [streamIds[0]]);
      assert.equal((await get("/v1/channels/room/messages?limit=0")).status, 400);

      // The reader leaves; what is said meanwhile reaches it when it comes back with Last-Event-ID.
      const last = reader.lastId!;
      await reader.close();
      alice.raw("PRIVMSG #room :three, said while the reader was away");
      alice.raw("TOPIC #room :a new topic");
      await bob.waitLine("the topic", (l) => l.includes("TOPIC #room :a new topic"));
      const again = await SseReader.open(url, last);
      await again.waitEvent("the topic, from the backlog", (e) => e.event === "topic");
      alice.raw("PRIVMSG #room :four, live");
      await again.waitEvent("four", (e) => e.data["text"] === "four, live");
      const seqs = again.events.filter((e) => e.id !== null).map((e) => Number(e.id));
      assert.equal(seqs[0], Number(last) + 1, "the first event after the last one seen");
      assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), "no gap, no repeat");
      assert.deepEqual(
        again.events.filter((e) => e.event === "privmsg").map((e) => e.data["text"]),
        ["three, said while the reader was away", "four, live"],
      );

      // Leaving the network shows on the stream (unnumbered) and to IRC users.
      await bob.quit("see you");
      await again.waitEvent("bob's quit", (e) => e.event === "quit" && e.data["nick"] === "bob");
      await alice.waitLine("bob's quit", (m) => m.command === "QUIT" && m.nick === "bob");
      await again.close();
      await alice.quit();
      await waitFor("nobody left in #room", async () => {
        const r = await get("/v1/channels/room");
        return r.status === 404 || (r.body["members"] as unknown[]).length === 0;
      });
      assert.ok(api.checked >= 10);
    },
  );
});

Deno.test("a secret channel does not exist over HTTP, a keyed one hides its messages", async () => {
  const httpPort = freePorts(1);
  const base = `http://127.0.0.1:${httpPort}`;
  await withChat({ workers: 1, flags: [`--http-port=${httpPort}`] }, async (_inst, place) => {
    const api = await ApiContract.load(base);
    const alice = await LibClient.connect(place.ircPort, "alice");
    await alice.join("#hidden");
    await alice.join("#locked");
    alice.raw("MODE #hidden +s");
    alice.raw("MODE #locked +k sesame");
    alice.raw("PRIVMSG #locked :secret words");
    await alice.waitLine("+k", (m) => m.command === "MODE" && m.params[1] === "+k");
    await alice.waitLine("+s", (m) => m.command === "MODE" && m.params[1] === "+s");
    for (
      const path of ["/v1/channels/hidden", "/v1/channels/hidden/messages", "/v1/channels/hidden/events"]
    ) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 404, path);
      await api.check("GET", path, res);
    }
    const listed = await fetch(`${base}/v1/channels`);
    assert.deepEqual(
      ((await api.check("GET", "/v1/channels", listed)) as { channels: Array<{ name: string }> }).channels
        .map((c) => c.name),
      ["#locked"],
    );
    for (const path of ["/v1/channels/locked/messages", "/v1/channels/locked/events"]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 403, path);
      await api.check("GET", path, res);
    }
    await alice.quit();
  });
});
