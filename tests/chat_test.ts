/**
 * The chat through real IRC sessions over TCP: a real client library
 * (irc-framework) for what clients do, raw sockets for what they should not.
 * Every instance is a real watchdog with its dispatcher and workers.
 */
import assert from "node:assert/strict";
import { osps, RUN_FLAGS, waitFor } from "./harness.ts";
import { LibClient, RawIrc } from "./support/irc.ts";
import { clientsOnEveryWorker, membersOnTwoWorkers, withChat } from "./support/chat_instance.ts";
import { parseMemoryLine } from "../mod/sys/memory.ts";

Deno.test("chat: registration gives 001-005 with ISUPPORT, then MOTD or 422; errors get their numerics", async () => {
  await withChat({ workers: 2 }, async (inst, { ircPort }) => {
    // The chat's limits are flags with defaults, and osps status shows them.
    const status = (await inst.status()) as unknown as { chat: Record<string, unknown> };
    assert.equal(status.chat["irc-port"], ircPort);
    for (const flag of ["irc-sendq-bytes", "irc-flood-burst", "irc-flood-rate", "irc-register-timeout-ms"]) {
      assert.equal(typeof status.chat[flag], "number", `status shows ${flag}`);
    }
    const a = await LibClient.connect(ircPort, "alice");
    assert.ok(a.registered);
    for (const n of ["001", "002", "003", "004", "005", "422"]) assert.ok(a.lines(n).length > 0, `got ${n}`);
    const isupport = a.lines("005").flatMap((m) => m.params);
    for (
      const t of ["CASEMAPPING=rfc1459", "CHANTYPES=#", "PREFIX=(ov)@+", "NICKLEN=30", "CHATHISTORY=100"]
    ) {
      assert.ok(isupport.includes(t), `ISUPPORT has ${t}`);
    }
    const raw = await RawIrc.connect(ircPort);
    await raw.send("JOIN #early", "NICK", "NICK 1bad", "NICK Alice", "USER x 0 *");
    await raw.waitFor("451", (m) => m.command === "451");
    await raw.waitFor("431", (m) => m.command === "431");
    await raw.waitFor("432", (m) => m.command === "432" && m.params[1] === "1bad");
    await raw.waitFor("433 (rfc1459 case mapping)", (m) => m.command === "433" && m.params[1] === "Alice");
    await raw.waitFor("461", (m) => m.command === "461" && m.params[1] === "USER");
    await raw.send("NICK al[ice]", "USER x 0 * :x");
    await raw.waitFor("001", (m) => m.command === "001");
    await raw.send("FROB", "PRIVMSG", "PRIVMSG alice", "PRIVMSG nobody :hi", "USER again 0 * :x");
    await raw.send(`PRIVMSG alice :${"x".repeat(600)}`, "MODE al{ice} +z");
    for (const code of ["421", "411", "412", "401", "462", "417", "501"]) {
      await raw.waitFor(code, (m) => m.command === code);
    }
    // al[ice] and al{ice} are one nickname under rfc1459: a second client cannot take it.
    const dup = await LibClient.connect(ircPort, "AL{ICE}");
    assert.equal(dup.registered, false);
    await dup.quit();
    await raw.send("QUIT :done");
    await raw.waitFor("ERROR", (m) => m.command === "ERROR");
    await waitFor("close after ERROR", () => raw.eof);
    await raw.close();
    await a.quit();
  });
});

Deno.test("chat: a wrong PASS gets 464 and the connection closes", async () => {
  await withChat({ workers: 1, flags: ["--irc-password=sesame"] }, async (_inst, { ircPort }) => {
    const bad = await RawIrc.connect(ircPort);
    await bad.send("PASS wrong", "NICK p1", "USER p 0 * :p");
    await bad.waitFor("464", (m) => m.command === "464");
    await waitFor("closed", () => bad.eof);
    await bad.close();
    const good = await RawIrc.connect(ircPort);
    await good.send("PASS sesame");
    await good.register("p2");
    await good.close();
  });
});

Deno.test("chat: members on two workers get every channel message once, in the channel's order", async () => {
  await withChat({ workers: 2, flags: ["--irc-flood-rate=0"] }, async (_inst, { ircPort }) => {
    const [one, two] = await membersOnTwoWorkers(ircPort, "m", "#room");
    const [a, b] = [one!.client, two!.client];
    // Both talk at once; each sees the other's lines, all in one order: the channel's.
    for (let i = 0; i < 40; i++) {
      a.client.say("#room", `a${i}`);
      b.client.say("#room", `b${i}`);
    }
    const said = (c: LibClient) => c.lines("PRIVMSG").map((m) => m.params[1]!);
    await waitFor("all messages", () => said(a).length === 40 && said(b).length === 40);
    const history = await RawIrc.connect(ircPort);
    await history.register("reader");
    await history.send("JOIN #room", "CAP REQ :batch", "CHATHISTORY LATEST #room * 100");
    await history.waitFor("batch end", (m) => m.command === "BATCH" && m.params[0]!.startsWith("-"));
    const order = history.seen.filter((m) => m.command === "PRIVMSG").map((m) => m.params[1]!);
    assert.equal(order.length, 80);
    assert.deepEqual(
      said(a),
      order.filter((t) => t.startsWith("b")),
      "a saw b's lines once, in channel order",
    );
    assert.deepEqual(
      said(b),
      order.filter((t) => t.startsWith("a")),
      "b saw a's lines once, in channel order",
    );
    // Topic, op, kick and a private message cross workers too.
    a.raw("TOPIC #room :shared topic");
    await b.waitLine("topic", (m) => m.command === "TOPIC" && m.params[1] === "shared topic");
    b.raw("TOPIC #room :not op");
    await b.waitLine("482", (m) => m.command === "482");
    a.client.say(b.nick, "psst");
    await b.waitLine(
      "private",
      (m) => m.command === "PRIVMSG" && m.params[0] === b.nick && m.params[1] === "psst",
    );
    a.raw(`KICK #room ${b.nick} :out`);
    await b.waitLine("kick", (m) => m.command === "KICK" && m.params[1] === b.nick);
    a.client.say("#room", "after kick");
    b.raw("NAMES #room");
    await b.waitLine("names", (m) => m.command === "366");
    assert.ok(!said(b).includes("after kick"), "a kicked member gets no more messages");
    // A client that vanishes without QUIT leaves its channels all the same, with a reason.
    await history.close();
    const gone = await a.waitLine("reader's QUIT", (m) => m.command === "QUIT" && m.nick === "reader");
    assert.equal(gone.params[0], "Connection closed");
    await a.quit();
    await b.quit();
  });
});

Deno.test("chat: a nickname is unique across workers (rfc1459 folding), and free again after QUIT", async () => {
  await withChat({ workers: 2 }, async (_inst, { ircPort }) => {
    const [one, two] = await clientsOnEveryWorker(ircPort, "n");
    const [a, b] = [one!.client, two!.client];
    a.raw("NICK Taken[");
    await a.waitLine("own nick change", (m) => m.command === "NICK" && m.params[0] === "Taken[");
    b.raw("NICK taken{"); // [ is the upper case of {
    await b.waitLine("433 from the other worker", (m) => m.command === "433");
    await a.quit();
    b.raw("NICK taken{");
    await b.waitLine("nick now free", (m) => m.command === "NICK" && m.params[0] === "taken{");
    await b.quit();
  });
});

Deno.test("chat: a client that reconnects at once after its connection dropped gets its nickname back, not 433", async () => {
  // irctest on one long-running server plays this between test classes: the last test's clients drop their
  // sockets without QUIT, the next test's take the same nicknames a moment later, on either worker.
  await withChat({ workers: 2 }, async (_inst, { ircPort }) => {
    for (let round = 0; round < 20; round++) {
      const old = await RawIrc.connect(ircPort);
      await old.register("again");
      await old.send("JOIN #back", "PING sync");
      await old.waitFor("PONG", (m) => m.command === "PONG");
      await old.close();
      const fresh = await RawIrc.connect(ircPort);
      await fresh.send("NICK again", "USER again 0 * :again");
      const m = await fresh.waitFor("001 or 433", (m) => m.command === "001" || m.command === "433");
      assert.equal(m.command, "001", `round ${round}: the dropped connection's nickname is given back`);
      await fresh.close();
      await waitFor("the nickname released", async () => {
        const probe = await RawIrc.connect(ircPort);
        await probe.send("NICK probe", "USER p 0 * :p", "ISON again", "QUIT");
        const r = await probe.waitFor("303", (m) => m.command === "303");
        await probe.close();
        return r.params[1] === "" || undefined;
      });
    }
    // A nickname held by a live session is still refused.
    const holder = await RawIrc.connect(ircPort);
    await holder.register("held");
    const other = await RawIrc.connect(ircPort);
    await other.send("NICK held", "USER x 0 * :x");
    await other.waitFor("433", (m) => m.command === "433" && m.params[1] === "held");
    await Promise.all([holder.close(), other.close()]);
  });
});

Deno.test("chat: JOIN keys, modes and op, LIST, WHO, ISON, USERHOST, AWAY", async () => {
  await withChat({ workers: 2 }, async (_inst, { ircPort }) => {
    const op = await RawIrc.connect(ircPort);
    await op.register("opper");
    await op.send("JOIN #k", "MODE #k +kl key 5", "AWAY :gone fishing");
    await op.waitFor("mode", (m) => m.command === "MODE" && m.params[1] === "+kl");
    const other = await RawIrc.connect(ircPort);
    await other.register("other");
    await other.send("JOIN #k", "JOIN #k wrong");
    await other.waitFor("475", (m) => m.command === "475");
    await other.send("JOIN #k key", "MODE #k", "LIST", "WHO #k", "ISON opper nobody other", "USERHOST opper");
    await other.waitFor("324", (m) => m.command === "324" && m.params[2] === "+ntkl");
    await other.waitFor("322", (m) => m.command === "322" && m.params[1] === "#k" && m.params[2] === "2");
    await other.waitFor(
      "352 away op",
      (m) => m.command === "352" && m.params[5] === "opper" && m.params[6] === "G@",
    );
    await other.waitFor("303", (m) => m.command === "303" && m.params[1] === "opper other");
    await other.waitFor("302", (m) => m.command === "302" && m.params[1] === "opper=-~opper@127.0.0.1");
    await other.send("PRIVMSG opper :hi", "MODE #k +x", "MODE #k +t");
    await other.waitFor("301", (m) => m.command === "301" && m.params[2] === "gone fishing");
    await other.waitFor("472", (m) => m.command === "472");
    await other.waitFor("482", (m) => m.command === "482");
    await op.send(`MODE #k +o other`);
    await other.waitFor(
      "op given",
      (m) => m.command === "MODE" && m.params[1] === "+o" && m.params[2] === "other",
    );
    await op.close();
    await other.close();
  });
});

Deno.test("chat: osps chat goes through the dispatcher, shows history, and meets IRC clients; the worker stays free", async () => {
  await withChat({ workers: 1 }, async (inst, { ircPort }) => {
    const irc = await LibClient.connect(ircPort, "ircuser");
    await irc.join("#lobby");
    irc.client.say("#lobby", "said before you came");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        ...RUN_FLAGS,
        new URL("../main.ts", import.meta.url).pathname,
        "chat",
        `--port=${inst.port}`,
        "--nick=oscar",
        "#lobby",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdin = child.stdin.getWriter();
    await irc.waitLine("oscar joins", (m) => m.command === "JOIN" && m.nick === "oscar");
    // The chat session does not hold the one worker: a request is served meanwhile.
    const echo = await inst.client(["echo", "still served"]);
    assert.equal(echo.stdout.trim(), "still served");
    await stdin.write(new TextEncoder().encode("hello from osps chat\n"));
    await irc.waitLine(
      "oscar's message",
      (m) => m.command === "PRIVMSG" && m.params[1] === "hello from osps chat",
    );
    irc.client.say("#lobby", "welcome oscar");
    // osps chat is left (stdin closed) once it printed the live message: its QUIT would race the message otherwise.
    let text = "";
    const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    while (!/#lobby <ircuser> welcome oscar/.test(text)) {
      const r = await stdout.read();
      if (r.done) break;
      text += r.value;
    }
    await stdin.close();
    for (let r = await stdout.read(); !r.done; r = await stdout.read()) text += r.value;
    const status = await child.status;
    const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    assert.equal(status.code, 0, stderr);
    assert.match(text, /#lobby <ircuser> said before you came/, "history on join");
    assert.match(text, /#lobby <ircuser> welcome oscar/, "live message from an IRC client");
    await irc.waitLine("oscar quits", (m) => m.command === "QUIT" && m.nick === "oscar");
    const taken = await osps(["chat", `--port=${inst.port}`, "--nick=ircuser"], { stdin: "" });
    assert.equal(taken.code, 3, "a nickname in use is refused");
    assert.match(taken.stdout, /433/);
    await irc.quit();
  });
});

Deno.test("chat: STATS z says where the worker's memory goes (resident, V8 heap used of committed, malloc)", async () => {
  await withChat({ workers: 1 }, async (_inst, { ircPort }) => {
    const c = await RawIrc.connect(ircPort);
    await c.register("counter");
    await c.send("STATS z");
    const z = await c.waitFor("249 z", (m) => m.command === "249" && m.params[1] === "z");
    await c.waitFor("219", (m) => m.command === "219" && m.params[1] === "z");
    const kib = parseMemoryLine(z.params.at(-1)!);
    assert.ok(kib["rss"]! > 0 && kib["anon"]! <= kib["rss"]!, z.params.at(-1));
    assert.ok(kib["heap_used"]! > 0 && kib["heap_used"]! <= kib["heap_committed"]!, z.params.at(-1));
    assert.ok(kib["malloc_used"]! > 0 && kib["trims"]! >= 0, z.params.at(-1));
    await c.close();
  });
});
