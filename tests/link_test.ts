/**
 * The TCP worker link's door, tried by peers that are not ours: a captured
 * handshake replayed, forged frames after a real one, garbage, a crowd of
 * connections that never authenticate, and secret files others could read.
 * None of it gets in, none of it disturbs the instance.
 */
import assert from "node:assert/strict";
import { Frame, hmac, jsonPayload, LinkChannel, parseJson } from "../mod/link/link_wire.ts";
import { freePorts, osps, startInstance, withInstance } from "./harness.ts";
import { getuid } from "../mod/sys/libc.ts";
import { secretFile } from "./support/secret_file.ts";

const SECRET = "f".repeat(16) + crypto.randomUUID().replaceAll("-", "");
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));

async function open(port: number): Promise<LinkChannel> {
  return new LinkChannel(await Deno.connect({ hostname: "127.0.0.1", port }));
}

Deno.test("a captured handshake replayed by another peer is refused; forged frames after a real one drop the link", async () => {
  const secret = secretFile(SECRET + "\n");
  const port = freePorts(4);
  try {
    await withInstance(
      { workers: 1, port, flags: [`--link-port=${port + 3}`, `--secret-file=${secret}`] },
      async (inst) => {
        const key = new TextEncoder().encode(SECRET);
        // A real worker's handshake, as a sniffer on the network would capture it.
        const first = await open(port + 3);
        const hello = parseJson((await first.read(5_000))!);
        const nonceW = crypto.getRandomValues(new Uint8Array(32));
        const who = JSON.stringify({
          host: "127.0.0.1",
          port: 1,
          id: 1,
          pid: 1,
          watchdogPid: 1,
          served: 0,
          state: "idle",
        });
        const mac = hmac(key, "osps-link/1 worker proof", unhex(String(hello.nonce)), nonceW, who);
        const auth = jsonPayload({ v: "osps-link/1", nonce: hex(nonceW), who, mac: hex(mac) });
        first.send(Frame.AUTH, auth);
        assert.equal((await first.read(5_000))!.type, Frame.WELCOME, "the real handshake succeeds");
        // Frames after the handshake must carry the session's MAC: an unkeyed (forged) one drops the link.
        first.send(Frame.DONE, jsonPayload({ served: 99 }));
        assert.equal(await first.read(5_000), null, "a forged frame closes the link");
        first.close();
        // The same AUTH replayed by another peer, to a fresh HELLO: refused.
        const replay = await open(port + 3);
        await replay.read(5_000);
        replay.send(Frame.AUTH, auth);
        const answer = (await replay.read(5_000))!;
        assert.equal(answer.type, Frame.REFUSED);
        assert.match(String(parseJson(answer).reason), /authentication failed/);
        assert.equal(await replay.read(5_000), null);
        replay.close();
        const s = await inst.status();
        const far = s.workers.filter((w) => w.link !== "local");
        assert.deepEqual(
          far.map((w) => w.link),
          ["lost"],
          "only the real worker ever had a slot (now lost), not the replay",
        );
        assert.equal((await inst.client(["echo", "fine"])).stdout, "fine\n");
      },
    );
  } finally {
    Deno.removeSync(secret);
  }
});

Deno.test("garbage and a crowd of unauthenticated connections on the link port are refused; the dispatcher never restarts", async () => {
  const secret = secretFile(SECRET);
  const port = freePorts(4);
  try {
    await withInstance(
      { workers: 1, port, flags: [`--link-port=${port + 3}`, `--secret-file=${secret}`] },
      async (inst) => {
        const before = await inst.status();
        // Garbage: a huge length, random bytes, a wrong version.
        for (
          const bytes of [
            Uint8Array.of(0xff, 0xff, 0xff, 0x7f, 1),
            crypto.getRandomValues(new Uint8Array(300)),
          ]
        ) {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: port + 3 });
          await c.write(bytes).catch(() => {});
          const buf = new Uint8Array(4096);
          while ((await c.read(buf).catch(() => null)) !== null) { /* until closed */ }
          c.close();
        }
        const wrongVersion = await open(port + 3);
        await wrongVersion.read(5_000);
        wrongVersion.send(Frame.AUTH, jsonPayload({ v: "osps-link/9" }));
        assert.match(String(parseJson((await wrongVersion.read(5_000))!).reason), /speaks osps-link\/9/);
        wrongVersion.close();
        // 60 connections that say nothing: at most a few are handled at once, the rest refused at once.
        const crowd = await Promise.all(Array.from({ length: 60 }, () => open(port + 3)));
        const first = await Promise.all(crowd.map((c) => c.read(10_000).catch(() => null)));
        const refused = first.filter((f) => f?.type === Frame.REFUSED).length;
        assert.ok(refused > 0, "some refused: too many link attempts at once");
        for (const c of crowd) c.close();
        await new Promise((r) => setTimeout(r, 200));
        const after = await inst.status();
        assert.equal(after.dispatcher.pid, before.dispatcher.pid);
        assert.equal(after.dispatcher.restarts, 0);
        assert.equal((await inst.client(["echo", "fine"])).stdout, "fine\n");
        assert.match(inst.logs(), /link attempt from .* refused: too many link attempts at once/);
      },
    );
  } finally {
    Deno.removeSync(secret);
  }
});

Deno.test("a secret file others could read, a short one, or one not ours is refused at start with the mend", async () => {
  const cases: Array<[string, RegExp]> = [
    [secretFile(SECRET, 0o644), /is mode 644: others may read it; run chmod 600/],
    [secretFile("short", 0o600), /holds 5 bytes; it needs at least 32 random ones \(osps secret >/],
  ];
  if (getuid() === 0) {
    const theirs = secretFile(SECRET, 0o600);
    Deno.chownSync(theirs, 65534, 65534);
    cases.push([theirs, /belongs to uid 65534, not to this user/]);
  }
  try {
    for (const [file, why] of cases) {
      const inst = await startInstance({
        workers: 1,
        flags: [`--link-port=${freePorts(1)}`, `--secret-file=${file}`],
        expectFailure: true,
      });
      assert.equal(await inst.exited(), 100, inst.logs()); // cannot boot: a bad configuration, not retried
      assert.match(inst.logs(), why);
    }
    const made = await osps(["secret"]);
    assert.match(made.stdout, /^[0-9a-f]{64}\n$/);
  } finally {
    for (const [file] of cases) Deno.removeSync(file);
  }
});

/** Answers the dispatcher's HELLO as a worker proving `key`; returns the type of its answer. */
async function handshake(port: number, key: string): Promise<number> {
  const ch = await open(port);
  try {
    const hello = parseJson((await ch.read(5_000))!);
    const nonceW = crypto.getRandomValues(new Uint8Array(32));
    const who = JSON.stringify({
      host: "127.0.0.9",
      port: 9,
      id: 1,
      pid: 1,
      watchdogPid: 1,
      served: 0,
      state: "idle",
    });
    const mac = hmac(
      new TextEncoder().encode(key),
      "osps-link/1 worker proof",
      unhex(String(hello.nonce)),
      nonceW,
      who,
    );
    ch.send(Frame.AUTH, jsonPayload({ v: "osps-link/1", nonce: hex(nonceW), who, mac: hex(mac) }));
    return (await ch.read(5_000))!.type;
  } finally {
    ch.close();
  }
}

Deno.test("during a secret rotation the dispatcher accepts workers proving the new or the old secret, nothing else", async () => {
  const NEW = "n".repeat(40), OLD = "o".repeat(40);
  const secret = secretFile(`${NEW}\n${OLD}\n`);
  const port = freePorts(4);
  try {
    await withInstance(
      { workers: 1, port, flags: [`--link-port=${port + 3}`, `--secret-file=${secret}`] },
      async () => {
        assert.equal(await handshake(port + 3, NEW), Frame.WELCOME);
        assert.equal(await handshake(port + 3, OLD), Frame.WELCOME);
        assert.equal(await handshake(port + 3, "x".repeat(40)), Frame.REFUSED);
      },
    );
  } finally {
    Deno.removeSync(secret);
  }
});
