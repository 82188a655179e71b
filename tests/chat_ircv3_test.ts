/**
 * IRCv3 and accounts through real IRC sessions over TCP, against real
 * instances (watchdog, dispatcher, two workers): capability negotiation,
 * SASL (PLAIN through the irc-framework library, SCRAM-SHA-256 from the
 * RFC's client side), REGISTER, tags (msgid, server-time, account-tag),
 * echo-message and labeled-response, and the user notifications that cross
 * workers.
 */
import assert from "node:assert/strict";
import { waitFor } from "./harness.ts";
import { LibClient, RawIrc } from "./support/irc.ts";
import { clientsOnEveryWorker, withChat } from "./support/chat_instance.ts";
import { ScramClient } from "./support/scram_client.ts";
import type { IrcMessage } from "../mod/chat/irc_message.ts";

const FLAGS = ["--irc-flood-rate=0", "--irc-auth-rate=0"];

/** Registers with the capabilities given (CAP LS 302, REQ, END); returns the LS values. */
async function withCaps(c: RawIrc, nick: string, caps: string[]): Promise<Map<string, string>> {
  await c.send("CAP LS 302", `NICK ${nick}`, `USER ${nick} 0 * :real ${nick}`);
  const ls = await c.waitFor("CAP LS", (m) => m.command === "CAP" && m.params[1] === "LS");
  await c.send(`CAP REQ :${caps.join(" ")}`);
  await c.waitFor("CAP ACK", (m) => m.command === "CAP" && m.params[1] === "ACK");
  await c.send("CAP END");
  await c.waitFor("001", (m) => m.command === "001");
  return new Map(ls.params.at(-1)!.split(" ").map((t) => [t.split("=")[0]!, t.split("=")[1] ?? ""]));
}

/** A fresh RawIrc registered as `nick` with `caps` (none: a client that never says CAP). */
async function rawWith(port: number, nick: string, caps: string[]): Promise<RawIrc> {
  const c = await RawIrc.connect(port);
  if (caps.length) await withCaps(c, nick, caps);
  else {
    await c.send(`NICK ${nick}`, `USER ${nick} 0 * :real ${nick}`);
    await c.waitFor("001", (m) => m.command === "001");
  }
  return c;
}

const after = (c: RawIrc, n: number) => c.seen.slice(n);

function find(c: RawIrc, from: number, pred: (m: IrcMessage) => boolean): IrcMessage | undefined {
  return after(c, from).find(pred);
}

Deno.test("chat IRCv3: CAP LS 302 lists every capability with values; REQ is all or nothing; ISUPPORT says what is there", async () => {
  await withChat({ workers: 1, flags: FLAGS }, async (_inst, { ircPort }) => {
    const c = await RawIrc.connect(ircPort);
    await c.send("CAP LS 302", "CAP REQ :echo-message no-such-cap", "CAP REQ :echo-message multi-prefix");
    const ls = await c.waitFor("LS", (m) => m.command === "CAP" && m.params[1] === "LS");
    const offered = ls.params.at(-1)!.split(" ");
    for (
      const cap of [
        "account-notify",
        "account-tag",
        "away-notify",
        "batch",
        "cap-notify",
        "draft/account-registration=before-connect,custom-account-name",
        "echo-message",
        "extended-join",
        "invite-notify",
        "labeled-response",
        "message-tags",
        "multi-prefix",
        "sasl=PLAIN,SCRAM-SHA-256",
        "server-time",
        "setname",
        "userhost-in-names",
      ]
    ) assert.ok(offered.includes(cap), `CAP LS offers ${cap}: ${offered.join(" ")}`);
    await c.waitFor(
      "NAK",
      (m) => m.command === "CAP" && m.params[1] === "NAK" && m.params[2] === "echo-message no-such-cap",
    );
    await c.waitFor("ACK", (m) => m.command === "CAP" && m.params[1] === "ACK");
    await c.send("CAP LIST");
    const list = await c.waitFor("LIST", (m) => m.command === "CAP" && m.params[1] === "LIST");
    assert.deepEqual(
      new Set(list.params.at(-1)!.split(" ")),
      new Set(["echo-message", "multi-prefix", "cap-notify"]),
    );
    await c.send("NICK capper", "USER c 0 * :c");
    await waitFor("no 001 before CAP END", () => c.seen.length > 0);
    assert.equal(c.seen.some((m) => m.command === "001"), false, "registration waits for CAP END");
    await c.send("CAP END");
    await c.waitFor("001", (m) => m.command === "001");
    await c.waitFor("LUSERS in the welcome", (m) => m.command === "251");
    const isupport = c.seen.filter((m) => m.command === "005").flatMap((m) => m.params);
    for (
      const t of ["CHANMODES=b,k,l,imnst", "MONITOR=100", "WHOX", "BOT=B", "MAXLIST=b:100", "PREFIX=(ov)@+"]
    ) {
      assert.ok(isupport.includes(t), `ISUPPORT has ${t}: ${isupport.join(" ")}`);
    }
    const myinfo = c.seen.find((m) => m.command === "004")!;
    assert.deepEqual(myinfo.params.slice(3), ["iB", "biklmnostv", "bklov"]);
    await c.close();
  });
});

Deno.test("chat IRCv3: REGISTER, then SASL PLAIN (irc-framework) and SCRAM-SHA-256 log in; WHOIS, account-tag, extended-join and account-notify show the account", async () => {
  await withChat({ workers: 2, flags: FLAGS }, async (_inst, { ircPort }) => {
    // REGISTER before connection registration, as the capability's before-connect allows.
    const reg = await RawIrc.connect(ircPort);
    await reg.send("CAP LS 302", "NICK alice", "REGISTER * * weak");
    await reg.waitFor("weak password", (m) => m.command === "FAIL" && m.params[1] === "WEAK_PASSWORD");
    await reg.send("REGISTER * alice@example.org correct-horse");
    await reg.waitFor(
      "SUCCESS",
      (m) => m.command === "REGISTER" && m.params[0] === "SUCCESS" && m.params[1] === "alice",
    );
    await reg.waitFor("900", (m) => m.command === "900" && m.params[2] === "alice");
    await reg.send("REGISTER bob * correct-horse");
    await reg.waitFor("already", (m) => m.command === "FAIL" && m.params[1] === "ALREADY_AUTHENTICATED");
    await reg.send("CAP END", "USER alice 0 * :Alice Liddell");
    await reg.waitFor("001", (m) => m.command === "001");
    await reg.send("WHOIS alice");
    await reg.waitFor("330", (m) => m.command === "330" && m.params[2] === "alice");
    await reg.send("QUIT");
    await reg.close();

    // A watcher with every notification capability, and the library logging in with SASL PLAIN.
    const watcher = await rawWith(ircPort, "watcher", [
      "account-tag",
      "extended-join",
      "account-notify",
      "message-tags",
      "server-time",
    ]);
    await watcher.send("JOIN #acct");
    await watcher.waitFor("366", (m) => m.command === "366");
    const bad = await LibClient.connect(ircPort, "alice", {
      account: { account: "alice", password: "wrong" },
    });
    await bad.waitLine("904", (m) => m.command === "904");
    await bad.quit();
    const alice = await LibClient.connect(ircPort, "alice", {
      account: { account: "alice", password: "correct-horse" },
    });
    assert.ok(alice.registered);
    assert.ok(alice.lines("900").some((m) => m.params[2] === "alice"), "900 logged in");
    assert.ok(alice.lines("903").length === 1, "903 success");
    await alice.join("#acct");
    const join = await watcher.waitFor(
      "extended JOIN",
      (m) => m.command === "JOIN" && m.prefix.startsWith("alice!"),
    );
    assert.deepEqual(join.params, ["#acct", "alice", "test alice"], "JOIN #chan account :realname");
    alice.client.say("#acct", "tagged");
    const msg = await watcher.waitFor("PRIVMSG", (m) => m.command === "PRIVMSG" && m.params[1] === "tagged");
    assert.equal(msg.tags["account"], "alice");
    assert.match(msg.tags["msgid"] ?? "", /^\d+:#acct$/);
    assert.match(msg.tags["time"] ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

    // SCRAM-SHA-256, from the client side of the RFC, on a raw socket.
    const scram = await RawIrc.connect(ircPort);
    await scram.send(
      "CAP LS 302",
      "CAP REQ :sasl",
      "NICK scrammer",
      "USER s 0 * :s",
      "AUTHENTICATE SCRAM-SHA-256",
    );
    await scram.waitFor("AUTHENTICATE +", (m) => m.command === "AUTHENTICATE" && m.params[0] === "+");
    const client = new ScramClient("alice", "correct-horse");
    await scram.send(`AUTHENTICATE ${btoa(client.first())}`);
    const first = await scram.waitFor(
      "server-first",
      (m) => m.command === "AUTHENTICATE" && m.params[0] !== "+",
    );
    await scram.send(`AUTHENTICATE ${btoa(client.final(atob(first.params[0]!)))}`);
    const last = await scram.waitFor(
      "server-final",
      (m) => m.command === "AUTHENTICATE" && m !== first && m.params[0] !== "+",
    );
    assert.ok(client.verify(atob(last.params[0]!)), "the server proved it holds the verifier");
    await scram.send("AUTHENTICATE +");
    await scram.waitFor("903", (m) => m.command === "903");
    await scram.send("CAP END");
    await scram.waitFor("001", (m) => m.command === "001");
    // A wrong password fails at the proof; an unknown account looks the same.
    for (const [user, password] of [["alice", "not-it"], ["nobody", "x"]]) {
      const c = await RawIrc.connect(ircPort);
      await c.send("CAP REQ :sasl", "AUTHENTICATE SCRAM-SHA-256");
      await c.waitFor("+", (m) => m.command === "AUTHENTICATE");
      const sc = new ScramClient(user!, password!);
      await c.send(`AUTHENTICATE ${btoa(sc.first())}`);
      const f = await c.waitFor("server-first", (m) => m.command === "AUTHENTICATE" && m.params[0] !== "+");
      await c.send(`AUTHENTICATE ${btoa(sc.final(atob(f.params[0]!)))}`);
      await c.waitFor(`904 for ${user}`, (m) => m.command === "904");
      await c.close();
    }

    // account-notify: logging out (NickServ) reaches a channel companion on any worker.
    alice.raw("PRIVMSG NickServ :LOGOUT");
    await watcher.waitFor(
      "ACCOUNT *",
      (m) => m.command === "ACCOUNT" && m.prefix.startsWith("alice!") && m.params[0] === "*",
    );
    alice.raw("PRIVMSG NickServ :IDENTIFY alice correct-horse");
    await watcher.waitFor("ACCOUNT alice", (m) => m.command === "ACCOUNT" && m.params[0] === "alice");
    await alice.quit();
    await watcher.close();
    await scram.close();
  });
});

Deno.test("chat IRCv3: echo-message and labeled-response; a message's msgid is the one CHATHISTORY gives back", async () => {
  await withChat({ workers: 2, flags: FLAGS }, async (_inst, { ircPort }) => {
    const caps = [
      "echo-message",
      "labeled-response",
      "batch",
      "message-tags",
      "server-time",
      "draft/chathistory",
    ];
    const a = await rawWith(ircPort, "echoer", caps);
    const b = await rawWith(ircPort, "hearer", ["message-tags"]);
    await a.send("@label=j1 JOIN #echo");
    const batch = await a.waitFor(
      "labeled JOIN batch",
      (m) => m.command === "BATCH" && m.tags["label"] === "j1",
    );
    assert.equal(batch.params[1], "labeled-response");
    const id = batch.params[0]!.slice(1);
    await a.waitFor("batch end", (m) => m.command === "BATCH" && m.params[0] === `-${id}`);
    const inBatch = a.seen.filter((m) => m.tags["batch"] === id).map((m) => m.command);
    assert.deepEqual(inBatch, ["JOIN", "353", "366"], "the JOIN echo, NAMES and end of NAMES");
    await b.send("JOIN #echo");
    await a.waitFor("hearer joins", (m) => m.command === "JOIN" && m.prefix.startsWith("hearer!"));
    const n = a.seen.length;
    await a.send("@label=m1;+draft/reply=xyz PRIVMSG #echo :hello echo");
    const echo = await waitFor("echo", () => find(a, n, (m) => m.command === "PRIVMSG"));
    assert.equal(echo.tags["label"], "m1", "the echo carries the label");
    assert.equal(echo.params[1], "hello echo");
    const heard = await b.waitFor("message", (m) => m.command === "PRIVMSG" && m.params[1] === "hello echo");
    assert.equal(heard.tags["msgid"], echo.tags["msgid"], "one msgid for everyone");
    assert.equal(heard.tags["+draft/reply"], "xyz", "client-only tags are relayed");
    assert.equal(heard.tags["label"], undefined);
    await a.send("@label=p1 PING :x", "@label=a1 AWAY :out");
    await a.waitFor("labeled PONG", (m) => m.command === "PONG" && m.tags["label"] === "p1");
    await a.waitFor("labeled 306", (m) => m.command === "306" && m.tags["label"] === "a1");
    await a.send("@label=n1 MODE #echo +n"); // no change: no answer but ACK
    await a.waitFor("ACK", (m) => m.command === "ACK" && m.tags["label"] === "n1");
    // TAGMSG: tags only, to members who enabled message-tags, not stored.
    await a.send("@+typing=active TAGMSG #echo");
    const typing = await b.waitFor("TAGMSG", (m) => m.command === "TAGMSG");
    assert.equal(typing.tags["+typing"], "active");
    // Private messages: echo with the same msgid as delivered.
    const m0 = a.seen.length;
    await a.send("PRIVMSG hearer :psst");
    const got = await b.waitFor("private", (m) => m.command === "PRIVMSG" && m.params[1] === "psst");
    const self = await waitFor(
      "private echo",
      () => find(a, m0, (m) => m.command === "PRIVMSG" && m.params[1] === "psst"),
    );
    assert.equal(self.tags["msgid"], got.tags["msgid"]);
    await a.send("CHATHISTORY LATEST #echo * 10");
    const replayed = await a.waitFor(
      "history",
      (m) => m.command === "PRIVMSG" && m.tags["batch"] !== undefined,
    );
    assert.equal(replayed.tags["msgid"], echo.tags["msgid"], "history gives the same msgid");
    assert.equal(replayed.tags["+draft/reply"], "xyz", "and the client-only tags");
    await a.close();
    await b.close();
  });
});

Deno.test("chat IRCv3: away-notify, setname, MONITOR and invite-notify reach clients on the other worker", async () => {
  await withChat({ workers: 2, flags: FLAGS }, async (_inst, { ircPort }) => {
    const [one, two] = await clientsOnEveryWorker(ircPort, "w");
    const [x, y] = [one!.client, two!.client];
    const watcher = await RawIrc.connect(ircPort);
    await withCaps(watcher, "watch", ["away-notify", "setname", "invite-notify", "multi-prefix"]);
    await watcher.send(`MONITOR + ${x.nick},${y.nick},ghost`);
    await watcher.waitFor("730 online", (m) => m.command === "730" && m.params[1]!.includes(`${x.nick}!`));
    await watcher.waitFor("731 offline", (m) => m.command === "731" && m.params[1] === "ghost");
    await watcher.send("JOIN #w");
    await watcher.waitFor("366", (m) => m.command === "366");
    await x.join("#w");
    await y.join("#w");
    x.raw("AWAY :lunch");
    y.raw("SETNAME :New Name");
    await watcher.waitFor(
      "AWAY",
      (m) => m.command === "AWAY" && m.prefix.startsWith(`${x.nick}!`) && m.params[0] === "lunch",
    );
    await watcher.waitFor("SETNAME", (m) => m.command === "SETNAME" && m.params[0] === "New Name");
    watcher.send(`MODE #w +o ${x.nick}`);
    await x.waitLine("op", (m) => m.command === "MODE" && m.params[2] === x.nick);
    x.raw(`INVITE ghostly #w`);
    await x.waitLine("401", (m) => m.command === "401");
    const late = await LibClient.connect(ircPort, "ghost");
    await watcher.waitFor("730 ghost", (m) => m.command === "730" && m.params[1]!.startsWith("ghost!"));
    x.raw("INVITE ghost #w");
    await late.waitLine("INVITE", (m) => m.command === "INVITE" && m.params[1] === "#w");
    await watcher.waitFor("invite-notify to an op", (m) => m.command === "INVITE" && m.params[0] === "ghost");
    await late.quit();
    await watcher.waitFor("731 ghost", (m) => m.command === "731" && m.params[1] === "ghost");
    // WHOX, multi-prefix, WHOWAS, LUSERS.
    await watcher.send(`MODE #w +v ${x.nick}`, "WHO #w %tnfa,42", "WHOWAS ghost", "LUSERS");
    await watcher.waitFor(
      "354 with both prefixes",
      (m) => m.command === "354" && m.params[1] === "42" && m.params[2] === x.nick && m.params[3] === "G@+",
    );
    await watcher.waitFor("314", (m) => m.command === "314" && m.params[1] === "ghost");
    await watcher.waitFor("266", (m) => m.command === "266");
    await watcher.close();
    await x.quit();
    await y.quit();
  });
});

Deno.test("chat IRCv3: --irc-register verify: REGISTER and NickServ REGISTER wait for VERIFY with the code in the server's log; no password is ever logged", async () => {
  await withChat({ workers: 1, flags: [...FLAGS, "--irc-register=verify"] }, async (inst, { ircPort }) => {
    const codeOf = (name: string) =>
      inst.logs().match(new RegExp(`account "?${name}"? waits for verification: its code is "?([^"\\s]+)"?`))
        ?.[1];
    // IRCv3 draft/account-registration, before connection registration.
    const a = await RawIrc.connect(ircPort);
    await a.send("CAP LS 302", "NICK vera", "REGISTER * * first-secret-pw");
    await a.waitFor(
      "VERIFICATION_REQUIRED",
      (m) => m.command === "REGISTER" && m.params[0] === "VERIFICATION_REQUIRED",
    );
    await waitFor("vera's code in the log", () => codeOf("vera") !== undefined);
    await a.send("VERIFY vera not-the-code");
    await a.waitFor(
      "FAIL VERIFY",
      (m) => m.command === "FAIL" && m.params[0] === "VERIFY" && m.params[2] === "vera",
    );
    await a.send(`VERIFY vera ${codeOf("vera")}`);
    await a.waitFor(
      "SUCCESS",
      (m) => m.command === "VERIFY" && m.params[0] === "SUCCESS" && m.params[1] === "vera",
    );
    await a.waitFor("900", (m) => m.command === "900" && m.params[2] === "vera");
    await a.send("CAP END", "USER vera 0 * :Vera");
    await a.waitFor("001", (m) => m.command === "001");
    // NickServ, for a client that knows nothing of IRCv3.
    const b = await rawWith(ircPort, "nico", []);
    await b.send("PRIVMSG NickServ :REGISTER second-secret-pw");
    await b.waitFor("waits", (m) => m.command === "NOTICE" && /waits for verification/.test(m.params[1]!));
    await waitFor("nico's code in the log", () => codeOf("nico") !== undefined);
    await b.send("PRIVMSG NickServ :IDENTIFY second-secret-pw");
    await b.waitFor(
      "refused while unverified",
      (m) => m.command === "NOTICE" && /Invalid/.test(m.params[1]!),
    );
    await b.send(`PRIVMSG NickServ :VERIFY nico ${codeOf("nico")}`);
    await b.waitFor("verified", (m) => m.command === "NOTICE" && m.params[1] === "Account nico verified");
    await b.waitFor("900", (m) => m.command === "900" && m.params[2] === "nico");
    await b.send("WHOIS vera");
    await b.waitFor("330", (m) => m.command === "330" && m.params[2] === "vera");
    await a.close();
    await b.close();
    for (const pw of ["first-secret-pw", "second-secret-pw"]) {
      assert.equal(inst.logs().includes(pw), false, `the log never shows a password (${pw})`);
    }
  });
});

Deno.test("chat IRCv3: NAMES with userhost-in-names and multi-prefix shows every prefix and nick!user@host", async () => {
  await withChat({ workers: 1, flags: FLAGS }, async (_inst, { ircPort }) => {
    const op = await rawWith(ircPort, "opal", ["userhost-in-names", "multi-prefix"]);
    const plain = await rawWith(ircPort, "plain", []);
    await op.send("JOIN #n");
    await op.waitFor("366", (m) => m.command === "366");
    await plain.send("JOIN #n");
    await plain.waitFor("366", (m) => m.command === "366");
    await op.send("MODE #n +v opal");
    await op.waitFor("+v", (m) => m.command === "MODE" && m.params[1] === "+v");
    /** The names a NAMES of #n shows `c`, sorted. */
    const names = async (c: RawIrc) => {
      const from = c.seen.length;
      await c.send("NAMES #n");
      await c.waitFor("366 after NAMES", (m) => m.command === "366" && c.seen.indexOf(m) >= from);
      return after(c, from).filter((m) => m.command === "353").flatMap((m) => m.params.at(-1)!.split(" "))
        .sort();
    };
    assert.deepEqual(await names(op), ["@+opal!~opal@127.0.0.1", "plain!~plain@127.0.0.1"]);
    // Without the capabilities: the highest prefix and the nick only.
    assert.deepEqual(await names(plain), ["@opal", "plain"]);
    await op.close();
    await plain.close();
  });
});
