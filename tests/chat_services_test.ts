/**
 * Accounts as users meet them, over real IRC sessions: NickServ (REGISTER,
 * IDENTIFY, GHOST, REGAIN) and nick ownership, ChanServ and registered
 * channels across a restart, bans, invite-only and moderated channels, and
 * a flood of password attempts that must cost its sender only.
 */
import assert from "node:assert/strict";
import { startInstance } from "./harness.ts";
import { LibClient, RawIrc } from "./support/irc.ts";
import { chatFlags, clientsOnEveryWorker, newChatPlace, withChat } from "./support/chat_instance.ts";
import type { IrcMessage } from "../mod/chat/irc_message.ts";

const notice = (text: RegExp) => (m: IrcMessage) =>
  m.command === "NOTICE" && m.prefix.startsWith("NickServ!") && text.test(m.params[1] ?? "");

Deno.test("chat services: NickServ REGISTER/IDENTIFY; a registered nickname held by someone else is renamed after the grace; GHOST and REGAIN across workers", async () => {
  await withChat(
    // The grace covers two password checks (scrypt) on a loaded machine.
    { workers: 2, flags: ["--irc-flood-rate=0", "--irc-auth-rate=0", "--irc-nick-grace-ms=3000"] },
    async (_inst, { ircPort }) => {
      const owner = await RawIrc.connect(ircPort);
      await owner.register("owner");
      await owner.send("PRIVMSG NickServ :REGISTER sesame-pass");
      await owner.waitFor("Account created", notice(/^Account created$/));
      await owner.waitFor("900", (m) => m.command === "900" && m.params[2] === "owner");
      await owner.send("NS REGISTER again-pass");
      await owner.waitFor("already logged in", notice(/already logged in/));
      await owner.send("NICK NickServ");
      await owner.waitFor("432 for a service's name", (m) => m.command === "432");
      await owner.send("QUIT");
      await owner.close();

      // Someone else takes it: told, then renamed once the grace is over.
      const imposter = await RawIrc.connect(ircPort);
      await imposter.register("owner");
      await imposter.waitFor("warning", notice(/registered.*IDENTIFY/));
      const renamed = await imposter.waitFor(
        "renamed",
        (m) => m.command === "NICK" && /^Guest\d+$/.test(m.params[0]!),
      );
      assert.ok(renamed.prefix.startsWith("owner!"));
      await imposter.close();

      // Identified in time: kept.
      const kept = await RawIrc.connect(ircPort);
      await kept.register("owner");
      await kept.send("PRIVMSG NickServ :IDENTIFY wrong-pass");
      await kept.waitFor("refused", notice(/Invalid/));
      await kept.send("PRIVMSG NickServ :IDENTIFY sesame-pass");
      await kept.waitFor("900", (m) => m.command === "900");
      await new Promise((r) => setTimeout(r, 3_500));
      assert.ok(!kept.seen.some((m) => m.command === "NICK"), "an identified owner keeps its nickname");
      await kept.send("QUIT");
      await kept.close();

      // GHOST and REGAIN from another worker.
      const [one, two] = await clientsOnEveryWorker(ircPort, "r");
      const [squatter, rightful] = [one!.client, two!.client];
      squatter.raw("NICK owner");
      await squatter.waitLine("now owner", (m) => m.command === "NICK" && m.params[0] === "owner");
      rightful.raw("PRIVMSG NickServ :GHOST owner");
      await rightful.waitLine("not yours", (m) => m.command === "NOTICE" && /not your/.test(m.params[1]!));
      rightful.raw("PRIVMSG NickServ :IDENTIFY owner sesame-pass");
      await rightful.waitLine("900", (m) => m.command === "900");
      rightful.raw("PRIVMSG NickServ :REGAIN owner");
      await squatter.closed();
      await rightful.waitLine("took it back", (m) => m.command === "NICK" && m.params[0] === "owner");
      rightful.raw("WHOIS owner");
      await rightful.waitLine(
        "330",
        (m) => m.command === "330" && m.params[1] === "owner" && m.params[2] === "owner",
      );
      await rightful.quit();
    },
  );
});

Deno.test("chat services: a registered channel keeps its topic, modes, bans and access across a restart; its founder is opped on joining, a first joiner is not", async () => {
  const place = newChatPlace();
  const flags = [...chatFlags(place), "--irc-flood-rate=0", "--irc-auth-rate=0"];
  try {
    const first = await startInstance({ workers: 2, flags });
    const f = await RawIrc.connect(place.ircPort);
    await f.register("founder");
    await f.send("REGISTER * * founder-pass", "JOIN #reg");
    await f.waitFor("366", (m) => m.command === "366");
    await f.send("PRIVMSG ChanServ :REGISTER #nope");
    await f.waitFor("no such channel", (m) => m.command === "NOTICE" && /does not exist/.test(m.params[1]!));
    await f.send(
      "TOPIC #reg :kept across restarts",
      "MODE #reg +ib *!*@192.0.2.*",
      "PRIVMSG ChanServ :REGISTER #reg",
    );
    await f.waitFor(
      "registered",
      (m) => m.command === "NOTICE" && /registered to founder/.test(m.params[1]!),
    );
    const friend = await RawIrc.connect(place.ircPort);
    await friend.register("friend");
    await friend.send("NS REGISTER friend-pass");
    await friend.waitFor("900", (m) => m.command === "900");
    await f.send("CS ACCESS #reg ADD friend voice", "CS ACCESS #reg LIST");
    await f.waitFor("access list", (m) => m.command === "NOTICE" && m.params[1] === "friend voice");
    await f.send("QUIT");
    await friend.send("QUIT");
    assert.equal(await first.stop(), 0);

    const second = await startInstance({ workers: 2, flags, port: first.port }); // the same database
    const stranger = await RawIrc.connect(place.ircPort);
    await stranger.register("stranger");
    await stranger.send("JOIN #reg");
    await stranger.waitFor("473: still invite-only", (m) => m.command === "473");
    const back = await LibClient.connect(place.ircPort, "founder", {
      account: { account: "founder", password: "founder-pass" },
    });
    await back.join("#reg");
    await back.waitLine("topic kept", (m) => m.command === "332" && m.params[2] === "kept across restarts");
    await back.waitLine(
      "ChanServ ops the founder",
      (m) => m.command === "MODE" && m.nick === "ChanServ" && m.params[1] === "+o",
    );
    back.raw("MODE #reg b");
    await back.waitLine("ban kept", (m) => m.command === "367" && m.params[2] === "*!*@192.0.2.*");
    back.raw("MODE #reg -i");
    await back.waitLine("-i", (m) => m.command === "MODE" && m.params[1] === "-i");
    const voiced = await LibClient.connect(place.ircPort, "friend", {
      account: { account: "friend", password: "friend-pass" },
    });
    await voiced.join("#reg");
    await back.waitLine(
      "ChanServ voices friend",
      (m) => m.command === "MODE" && m.params[1] === "+v" && m.params[2] === "friend",
    );
    await voiced.quit();
    await back.quit();
    // Empty now, but registered: whoever joins first is not made operator.
    await stranger.send("JOIN #reg", "MODE #reg");
    const names = await stranger.waitFor("NAMES", (m) => m.command === "353");
    assert.equal(names.params[3], "stranger", "no @ for the first joiner of a registered channel");
    await stranger.waitFor("modes kept", (m) => m.command === "324" && m.params[2]!.includes("t"));
    await stranger.close();
    assert.equal(await second.stop(), 0);
  } finally {
    Deno.removeSync(place.dataDir, { recursive: true });
  }
});

Deno.test("chat services: bans, invite-only and moderated channels hold on every worker; an INVITE lets one in once", async () => {
  await withChat({ workers: 2, flags: ["--irc-flood-rate=0"] }, async (_inst, { ircPort }) => {
    const [one, two] = await clientsOnEveryWorker(ircPort, "b");
    const [op, other] = [one!.client, two!.client];
    await op.join("#mod");
    op.raw(`MODE #mod +b ${other.nick}`);
    await op.waitLine(
      "+b",
      (m) => m.command === "MODE" && m.params[1] === "+b" && m.params[2] === `${other.nick}!*@*`,
    );
    other.raw("JOIN #mod");
    await other.waitLine("474", (m) => m.command === "474");
    op.raw(`INVITE ${other.nick} #mod`);
    await op.waitLine("341", (m) => m.command === "341");
    await other.waitLine("INVITE", (m) => m.command === "INVITE");
    await other.join("#mod"); // the invitation passes the ban, once
    other.client.say("#mod", "banned but here");
    await other.waitLine("404: banned members do not speak", (m) => m.command === "404");
    op.raw(`MODE #mod +v ${other.nick}`);
    await other.waitLine("+v", (m) => m.command === "MODE" && m.params[1] === "+v");
    other.client.say("#mod", "voiced now");
    await op.waitLine("voiced speaks", (m) => m.command === "PRIVMSG" && m.params[1] === "voiced now");
    op.raw(`MODE #mod -b+mi ${other.nick}!*@*`);
    await op.waitLine("+mi", (m) => m.command === "MODE" && m.params[1] === "-b+mi");
    const quiet = await LibClient.connect(ircPort, "quiet");
    quiet.raw("JOIN #mod");
    await quiet.waitLine("473", (m) => m.command === "473");
    op.raw("INVITE quiet #mod");
    await quiet.waitLine("INVITE", (m) => m.command === "INVITE");
    await quiet.join("#mod");
    quiet.client.say("#mod", "unvoiced");
    await quiet.waitLine("404 under +m", (m) => m.command === "404");
    op.client.say("#mod", "ops speak");
    await quiet.waitLine("op's message", (m) => m.command === "PRIVMSG" && m.params[1] === "ops speak");
    quiet.raw("PART #mod");
    await quiet.waitLine("PART", (m) => m.command === "PART");
    quiet.raw("JOIN #mod");
    await quiet.waitLine("the invitation was used up", (m) => m.command === "473");
    await quiet.quit();
    await op.quit();
    await other.quit();
  });
});

Deno.test("chat services: a flood of password attempts is refused past its address's rate, and the worker keeps serving everyone", async () => {
  await withChat({ workers: 1, flags: ["--irc-flood-rate=0"] }, async (inst, { ircPort }) => {
    const before = (await inst.status()).workers[0]!;
    const flood = await Promise.all(Array.from({ length: 20 }, () => RawIrc.connect(ircPort)));
    const payload = btoa("\0someone\0wrong-password");
    await Promise.all(
      flood.map((c) => c.send("CAP REQ :sasl", "AUTHENTICATE PLAIN", `AUTHENTICATE ${payload}`)),
    );
    // Meanwhile another client is served at once.
    const bystander = await RawIrc.connect(ircPort);
    await bystander.register("bystander");
    await bystander.send("PING :alive");
    await bystander.waitFor("PONG", (m) => m.command === "PONG");
    await Promise.all(flood.map((c) => c.waitFor("904", (m) => m.command === "904", 30_000)));
    const limited = flood.filter((c) =>
      c.seen.some((m) => m.command === "904" && /Too many/.test(m.params[1]!))
    );
    assert.ok(limited.length >= 10, `${limited.length} of 20 refused by the rate (burst 10)`);
    const after = (await inst.status()).workers[0]!;
    assert.equal(after.pid, before.pid, "the worker was never replaced");
    assert.equal(after.restarts, before.restarts);
    await Promise.all([...flood, bystander].map((c) => c.close()));
  });
});
