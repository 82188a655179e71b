/**
 * The TCP worker link's door, tried by peers that are not ours: a captured
 * handshake replayed, forged frames after a real one, garbage, a crowd of
 * connections that never authenticate, and secret files others could read.
 * None of it gets in, none of it disturbs the instance.
 */
import assert from "node:assert/strict";
import { Frame, hmac, jsonPayload, LinkChannel, parseJson } from "../mod/link/link_wire.ts";
import { freePorts, type Instance, osps, startInstance, waitFor, withInstance } from "./harness.ts";
import { getuid } from "../mod/sys/libc.ts";
import { systemClock } from "../mod/sys/clock.ts";
import { LinkServer } from "../mod/link/link_server.ts";
import { secretFile } from "./support/secret_file.ts";

const SECRET = "f".repeat(16) + crypto.randomUUID().replaceAll("-", "");
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));

async function open(port: number): Promise<LinkChannel> {
  return new LinkChannel(await Deno.connect({ hostname: "127.0.0.1", port }));
}

/**
 * Runs `body` on an instance of one worker with its link port open (`link`),
 * proving `options.secret` (a secret file made for it, removed afterwards).
 */
async function withLink(
  options: { secret?: string; flags?: string[] },
  body: (inst: Instance, link: number, secret: string) => Promise<void>,
): Promise<void> {
  const secret = secretFile(options.secret ?? SECRET);
  const port = freePorts(4);
  try {
    await withInstance(
      {
        workers: 1,
        port,
        flags: [`--link-port=${port + 3}`, `--secret-file=${secret}`, ...(options.flags ?? [])],
      },
      (inst) => body(inst, port + 3, secret),
    );
  } finally {
    Deno.removeSync(secret);
  }
}

/** Answers HELLO with an AUTH of a wrong version (full of control characters); returns the refusal's reason. */
async function wrongVersion(port: number, v = "osps-link/9\nFORGED\x1b[2J"): Promise<string> {
  const ch = await open(port);
  try {
    await ch.read(5_000);
    ch.send(Frame.AUTH, jsonPayload({ v }));
    return String(parseJson((await ch.read(5_000))!).reason);
  } finally {
    ch.close();
  }
}

Deno.test("a captured handshake replayed by another peer is refused; forged frames after a real one drop the link", async () => {
  await withLink({ secret: SECRET + "\n" }, async (inst, link) => {
    const key = new TextEncoder().encode(SECRET);
    // A real worker's handshake, as a sniffer on the network would capture it.
    const first = await open(link);
    const hello = parseJson((await first.read(5_000))!);
    const { payload: auth } = authFrame(key, unhex(String(hello.nonce)), { host: "127.0.0.1", port: 1 });
    first.send(Frame.AUTH, auth);
    assert.equal((await first.read(5_000))!.type, Frame.WELCOME, "the real handshake succeeds");
    // Frames after the handshake must carry the session's MAC: an unkeyed (forged) one drops the link.
    first.send(Frame.DONE, jsonPayload({ served: 99 }));
    assert.equal(await first.read(5_000), null, "a forged frame closes the link");
    first.close();
    // The same AUTH replayed by another peer, to a fresh HELLO: refused.
    const replay = await open(link);
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
  });
});

Deno.test("garbage and a crowd of unauthenticated connections on the link port are refused; the dispatcher never restarts", async () => {
  await withLink({}, async (inst, link) => {
    const before = await inst.status();
    // Garbage: a huge length, random bytes, a wrong version.
    for (
      const bytes of [
        Uint8Array.of(0xff, 0xff, 0xff, 0x7f, 1),
        crypto.getRandomValues(new Uint8Array(300)),
      ]
    ) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: link });
      await c.write(bytes).catch(() => {});
      const buf = new Uint8Array(4096);
      while ((await c.read(buf).catch(() => null)) !== null) { /* until closed */ }
      c.close();
    }
    // A wrong version whose text would forge a log line and clear the operator's terminal.
    assert.match(await wrongVersion(link), /speaks osps-link\/9\nFORGED/);
    // 60 connections that say nothing: at most 8 from one address are in the handshake at once, each newer
    // one taking the oldest's place, which is refused at once.
    const crowd = await Promise.all(Array.from({ length: 60 }, () => open(link)));
    const refusedFirst = async (c: LinkChannel) => {
      for (;;) {
        const f = await c.read(2_000).catch(() => null);
        if (!f || f.type === Frame.REFUSED) return f !== null;
      }
    };
    const refused = (await Promise.all(crowd.map(refusedFirst))).filter(Boolean).length;
    assert.ok(refused >= 52, `${refused} refused: too many link attempts at once`);
    for (const c of crowd) c.close();
    await new Promise((r) => setTimeout(r, 200));
    const after = await inst.status();
    assert.equal(after.dispatcher.pid, before.dispatcher.pid);
    assert.equal(after.dispatcher.restarts, 0);
    assert.equal((await inst.client(["echo", "fine"])).stdout, "fine\n");
    assert.match(inst.logs(), /link attempt from .* refused: too many link attempts at once/);
    // Attacker text reaches the log escaped: no forged line, no terminal control.
    await waitFor("the refusal logged", () => inst.logs().includes("speaks osps-link/9"));
    assert.ok(
      inst.logs().includes("refused: speaks osps-link/9\\nFORGED\\x1b["),
      "escaped in the text log",
    );
    assert.ok(!/^FORGED/m.test(inst.logs()) && !inst.logs().includes("\x1b"), "nothing forged");
  });
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

/**
 * A worker's AUTH answering a HELLO with nonce `nonceD`: proving `secret`, and
 * claiming `who` (merged over a default identity on loopback).
 */
function authFrame(secret: Uint8Array, nonceD: Uint8Array, who: Record<string, unknown> = {}) {
  const nonceW = crypto.getRandomValues(new Uint8Array(32));
  const identity = JSON.stringify({
    host: "127.0.0.9",
    port: 9,
    id: 1,
    pid: 1,
    watchdogPid: 1,
    served: 0,
    state: "idle",
    ...who,
  });
  const mac = hmac(secret, "osps-link/2 worker proof", nonceD, nonceW, identity);
  return {
    nonceW,
    payload: jsonPayload({ v: "osps-link/2", nonce: hex(nonceW), who: identity, mac: hex(mac) }),
  };
}

/** What {@link handshake} saw. */
interface Answer {
  /** WELCOME or REFUSED. */
  type: number;
  /** The REFUSED frame's reason. */
  reason: string;
  /** After a WELCOME: the link was still up `stayMs` later (no REFUSED, not closed). */
  kept: boolean;
}

/**
 * Answers the dispatcher's HELLO as a worker proving `key` and claiming to be
 * `who` (merged over a default identity), then watches the link for `stayMs`.
 */
async function handshake(
  port: number,
  key: string,
  who: Record<string, unknown> = {},
  stayMs = 0,
): Promise<Answer> {
  const ch = await open(port);
  try {
    const hello = parseJson((await ch.read(5_000))!);
    const secret = new TextEncoder().encode(key);
    const nonceD = unhex(String(hello.nonce));
    const { payload, nonceW } = authFrame(secret, nonceD, who);
    ch.send(Frame.AUTH, payload);
    const answer = (await ch.read(5_000))!;
    const reason = answer.type === Frame.REFUSED ? String(parseJson(answer).reason) : "";
    if (answer.type !== Frame.WELCOME || stayMs === 0) return { type: answer.type, reason, kept: false };
    ch.key(hmac(secret, "osps-link/2 session", nonceD, nonceW), "worker");
    const until = Date.now() + stayMs;
    for (;;) {
      const left = until - Date.now();
      if (left <= 0) return { type: answer.type, reason, kept: true };
      const f = await ch.read(left).catch((err) => /silent/.test(String(err)) ? "quiet" as const : null);
      if (f === "quiet") return { type: answer.type, reason, kept: true };
      if (f === null || f.type === Frame.REFUSED) return { type: answer.type, reason, kept: false };
    }
  } finally {
    ch.close();
  }
}

Deno.test("during a secret rotation the dispatcher accepts workers proving the new or the old secret, nothing else", async () => {
  const NEW = "n".repeat(40), OLD = "o".repeat(40);
  await withLink({ secret: `${NEW}\n${OLD}\n` }, async (_inst, link) => {
    assert.equal((await handshake(link, NEW)).type, Frame.WELCOME);
    assert.equal((await handshake(link, OLD)).type, Frame.WELCOME);
    assert.equal((await handshake(link, "x".repeat(40))).type, Frame.REFUSED);
  });
});

Deno.test("remote workers come and go: a slot whose worker left goes to the next one, the table never fills", async () => {
  await withLink({ flags: ["--remote-slots=2"] }, async (inst, link) => {
    // Six workers over time, two remote slots: each attaches, works a moment and goes.
    for (let i = 1; i <= 6; i++) {
      const a = await handshake(
        link,
        SECRET,
        { host: "127.0.0.1", port: 30_000 + i, pid: 100 + i },
        300,
      );
      assert.deepEqual([a.type, a.reason, a.kept], [Frame.WELCOME, "", true], `worker ${i} of 6`);
      await waitFor("its link seen gone", async () => {
        const far = (await inst.status()).workers.filter((w) => w.link !== "local");
        return far.every((w) => w.link !== "attached") || null;
      });
    }
    const far = (await inst.status()).workers.filter((w) => w.link !== "local");
    assert.deepEqual(far.map((w) => w.port).sort(), [30_005, 30_006], "the two latest hold the slots");
    assert.deepEqual(far.map((w) => w.restarts), [0, 0], "a slot given to another worker starts afresh");
  });
});

Deno.test("a worker claiming to serve on an address it does not connect from is refused in the handshake", async () => {
  await withLink({ flags: ["--log-format=json"] }, async (inst, link) => {
    const a = await handshake(link, SECRET, { host: "10.20.30.40", port: 2223 });
    assert.equal(a.type, Frame.REFUSED);
    assert.match(a.reason, /claims to serve on 10\.20\.30\.40:2223 but connects from 127\.0\.0\.1/);
    const far = (await inst.status()).workers.filter((w) => w.link !== "local");
    assert.deepEqual(far, [], "no slot was taken");
    await wrongVersion(link);
    await waitFor("the refusal logged", () => inst.logs().includes("speaks osps-link/9"));
    // Every line of the JSON log is one JSON object; the peer's text is in it escaped, as in the text log.
    const lines = inst.logs().split("\n").filter(Boolean).map((l) => JSON.parse(l));
    const refusals = lines.filter((l) => /^link attempt from 127\.0\.0\.1:\d+ refused: /.test(l.msg));
    assert.ok(
      refusals.some((l) => /claims to serve on 10\.20\.30\.40:2223 .*as identity so far/.test(l.msg)),
    );
    assert.ok(
      refusals.some((l) => l.msg.includes("speaks osps-link/9\\nFORGED\\x1b[")),
      "escaped in JSON too",
    );
  });
});

Deno.test("a joiner refused for want of a remote slot backs off instead of retrying every 100 ms", async () => {
  const joinPort = freePorts(4);
  await withLink({ flags: ["--remote-slots=1"] }, async (inst, link, secret) => {
    // Two workers join; one remote slot: the second is refused for as long as the first is attached.
    const t0 = Date.now();
    const joined = await startInstance({
      workers: 2,
      port: joinPort,
      flags: [`--join=127.0.0.1:${link}`, `--secret-file=${secret}`],
      expectFailure: true,
      timeoutMs: 6_000,
    });
    try {
      await new Promise((r) => setTimeout(r, 6_000 - (Date.now() - t0)));
      const counts = [...inst.logs().matchAll(/refused: no room.*?\((\d+) refused as no room so far\)/g)]
        .map((m) => Number(m[1]));
      const attempts = Math.max(0, ...counts);
      console.log(`refused joiner: ${attempts} attempts in 6 s (backoff 100 ms doubling to 5 s)`);
      assert.ok(attempts >= 2 && attempts <= 10, `${attempts} attempts in 6 s`);
      assert.equal(joined.readyLine, "", "never ready: one worker is never attached");
      assert.match(
        joined.logs(),
        /cannot attach to the dispatcher at .*: refused: no room for more remote workers/,
      );
    } finally {
      if (joined.readyLine) await joined.stop();
    }
  });
});

Deno.test("refusals are counted by kind, a fixed set, whatever peers send: 300 made-up versions, one counter", async () => {
  const port = freePorts(1);
  const server = new LinkServer({
    host: "127.0.0.1",
    port,
    secrets: [new TextEncoder().encode(SECRET)],
    timing: { heartbeatMs: 1_000, timeoutMs: 5_000 },
    slots: [],
  }, systemClock);
  server.start();
  try {
    for (let i = 0; i < 300; i++) await wrongVersion(port, `${i} ${crypto.randomUUID()}`);
    await waitFor("every refusal counted", () => server.refusals.version === 300);
    assert.deepEqual(
      Object.keys(server.refusals).sort(),
      ["authentication", "door full", "handshake", "identity", "no room", "version"],
    );
  } finally {
    server.close();
  }
});
