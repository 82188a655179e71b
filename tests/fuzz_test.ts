/**
 * Hostile input against a live dispatcher and live workers: random and
 * mutated lines, invalid UTF-8, NUL, binary, CR/LF mixtures, requests split
 * into tiny writes or pipelined in one, out-of-range numbers, unknown verbs,
 * guessed, replayed and misdirected tickets. No role may crash or restart,
 * every byte a server sends must parse as protocol lines, and a well-behaved
 * client must be served correctly all along.
 *
 * The random stream is seeded (printed on failure) so a failure can be
 * replayed with `OSPS_FUZZ_SEED=<seed>`.
 */
import assert from "node:assert/strict";
import { LineConn } from "../mod/net/line_conn.ts";
import { Session } from "../mod/client/session.ts";
import {
  checkGreeting,
  formatRun,
  parseAssign,
  parseReply,
  type Reply,
  Status,
} from "../mod/net/protocol.ts";
import { type Instance, withInstance } from "./harness.ts";
import { LONG_RUNS } from "./support/long_lines.ts";

const SEED = Number(Deno.env.get("OSPS_FUZZ_SEED") ?? Date.now() % 1_000_000);
const MAX_LINE = 4096;

/** mulberry32: small, seedable, good enough to pick mutations. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = rng(SEED);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const enc = new TextEncoder();

const INVALID_UTF8 = [[0xff], [0xc3], [0xed, 0xa0, 0x80], [0xc0, 0xaf], [0xf8, 0x88, 0x80, 0x80], [0x80]];
const NUMBERS = [
  "-1",
  "-0",
  "99999999999999999999",
  "1e9",
  "0x10",
  "79",
  "30001",
  "18446744073709551616",
  " 5",
  "5 ",
  "NaN",
  "Infinity",
  "",
  "٣",
  "-9007199254740993",
];
const DISPATCHER_CORPUS = [
  "HELLO OSPS/1",
  "HELLO OSPS/2",
  "HELLO OSPS/99999",
  "HELLO",
  "REQUEST",
  "REQUEST nope",
  "REQUEST ECHO",
  "REQUEST echo extra",
  `REQUEST ${"a".repeat(17)}`,
  "QUIT now",
  "GET / HTTP/1.1",
  "RUN 00000000000000000000000000000000 echo x",
  "ASSIGN 127.0.0.1 1 2",
  "200 OK",
];

const TEXT_MUTATIONS = [2, 5, 6, 7, 9];

/** One random mutation of `b`; `textOnly` keeps it valid UTF-8 without NUL, so the server reads on. */
function mutate(b: Uint8Array, textOnly: boolean): Uint8Array {
  const out = [...b];
  const at = int(out.length + 1);
  switch (textOnly ? pick(TEXT_MUTATIONS) : int(10)) {
    case 0:
      if (out.length) out[int(out.length)]! ^= 1 << int(8);
      break;
    case 1:
      out.splice(at, 0, int(256));
      break;
    case 2:
      out.splice(at, int(4) + 1);
      break;
    case 3:
      out.splice(at, 0, 0);
      break;
    case 4:
      out.splice(at, 0, ...pick(INVALID_UTF8));
      break;
    case 5:
      out.splice(at, 0, ...pick([[0x0d], [0x0d, 0x0a], [0x0a, 0x0d], [0x0a], [0x0d, 0x0d, 0x0a]]));
      break;
    case 6:
      out.splice(at, 0, ...enc.encode(pick(NUMBERS)));
      break;
    case 7:
      out.splice(at, 0, ...out.slice(0, int(out.length + 1)));
      break;
    case 8:
      return crypto.getRandomValues(new Uint8Array(int(64) + 1));
    default:
      out.splice(at, 0, ...enc.encode(pick([" ", "\t", "é", "😀", "\u2028", "%s", "{}", "\\n"])));
  }
  return new Uint8Array(out);
}

function mutated(seed: string, textOnly = false): Uint8Array {
  let b: Uint8Array = enc.encode(seed);
  for (let k = int(3) + 1; k > 0; k--) b = mutate(b, textOnly);
  return b;
}

/** What a hostile connection sends: chunks of bytes, and how many inputs they hold. */
interface Payload {
  chunks: Uint8Array[];
  inputs: number;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Delivers `bytes` in one write, or split into many tiny writes. */
function delivery(bytes: Uint8Array): Uint8Array[] {
  if (random() < 0.7) return [bytes];
  const chunks: Uint8Array[] = [];
  for (let off = 0; off < bytes.length;) {
    const n = int(3) + 1;
    chunks.push(bytes.subarray(off, off + n));
    off += n;
  }
  return chunks;
}

function dispatcherPayload(): Payload {
  const lines: Uint8Array[] = [];
  const n = random() < 0.1 ? 40 : int(8) + 1; // sometimes many pipelined lines
  const textOnly = random() < 0.6; // most connections stay readable, so every pipelined line is parsed
  for (let i = 0; i < n; i++) {
    const r = random();
    if (r < 0.02) lines.push(enc.encode("x".repeat(MAX_LINE + int(2000))));
    else if (r < 0.04) lines.push(enc.encode(pick(Object.values(LONG_RUNS))(MAX_LINE - int(64))));
    else if (r < 0.05 && !textOnly) lines.push(crypto.getRandomValues(new Uint8Array(int(200) + 1)));
    else lines.push(mutated(pick(DISPATCHER_CORPUS), textOnly));
  }
  const sep = () => enc.encode(pick(["\n", "\r\n", "\n", "\r\n", "\r", "\n\r"]));
  const body = concat(lines.flatMap((l) => [l, sep()]));
  return { chunks: delivery(concat([body, enc.encode("\nQUIT\n")])), inputs: n };
}

function workerPayload(): Payload {
  const ticket = Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
  const seeds = [
    formatRun(ticket, "echo", "guess"),
    formatRun(ticket.toUpperCase(), "echo", "x"),
    formatRun(ticket.slice(1), "fib", "10"),
    `RUN ${ticket}`,
    "RUN",
    `run ${ticket} sleep ${pick(NUMBERS)}`,
    "HELLO OSPS/1",
    "REQUEST echo",
  ];
  const r = random();
  const line = r < 0.1
    ? crypto.getRandomValues(new Uint8Array(int(300) + 1))
    : r < 0.15
    ? enc.encode(pick(Object.values(LONG_RUNS))(MAX_LINE - int(64)))
    : mutated(pick(seeds));
  return { chunks: delivery(concat([line, enc.encode(pick(["\n", "\r\n", ""]))])), inputs: 1 };
}

/** Sends a payload, reads everything until the server closes; returns the parsed reply lines. */
async function hostile(port: number, p: Payload): Promise<Reply[]> {
  const conn = await LineConn.connect("127.0.0.1", port);
  try {
    for (const c of p.chunks) {
      try {
        await conn.conn.write(c);
      } catch {
        break; // the server already closed: fine, it said why
      }
    }
    // End of input, so a last line without LF is read at once rather than timing out (limits_test covers that).
    await conn.conn.closeWrite().catch(() => {});
    const replies: Reply[] = [];
    for (;;) {
      const line = await conn.readLine(10_000);
      if (line === null) return replies;
      replies.push(parseReply(line));
    }
  } finally {
    conn.close();
  }
}

/** A real ticket from the dispatcher, for worker abuse. */
async function assignment(d: LineConn, type: string): Promise<{ port: number; ticket: string }> {
  await d.writeLine(`REQUEST ${type}`);
  for (;;) {
    const reply = parseReply((await d.readLine(10_000))!);
    if (reply.code === Status.QUEUED) continue;
    return parseAssign(reply);
  }
}

/** Presents one line to a worker; returns the reply after its greeting. */
async function present(port: number, bytes: Uint8Array, split: boolean): Promise<Reply> {
  const replies = await hostile(port, { chunks: split ? delivery(bytes) : [bytes], inputs: 1 });
  assert.equal(replies[0]?.code, Status.READY, `worker greets first: ${JSON.stringify(replies)}`);
  checkGreeting(replies[0]!);
  assert.equal(replies.length, 2, `one reply after the greeting: ${JSON.stringify(replies)}`);
  return replies[1]!;
}

const HOSTILE_ARGS: Record<string, readonly string[]> = {
  fib: ["-5", "79", "99999999999999999999", "1e3", "-0", "0x1f", "3.5", "", "20", "0"],
  sleep: ["-1", "30001", "99999999999", "1e9", "", "5", "0"],
  echo: ["", "a\rb", "\u2028", "😀".repeat(100), "%s%n", "x".repeat(3000)],
  sha256: ["", "\t", "é"],
};

/** Abuses real tickets: another worker, wrong type, hostile argument, tiny writes, replay. */
async function ticketAbuse(inst: Instance, d: LineConn): Promise<number> {
  const type = pick(Object.keys(HOSTILE_ARGS));
  const { port, ticket } = await assignment(d, type);
  const other = port === inst.port + 1 ? inst.port + 2 : inst.port + 1;
  const line = (t: string, ty: string, arg: string) => enc.encode(formatRun(t, ty, arg) + "\n");
  let inputs = 1;
  // A bad ticket is 401, or 429 once this address has shown too many (the limits are on, at their defaults).
  const refusedTicket = (r: Reply) => r.code === Status.BAD_TICKET || r.code === Status.TOO_MANY;
  const misdirected = await present(other, line(ticket, type, "x"), false);
  assert.ok(refusedTicket(misdirected), `a ticket for another worker is refused: ${misdirected.code}`);
  inputs++;
  if (random() < 0.5) {
    const wrong = await present(port, line(ticket, type === "echo" ? "upper" : "echo", "x"), false);
    assert.ok(refusedTicket(wrong), `a ticket for another type is refused: ${wrong.code}`);
    inputs++;
  }
  const arg = pick(HOSTILE_ARGS[type]!);
  const served = await present(port, line(ticket, type, arg), true);
  assert.ok(
    served.code === Status.OK || served.code === Status.BAD_REQUEST,
    `${type} ${arg}: ${served.code} ${served.text}`,
  );
  inputs++;
  const replayed = await present(port, line(ticket, type, arg), false);
  assert.ok(refusedTicket(replayed), `a used ticket is refused: ${replayed.code}`);
  return inputs + 1;
}

Deno.test(`fuzz: 10,000+ hostile inputs never crash a role and always get protocol lines (seed ${SEED})`, async () => {
  await withInstance({
    workers: 2,
    flags: [
      `--max-line-bytes=${MAX_LINE}`,
      "--handshake-timeout-ms=2000",
      "--idle-timeout-ms=2000",
      // Long enough for a valid ticket to survive the two refused presentations before its use on a loaded
      // machine (the check is that a valid ticket is served), short enough that unused ones free places fast.
      "--ticket-ttl-ms=1500",
      "--queue-timeout-ms=5000",
      // Every other limit at its default: one address (loopback) plays attacker and honest client at once,
      // and the honest client must be served all the same.
    ],
  }, async (inst) => {
    const before = await inst.status();
    let inputs = 0, connections = 0, served = 0, stop = false;
    const codes = new Map<number, number>();
    const count = (rs: Reply[]) => rs.forEach((r) => codes.set(r.code, (codes.get(r.code) ?? 0) + 1));
    try {
      const honest = (async (): Promise<void> => {
        const s = await Session.open("127.0.0.1", inst.port, { timeoutMs: 15_000 });
        try {
          while (!stop) {
            const text = `honest ${served} ✓`;
            const a = await s.request("echo", text);
            assert.equal(a.text, text, "the honest client gets its own answer");
            served++;
            await new Promise((r) => setTimeout(r, 20));
          }
        } finally {
          await s.close();
        }
      })().then(() => null, (err) => err);
      const lane = async (target: "dispatcher" | "worker", quota: number) => {
        while (quota > 0) {
          const p = target === "dispatcher" ? dispatcherPayload() : workerPayload();
          const port = target === "dispatcher" ? inst.port : inst.port + 1 + int(2);
          const replies = await hostile(port, p);
          count(replies);
          if (target === "worker" && replies.length > 0) {
            assert.equal(replies[0]!.code, Status.READY, "a worker greets first");
          }
          for (const r of replies) {
            assert.notEqual(r.code, Status.INTERNAL, `no internal error: ${r.text}`);
          }
          // Count only the inputs the server read and answered (a framing error closes the connection
          // and leaves the rest unread): every reply but the greeting, queue notices and the final bye.
          const answered = replies.filter((r, i) =>
            !(i === 0 && r.code === Status.READY) && r.code !== Status.QUEUED && r.code !== Status.BYE
          ).length;
          quota -= Math.max(1, answered);
          inputs += answered;
          connections++;
        }
      };
      const tickets = async (rounds: number) => {
        const d = await LineConn.connect("127.0.0.1", inst.port);
        try {
          checkGreeting(parseReply((await d.readLine(5_000))!));
          for (let i = 0; i < rounds; i++) {
            const sent = await ticketAbuse(inst, d); // not `inputs += await …`: that would read inputs too early
            inputs += sent;
          }
        } finally {
          d.close();
        }
      };
      await Promise.all([
        ...Array.from({ length: 4 }, () => lane("dispatcher", 1_600)),
        ...Array.from({ length: 4 }, () => lane("worker", 700)),
        tickets(150),
        tickets(150),
      ]);
      stop = true;
      const honestFailure = await honest;
      if (honestFailure) throw honestFailure;

      assert.ok(inputs >= 10_000, `sent ${inputs} hostile inputs`);
      assert.ok(served >= 5, `the honest client was served ${served} times during the fuzz`);
      const after = await inst.status();
      for (
        const [was, now] of [
          [before.dispatcher, after.dispatcher],
          ...before.workers.map((w, i) => [w, after.workers[i]!]),
        ]
      ) {
        assert.equal(now!.restarts, 0, `no restart: ${JSON.stringify(now)}`);
        assert.equal(now!.pid, was!.pid, "same process throughout");
      }
      assert.doesNotMatch(
        inst.logs(),
        /connection failed|request failed|Uncaught|uncaught error/,
        "no role hit an unexpected error",
      );
      console.log(
        `fuzz seed ${SEED}: ${inputs} hostile inputs on ${connections} connections (+ ticket abuse); ` +
          `honest client served ${served}; replies by code ${JSON.stringify(Object.fromEntries(codes))}`,
      );
    } catch (err) {
      console.error(`fuzz seed ${SEED} failed; instance logs:\n${inst.logs().slice(-4000)}`);
      throw err;
    } finally {
      stop = true;
    }
  });
});

Deno.test("three worst lines of each shape at the default line limit stall no role; an honest client is served meanwhile", async () => {
  await withInstance({ workers: 1 }, async (inst) => {
    const before = await inst.status();
    const max = 65_536; // the default --max-line-bytes
    /** Sends three worst lines of a shape in one write; resolves to the codes of the replies. */
    const attack = async (port: number, line: string): Promise<number[]> => {
      const bytes = enc.encode(`${line}\n`.repeat(3));
      assert.ok(bytes.length <= 3 * (max + 1), `${bytes.length} bytes`);
      const replies = await hostile(port, { chunks: [bytes], inputs: 3 });
      return replies.map((r) => r.code);
    };
    const shapes = Object.entries(LONG_RUNS);
    const attacks = Promise.all(shapes.flatMap(([name, make]) => [
      attack(inst.port, make(max)).then((codes) => ({ name, role: "dispatcher", codes })),
      attack(inst.port + 1, make(max)).then((codes) => ({ name, role: "worker", codes })),
    ]));
    // Meanwhile an honest client is answered (generous bounds only: no timing is asserted).
    const honest = await inst.client(["--no-retry", "echo", "still served"]);
    assert.equal(honest.code, 0, honest.stderr);
    assert.equal(honest.stdout, "still served\n");
    for (const { name, role, codes } of await attacks) {
      assert.equal(codes[0], Status.READY, `${role}, ${name}: greeted`);
      // The dispatcher answers each bad line and reads on; a worker answers its one line and closes.
      const want = role === "dispatcher" ? [Status.BAD_REQUEST, Status.BAD_REQUEST, Status.BAD_REQUEST] : [0];
      const got = codes.slice(1).map((c) => role === "worker" && c >= 400 && c < 500 ? 0 : c);
      assert.deepEqual(got, want, `${role}, ${name}: ${codes.join(" ")}`);
    }
    const after = await inst.status();
    assert.deepEqual(
      [after.dispatcher, ...after.workers].map((x) => [x.pid, x.restarts]),
      [[before.dispatcher.pid, 0], [before.workers[0]!.pid, 0]],
      "no role was restarted",
    );
    assert.doesNotMatch(inst.logs(), /hung|no heartbeat/);
  });
});
