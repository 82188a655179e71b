/**
 * The IRC port's sockets, both ways they can be driven (`--irc-io epoll`, the
 * default, and `deno`): descriptors after hundreds of connections of every
 * fate, a burst far past what the kernel buffers for a slow reader (writes
 * the socket takes only part of), stopping with clients connected, and, in
 * this process, the epoll listener's peer addresses (what admission counts
 * by) against the runtime's.
 */
import assert from "node:assert/strict";
import * as libc from "../mod/sys/libc.ts";
import { EpollListener } from "../mod/chat/epoll_listener.ts";
import { peerHost } from "../mod/chat/epoll_socket.ts";
import { parseIp } from "../mod/net/ip_addr.ts";
import { assertNothingLeft, freePorts, startInstance, waitFor } from "./harness.ts";
import { RawIrc } from "./support/irc.ts";
import { chatFlags, newChatPlace, withChat } from "./support/chat_instance.ts";
import { makeNet, namespacesUsable } from "./support/netns.ts";

const usable = await namespacesUsable();

const IOS = ["epoll", "deno"] as const;

/** Descriptors a process holds (read with libc: Deno grants /proc/<pid> only with --allow-all). */
function descriptors(pid: number): number {
  return libc.listDir(`/proc/${pid}/fd`)!.length;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client on a libc socket with a small receive window, read only when the test says so. */
class SmallWindow {
  readonly fd: number;
  #text = "";
  readonly #decoder = new TextDecoder();

  constructor(port: number, host: string | Uint8Array = "127.0.0.1") {
    this.fd = libc.abortiveConnect(host, port, 4096);
    libc.setNonBlocking(this.fd, true);
  }

  async send(text: string): Promise<void> {
    let bytes = new TextEncoder().encode(text);
    while (bytes.length > 0) {
      const n = libc.write(this.fd, bytes);
      if (n === -libc.E.EAGAIN) await sleep(5);
      else if (n < 0) throw new Error(`write failed: errno ${-n}`);
      else bytes = bytes.subarray(n);
    }
  }

  /** Reads until `done(text so far)`; throws at the end of the stream. */
  async readUntil(what: string, done: (text: string) => boolean, timeoutMs = 30_000): Promise<string> {
    const buf = new Uint8Array(64 * 1024);
    const deadline = Date.now() + timeoutMs;
    while (!done(this.#text)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      const n = libc.readNow(this.fd, buf);
      if (n === -libc.E.EAGAIN) await sleep(5);
      else if (n <= 0) throw new Error(`the server closed the connection before ${what}`);
      else this.#text += this.#decoder.decode(buf.subarray(0, n), { stream: true });
    }
    return this.#text;
  }

  close(): void {
    libc.close(this.fd);
  }
}

for (const io of IOS) {
  Deno.test(`chat (--irc-io ${io}): connections registered, refused, reset and dropped by the hundred leave no descriptor behind`, async () => {
    const flags = [`--irc-io=${io}`, "--irc-max-clients-per-addr=20", "--irc-flood-rate=0"];
    await withChat({ workers: 1, flags }, async (inst, { ircPort }) => {
      const pid = (await inst.status()).workers[0]!.pid;
      const warm = await RawIrc.connect(ircPort); // the store and the runtime's threads, opened once
      await warm.register("warm");
      await warm.send("QUIT");
      await waitFor("warm closed", () => warm.eof);
      await warm.close();
      const before = descriptors(pid);
      const settled = () =>
        waitFor("the worker's descriptors back to where they were", () => descriptors(pid) <= before, 20_000);
      for (let round = 0; round < 5; round++) {
        await settled(); // the last round's connections closed: the cap counts only this round's
        const registered: RawIrc[] = [];
        for (let i = 0; i < 20; i++) {
          const c = await RawIrc.connect(ircPort);
          await c.register(`r${round}n${i}`);
          registered.push(c);
        }
        const refused = await Promise.all(Array.from({ length: 10 }, () => RawIrc.connect(ircPort)));
        for (const c of refused) {
          const err = await c.waitFor("ERROR", (m) => m.command === "ERROR");
          assert.match(err.params[0]!, /too many connections/);
          await waitFor("refused closed", () => c.eof);
          await c.close();
        }
        for (let i = 0; i < 10; i++) libc.close(libc.abortiveConnect("127.0.0.1", ircPort)); // RST at once
        for (const [i, c] of registered.entries()) {
          if (i % 2 === 0) await c.send("QUIT :bye");
          await c.close();
        }
        const silent = await Promise.all(Array.from({ length: 20 }, () => RawIrc.connect(ircPort, false)));
        for (const c of silent) await c.close();
      }
      await settled();
      const after = await RawIrc.connect(ircPort); // and the port still serves
      await after.register("after");
      await after.close();
    });
  });

  Deno.test(`chat (--irc-io ${io}): a burst far past the socket buffers to a reader that reads later arrives whole and in order, the others served meanwhile`, async () => {
    const flags = [`--irc-io=${io}`, "--irc-flood-rate=0", `--irc-sendq-bytes=${4 << 20}`];
    await withChat({ workers: 1, flags }, async (_inst, { ircPort }) => {
      const late = new SmallWindow(ircPort);
      try {
        await late.send("NICK late\r\nUSER l 0 * :l\r\nJOIN #burst\r\n");
        await late.readUntil("366", (t) => / 366 late #burst /.test(t));
        const reader = await RawIrc.connect(ircPort);
        await reader.register("reader");
        const sender = await RawIrc.connect(ircPort);
        await sender.register("sender");
        for (const c of [reader, sender]) {
          await c.send("JOIN #burst");
          await c.waitFor("366", (m) => m.command === "366");
        }
        const n = 2_000, text = "z".repeat(400); // ~900 KB: the late reader's kernel holds a few KB of it
        for (let i = 0; i < n; i += 200) {
          await sender.send(...Array.from({ length: 200 }, (_, j) => `PRIVMSG #burst :${i + j} ${text}`));
        }
        const got = () => reader.seen.filter((m) => m.command === "PRIVMSG").length;
        await waitFor(`the reader got all ${n}`, () => got() === n, 30_000);
        assert.ok(!reader.seen.some((m) => m.command === "QUIT"), "the late reader is still there");
        const all = await late.readUntil(`message ${n - 1}`, (t) => t.includes(`:${n - 1} ${text}\r\n`));
        const numbers = [...all.matchAll(/PRIVMSG #burst :(\d+) z+\r\n/g)].map((m) => Number(m[1]));
        assert.deepEqual(numbers, Array.from({ length: n }, (_, i) => i));
        await sender.close();
        await reader.close();
      } finally {
        late.close();
      }
    });
  });

  Deno.test(`chat (--irc-io ${io}): a client's last line and the end of its stream arriving together are both seen`, async () => {
    await withChat(
      { workers: 1, flags: [`--irc-io=${io}`, "--irc-flood-rate=0"] },
      async (_inst, { ircPort }) => {
        const witness = await RawIrc.connect(ircPort);
        await witness.register("witness");
        await witness.send("JOIN #end");
        await witness.waitFor("366", (m) => m.command === "366");
        const from = (nick: string) => (m: { prefix: string }) => m.prefix.startsWith(`${nick}!`);
        for (let i = 0; i < 20; i++) {
          const c = new SmallWindow(ircPort);
          const nick = `e${i}`;
          await c.send(`NICK ${nick}\r\nUSER e 0 * :e\r\nJOIN #end\r\n`);
          await witness.waitFor(`${nick} joined`, (m) => m.command === "JOIN" && from(nick)(m));
          // A short line and the end right behind it (two calls, microseconds apart: usually one readiness
          // event): the server reads fewer bytes than it asked for, and must still see the end.
          libc.write(c.fd, new TextEncoder().encode(`PRIVMSG #end :last words ${i}`));
          libc.shutdownWrite(c.fd);
          await witness.waitFor(
            `${nick}'s last words`,
            (m) => m.command === "PRIVMSG" && m.params[1] === `last words ${i}`,
          );
          await witness.waitFor(`${nick} left`, (m) => m.command === "QUIT" && from(nick)(m), 5_000);
          c.close();
        }
        await witness.close();
      },
    );
  });

  Deno.test(`chat (--irc-io ${io}): stopping with clients connected ends each with an ERROR and exits cleanly`, async () => {
    const place = newChatPlace();
    const inst = await startInstance({
      workers: 2,
      flags: [...chatFlags(place), `--irc-io=${io}`, "--irc-max-clients-per-addr=1000"],
    });
    try {
      const registered: RawIrc[] = [];
      for (let i = 0; i < 40; i++) {
        const c = await RawIrc.connect(place.ircPort);
        await c.register(`s${i}`);
        registered.push(c);
      }
      const silent = await Promise.all(Array.from({ length: 40 }, () => RawIrc.connect(place.ircPort)));
      assert.equal(await inst.stop(), 0);
      for (const c of [...registered, ...silent]) {
        await waitFor("closed by the server", () => c.eof);
        await c.close();
      }
      for (const c of registered) {
        assert.ok(c.seen.some((m) => m.command === "ERROR" && /shutting down/i.test(m.params[0] ?? "")));
      }
      await assertNothingLeft(inst);
    } finally {
      await inst.stop().catch(() => {});
      Deno.removeSync(place.dataDir, { recursive: true });
    }
  });
}

Deno.test("chat epoll listener: peer addresses are written as the runtime writes them (admission counts by them)", async () => {
  for (
    const [text, want] of [
      ["127.0.0.1", "127.0.0.1"],
      ["10.1.2.3", "10.1.2.3"],
      ["::1", "::1"],
      ["2001:db8::1", "2001:db8::1"],
      ["::ffff:127.0.0.2", "::ffff:127.0.0.2"],
      ["fe80::1:0:0:1", "fe80::1:0:0:1"],
    ]
  ) assert.equal(peerHost(parseIp(text!)!), want);
  // The same client, through the runtime's listener and through ours.
  const [denoPort, epollPort] = [freePorts(1), freePorts(1)];
  const runtime = Deno.listen({ hostname: "127.0.0.1", port: denoPort });
  const ours = EpollListener.listen("127.0.0.1", epollPort);
  const seen = Promise.withResolvers<Deno.NetAddr>();
  ours.serve((s) => {
    seen.resolve(s.remoteAddr as Deno.NetAddr);
    s.close();
    return Promise.resolve();
  });
  const a = await Deno.connect({ hostname: "127.0.0.1", port: denoPort });
  const viaRuntime = (await runtime.accept()).remoteAddr as Deno.NetAddr;
  const b = await Deno.connect({ hostname: "127.0.0.1", port: epollPort });
  const viaEpoll = await seen.promise;
  assert.equal(viaEpoll.hostname, viaRuntime.hostname);
  assert.equal(viaEpoll.port, (b.localAddr as Deno.NetAddr).port);
  a.close();
  b.close();
  runtime.close();
  ours.close();
  await ours.closed();
});

Deno.test({
  name:
    "chat: peers from IPv4 and IPv6 addresses (not loopback) are shown and admitted by address the same with --irc-io epoll and deno",
  ignore: !usable.ok,
  async fn() {
    await using net = await makeNet(1);
    const host = net.hosts[0]!;
    // An IPv6 subnet beside the IPv4 one: the bridge (this side) ::1, the host ::2 (nodad: usable at once).
    const v6 = `fd00:${Math.floor(Math.random() * 0xffff).toString(16)}::`;
    const ip = async (...args: string[]) => {
      const o = await new Deno.Command("ip", { args, stderr: "piped" }).output();
      assert.ok(o.success, new TextDecoder().decode(o.stderr));
    };
    const inner = `oi${host.cable.slice(2)}`; // netns.ts names a host's two cable ends oc… and oi…
    const master = JSON.parse(new TextDecoder().decode(
      (await new Deno.Command("ip", { args: ["-j", "link", "show", host.cable], stdout: "piped" }).output())
        .stdout,
    ))[0].master as string;
    await ip("-6", "addr", "add", `${v6}1/64`, "dev", master, "nodad");
    await ip("-n", host.ns, "-6", "addr", "add", `${v6}2/64`, "dev", inner, "nodad");
    const targets = [parseIp(host.addr)!, parseIp(`${v6}2`)!];
    const shown: Record<string, string[]> = {};
    for (const io of IOS) {
      const place = newChatPlace();
      const inst = await startInstance({
        workers: 1,
        wrap: host.wrap,
        flags: ["--host=::", ...chatFlags(place), `--irc-io=${io}`, "--irc-max-clients-per-addr=2"],
      });
      const open: SmallWindow[] = [];
      try {
        shown[io] = [];
        for (const [t, target] of targets.entries()) {
          for (let i = 0; i < 2; i++) { // two from this address: at its cap
            const c = new SmallWindow(place.ircPort, target);
            open.push(c);
            const nick = `a${t}n${i}`;
            await c.send(`NICK ${nick}\r\nUSER u 0 * :u\r\nWHOIS ${nick}\r\nWHO ${nick}\r\n`);
            const text = await c.readUntil("311 and 352", (x) => new RegExp(` 352 ${nick} `).test(x));
            const whois = new RegExp(` 311 ${nick} ${nick} ~?u (\\S+) `).exec(text)![1]!;
            const who = new RegExp(` 352 ${nick} \\S+ ~?u (\\S+) \\S+ ${nick} `).exec(text)?.[1];
            assert.equal(who, whois, `WHO shows ${nick}'s host as WHOIS does: ${text}`);
            shown[io].push(whois);
          }
          const third = new SmallWindow(place.ircPort, target); // a third from it is refused; the other address is not
          open.push(third);
          await third.send("NICK x\r\nUSER x 0 * :x\r\n");
          await third.readUntil("its refusal", (x) => /ERROR :Closing Link: .*too many connections/.test(x));
        }
      } finally {
        for (const c of open) c.close();
        assert.equal(await inst.stop(), 0);
        Deno.removeSync(place.dataDir, { recursive: true });
      }
    }
    const [a, b] = [host.addr.split(".").slice(0, 3).join(".") + ".1", `${v6}1`];
    assert.deepEqual(shown.deno, [`0::ffff:${a}`, `0::ffff:${a}`, b, b]);
    assert.deepEqual(shown.epoll, shown.deno);
  },
});
