/**
 * `osps chat` as a person uses it, typing on its stdin and reading its
 * stdout while IRC clients talk to it: other users' bytes never act on the
 * terminal, `/nick` and `/part` change what later lines do, `/quote` replies
 * are shown, and a server that goes away ends the session at once.
 */
import assert from "node:assert/strict";
import { RUN_FLAGS, waitFor } from "./harness.ts";
import { withChat } from "./support/chat_instance.ts";
import { RawIrc } from "./support/irc.ts";
import { printable } from "../mod/client/chat_view.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** A running `osps chat`: type lines, wait for what it shows. */
class Chat {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  out = "";
  readonly #read: Promise<void>;

  constructor(port: number, nick: string, rooms: string[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [...RUN_FLAGS, MAIN, "chat", `--port=${port}`, `--nick=${nick}`, "--history=0", ...rooms],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    const stdout = this.#child.stdout;
    this.#read = (async () => {
      for await (const c of stdout.pipeThrough(new TextDecoderStream())) this.out += c;
    })();
  }

  /** Types a line (Enter included); false when the chat no longer reads. */
  async type(line: string): Promise<boolean> {
    try {
      await this.#stdin.write(new TextEncoder().encode(line + "\n"));
      return true;
    } catch {
      return false;
    }
  }

  /** Waits until its output matches `re`; returns the match. */
  shows(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    return waitFor(`osps chat to show ${re}`, () => this.out.match(re), timeoutMs);
  }

  /** Its exit code (stdin left open: it must end by itself). */
  async exit(timeoutMs = 10_000): Promise<number> {
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), timeoutMs);
    const s = await this.#child.status;
    clearTimeout(timer);
    await this.#read;
    await this.#stdin.close().catch(() => {});
    return s.code;
  }
}

async function observer(port: number, nick: string, rooms: string[]): Promise<RawIrc> {
  const irc = await RawIrc.connect(port);
  await irc.register(nick);
  for (const r of rooms) {
    await irc.send(`JOIN ${r}`);
    await irc.waitFor(`${nick} in ${r}`, (m) => m.command === "366" && m.params[1] === r);
  }
  return irc;
}

Deno.test("osps chat prints other users' escape sequences as visible text, never as terminal control", async () => {
  await withChat({ workers: 1 }, async (inst, { ircPort }) => {
    const mallory = await observer(ircPort, "mallory", ["#t"]);
    const chat = new Chat(inst.port, "alice", ["#t"]);
    await mallory.waitFor("alice joins", (m) => m.command === "JOIN" && m.prefix.startsWith("alice"));
    const evil =
      "\x1b[2J\x1b]0;pwned\x07 \u009b31m red \x02bold\x02 \x0304,12colour\x03 \u202etxt.exe\x08\x08";
    await mallory.send(`PRIVMSG #t :${evil}`);
    await mallory.send("NICK \x1b[5mblink");
    await chat.shows(/<mallory> /);
    await chat.type("/quit");
    assert.equal(await chat.exit(), 0);
    const line = chat.out.split("\n").find((l) => l.includes("<mallory>"))!;
    // deno-lint-ignore no-control-regex -- control characters are what this test looks for
    assert.doesNotMatch(chat.out, /[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f\u202a-\u202e\u2066-\u2069]/);
    assert.match(
      line,
      /<mallory> \^\[\[2J\^\[\]0;pwned\^G \\u009b31m red bold colour \\u202etxt\.exe\^H\^H$/,
    );
    assert.equal(printable("tab\there"), "tab here");
    await mallory.close();
  });
});

Deno.test("osps chat: after /nick lines carry the new nick, after /part they go to the room still joined, /quote replies are shown", async () => {
  await withChat({ workers: 1 }, async (inst, { ircPort }) => {
    const bob = await observer(ircPort, "bob", ["#a", "#b"]);
    const chat = new Chat(inst.port, "carol", ["#a", "#b"]);
    await chat.shows(/connected as carol; talking in #b/);
    await bob.waitFor("carol in #b", (m) => m.command === "JOIN" && m.params[0] === "#b");

    await chat.type("/nick carla");
    await chat.shows(/\* carol is now carla/);
    await chat.type("renamed");
    await chat.shows(/#b <carla> renamed/);
    const said = await bob.waitFor("renamed", (m) => m.command === "PRIVMSG" && m.params[1] === "renamed");
    assert.match(said.prefix, /^carla!/);

    await chat.type("/part");
    await chat.shows(/now talking in #a/);
    await chat.type("after part");
    const after = await bob.waitFor(
      "after part",
      (m) => m.command === "PRIVMSG" && m.params[1] === "after part",
    );
    assert.equal(after.params[0], "#a", "the line goes to the room still joined, not the one left");
    await chat.shows(/#a <carla> after part/);
    await chat.type("/part #a");
    await chat.shows(/not in any channel now/);
    await chat.type("into the void");
    await chat.shows(/join a channel first/);

    await chat.type("/quote WHOIS bob");
    await chat.shows(/^bob ~bob \S+ \* raw bob$/m);
    await chat.type("/quote ISON bob nobody");
    await chat.shows(/^bob$/m);
    await chat.type("/quote JOIN #c");
    await chat.shows(/\* carla joined #c/);
    await chat.type("/quote LIST");
    await chat.shows(/^#c 1 /m);
    await chat.type("/quote MODE #c");
    await chat.shows(/^#c \+nt/m);
    await chat.type("in c"); // a room joined by /quote becomes current when there is none
    await chat.shows(/#c <carla> in c/);
    await chat.type("/quit done");
    assert.equal(await chat.exit(), 0);
    assert.ok(!bob.seen.some((m) => m.command === "PRIVMSG" && m.params[1] === "into the void"));
    await bob.close();
  });
});

Deno.test("osps chat ends at once when the server goes away, says so and exits 3, without showing typed lines as sent", async () => {
  await withChat({ workers: 1 }, async (inst) => {
    const chat = new Chat(inst.port, "dave", ["#z"]);
    await chat.shows(/connected as dave; talking in #z/);
    const worker = (await inst.status()).workers[0]!.pid;
    Deno.kill(worker, "SIGKILL"); // the chat session lives in that worker
    const code = await chat.exit();
    assert.equal(code, 3, chat.out);
    assert.match(chat.out, /osps chat: the server closed the connection/);
    assert.equal(await chat.type("too late"), false, "it no longer reads");
    assert.doesNotMatch(chat.out, /too late/);
  });
});
