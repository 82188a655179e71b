/**
 * The web chat page in a real browser (headless Chromium, driven over the
 * DevTools protocol): a person joins a channel from the page, reads its
 * history, chats with irssi-like IRC users (a real IRC client library), and
 * sees them arrive and leave, live; then the same with irssi itself (Debian's
 * irssi in a real terminal, tmux), as a person would chat with the page.
 */
import assert from "node:assert/strict";
import { freePorts, waitFor } from "./harness.ts";
import { withChat } from "./support/chat_instance.ts";
import { LibClient } from "./support/irc.ts";
import { Chromium } from "./support/chromium.ts";
import { missingProgram } from "./support/requires.ts";
import { shellQuote, Terminal } from "./support/tmux.ts";

interface Shown {
  kind: string;
  nick: string | null;
  text: string;
  cls: string;
}

/** What the page's log and member list show. */
async function seen(browser: Chromium): Promise<{ log: Shown[]; members: string[]; state: string }> {
  return await browser.evaluate(`({
    log: [...document.querySelectorAll("#log li")].map((li) => ({
      kind: li.dataset.kind, nick: li.dataset.nick ?? null, text: li.textContent, cls: li.className })),
    members: [...document.querySelectorAll("#members li")].map((li) => li.textContent),
    state: document.getElementById("state").textContent,
  })`);
}

type Shows = Awaited<ReturnType<typeof seen>>;

/** Joins `channel` as `nick` from the page's form. */
async function joinFromPage(browser: Chromium, nick: string, channel: string): Promise<void> {
  await browser.evaluate(`(() => {
    document.getElementById("nick").value = ${JSON.stringify(nick)};
    document.getElementById("channel").value = ${JSON.stringify(channel)};
    document.getElementById("join").requestSubmit();
  })()`);
}

/** Waits until the page shows what `pred` accepts; what it shows then. */
function pageShows(browser: Chromium, timeoutMs: number) {
  return (what: string, pred: (s: Shows) => boolean): Promise<Shows> =>
    waitFor(`page: ${what}`, async () => {
      const s = await seen(browser);
      return pred(s) ? s : null;
    }, timeoutMs);
}

Deno.test("the web chat page joins a channel, shows its history, chats with IRC users and sees them come and go", async () => {
  const httpPort = freePorts(1);
  const base = `http://127.0.0.1:${httpPort}`;
  await withChat(
    { workers: 2, flags: [`--http-port=${httpPort}`, "--irc-flood-rate=0"] },
    async (_inst, place) => {
      const alice = await LibClient.connect(place.ircPort, "alice");
      await alice.join("#osps");
      alice.raw("PRIVMSG #osps :said before the browser came");
      alice.raw("TOPIC #osps :the osps room");
      await alice.waitLine("topic", (m) => m.command === "TOPIC");

      await using browser = await Chromium.launch();
      await browser.goto(`${base}/`);
      assert.equal(await browser.evaluate("document.title"), "osps chat");
      await joinFromPage(browser, "webuser", "#osps");
      const wait = pageShows(browser, 15_000);

      // History and members on joining; alice sees the web user arrive.
      const joined = await wait(
        "history and members",
        (s) =>
          s.log.some((l) => l.text.includes("said before the browser came")) && s.members.includes("@alice"),
      );
      assert.ok(
        joined.log.find((l) => l.text.includes("said before the browser came"))!.cls.includes("history"),
      );
      assert.ok(joined.log.some((l) => l.text.includes("topic: the osps room")));
      assert.deepEqual(joined.members.sort(), ["@alice", "webuser"]);
      assert.match(joined.state, /^connected as webuser$/);
      await alice.waitLine("webuser joins", (m) => m.command === "JOIN" && m.nick === "webuser");

      // The page posts; alice receives. Alice posts; the page shows it.
      await browser.evaluate(`(() => {
      document.getElementById("text").value = "hello from the browser <b>not bold</b>";
      document.getElementById("say").requestSubmit();
    })()`);
      await alice.waitLine(
        "the page's message",
        (m) =>
          m.command === "PRIVMSG" && m.nick === "webuser" &&
          m.params[1] === "hello from the browser <b>not bold</b>",
      );
      alice.raw("PRIVMSG #osps :hello, browser");
      await wait(
        "alice's message",
        (s) => s.log.some((l) => l.nick === "alice" && l.text.endsWith("hello, browser")),
      );
      assert.equal(
        await browser.evaluate(`document.querySelectorAll("#log b").length`),
        0,
        "text, never markup",
      );

      // Others come and go, live.
      const bob = await LibClient.connect(place.ircPort, "bob");
      await bob.join("#osps");
      await wait("bob arrives", (s) =>
        s.log.some((l) => l.nick === "bob" && l.cls.includes("arrival")) &&
        s.members.includes("bob"));
      await bob.quit("off to lunch");
      const left = await wait(
        "bob leaves",
        (s) =>
          s.log.some((l) => l.nick === "bob" && l.cls.includes("departure")) && !s.members.includes("bob"),
      );
      assert.ok(
        left.log.find((l) => l.nick === "bob" && l.cls.includes("departure"))!.text.includes("off to lunch"),
      );

      // The page leaving is a QUIT for the others.
      await browser.goto("about:blank");
      await alice.waitLine("webuser leaves", (m) => m.command === "QUIT" && m.nick === "webuser");
      await alice.quit();
    },
  );
});

const noIrssi = (await missingProgram("irssi", "--version")) || (await missingProgram("tmux", "-V"));
if (noIrssi) console.log(`web page and irssi test skipped: ${noIrssi}`);

Deno.test({
  name: "the web chat page and irssi (in a terminal) chat in one channel and see each other come and go",
  ignore: noIrssi !== "",
}, async () => {
  const httpPort = freePorts(1);
  await withChat(
    { workers: 2, flags: [`--http-port=${httpPort}`, "--irc-flood-rate=0"] },
    async (_inst, place) => {
      const home = Deno.makeTempDirSync({ prefix: "osps-irssi-" });
      const irssi = ["irssi", `--home=${home}`, "-n", "alice", "-c", "127.0.0.1", "-p", String(place.ircPort)]
        .map(shellQuote).join(" ");
      try {
        await using term = await Terminal.start(irssi, 200, 40);
        const onScreen = (what: string, re: RegExp) =>
          waitFor(`irssi: ${what}`, async () => {
            const s = await term.screen();
            return re.test(s) ? s : null;
          }, 30_000);
        await onScreen("registered", /Welcome to the/);
        await term.type("/join #web");
        await onScreen("joined", /alice .*has joined #web/);

        await using browser = await Chromium.launch();
        await browser.goto(`http://127.0.0.1:${httpPort}/`);
        await joinFromPage(browser, "webuser", "#web");
        const page = pageShows(browser, 30_000);
        await page(
          "alice among the members",
          (s) => s.members.includes("@alice") && s.members.includes("webuser"),
        );
        await onScreen("webuser arrives", /webuser .*has joined #web/);

        await browser.evaluate(`(() => {
          document.getElementById("text").value = "hello irssi, from the browser";
          document.getElementById("say").requestSubmit();
        })()`);
        await onScreen("the page's message", /<.?webuser> hello irssi, from the browser/);

        await term.type("hello browser, from irssi");
        await page(
          "irssi's message",
          (s) => s.log.some((l) => l.nick === "alice" && l.text.endsWith("hello browser, from irssi")),
        );

        await term.type("/quit bye from irssi");
        const left = await page("alice leaves", (s) => !s.members.includes("@alice"));
        assert.ok(
          left.log.some((l) =>
            l.nick === "alice" && l.cls.includes("departure") && l.text.includes("bye from irssi")
          ),
        );
      } finally {
        Deno.removeSync(home, { recursive: true });
      }
    },
  );
});
