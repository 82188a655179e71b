/**
 * The `lines` part of the benchmark suite: what the worst line of each shape
 * (`tests/support/long_lines.ts`: long runs of blanks, tabs, CRs, non-ASCII,
 * almost-valid tickets) costs per KiB, on both roles, against an ordinary
 * line of the same length. Two measures:
 *
 * - parse only: the real framing (`LineBuffer`, fed as a socket would), the
 *   role's parser, and on the worker the service's argument handling and the
 *   reply's formatting, in this process;
 * - end to end: three such lines in one write to a live dispatcher (each
 *   answered) and one per connection to a live worker, until the replies.
 *
 * Each figure is the best of several timings (other load on a shared machine
 * only adds to what a line costs). Linear work shows as a flat cost per KiB: the same at 4 KiB and 64 KiB,
 * and close to the ordinary line's. A quadratic step shows as a cost per KiB
 * that grows with the length (16× from 4 to 64 KiB).
 * @module
 */
import { ProtocolError } from "../mod/errors.ts";
import { LineBuffer } from "../mod/net/line_buffer.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import {
  BadCommand,
  formatReply,
  parseDispatcherCommand,
  parseReply,
  parseRunCommand,
  Status,
} from "../mod/net/protocol.ts";
import { lookupService } from "../mod/services/registry.ts";
import { startInstance } from "../tests/harness.ts";
import { LONG_RUNS, plainLine } from "../tests/support/long_lines.ts";
import { type Figure, figure } from "./bench_util.ts";

const enc = new TextEncoder();
const KIB = 1024;
/** The default --max-line-bytes: the longest line a role reads. */
const MAX_LINE = 64 * KIB;
const TICKET = "0123456789abcdef0123456789abcdef";

/** The real framing without a socket: the line `bytes` holds, read in the chunks a socket would bring. */
function frame(bytes: Uint8Array): string {
  const lines = new LineBuffer(MAX_LINE);
  for (let off = 0;;) {
    const line = lines.next(off >= bytes.length);
    if (line !== undefined) return line!;
    const space = lines.space();
    const n = Math.min(space.length, bytes.length - off);
    space.set(bytes.subarray(off, off + n));
    lines.filled(n);
    off += n;
  }
}

/** What a role does with one line, from its bytes to the bytes of its reply. */
type Role = (line: Uint8Array) => Uint8Array | Promise<Uint8Array>;

const dispatcherRole: Role = (bytes) => {
  const line = frame(bytes);
  let reply: string;
  try {
    reply = formatReply(Status.OK, JSON.stringify(parseDispatcherCommand(line)));
  } catch (err) {
    if (!(err instanceof BadCommand)) throw err;
    reply = formatReply(err.status, err.message);
  }
  return enc.encode(reply + "\n");
};

/** The worker: parse, then (for a well-formed RUN) the service on its argument and the reply. */
const workerRole: Role = async (bytes) => {
  const line = frame(bytes);
  let reply: string;
  try {
    const run = parseRunCommand(line);
    reply = formatReply(
      Status.OK,
      await lookupService(run.type).run(run.arg, {
        workerId: 1,
        pid: 1,
        uptimeMs: 0,
        served: 0,
      }),
    );
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    reply = formatReply(err.status, err.message);
  }
  return enc.encode(reply + "\n");
};

/** The lines a role is given: each shape as it is, and (worker) as the argument of a request to echo and upper. */
function linesFor(role: "dispatcher" | "worker", bytes: number): Array<[string, string]> {
  const shapes = Object.entries(LONG_RUNS).map(([name, make]): [string, string] => [name, make(bytes)]);
  if (role === "dispatcher") return shapes;
  const head = (type: string) => `RUN ${TICKET} ${type} `;
  return [
    ...shapes,
    ...Object.entries(LONG_RUNS).flatMap(([name, make]) =>
      ["echo", "upper"].map((type): [string, string] => [
        `${name} as ${type}'s argument`,
        head(type) + make(bytes - head(type).length - 3),
      ])
    ),
  ];
}

/**
 * µs per KiB of `role` on `line`: the best of `rounds` timings, each over
 * enough repetitions to be measurable. The best, not the median: this is the
 * work a line costs, and on a shared machine other load only adds to it.
 */
async function parseCost(role: Role, line: string, rounds: number): Promise<number> {
  const bytes = enc.encode(line + "\n");
  for (const t0 = performance.now(); performance.now() - t0 < 20;) await role(bytes); // warm the JIT up
  const samples: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let n = 0;
    const t0 = performance.now();
    do {
      await role(bytes);
      n++;
    } while (performance.now() - t0 < 20);
    samples.push(((performance.now() - t0) * 1000) / n / (bytes.length / KIB));
  }
  return Math.min(...samples);
}

/** One role's parse-only costs: every shape at 4 and 64 KiB, and the ordinary line. */
async function parseOnly(
  roleName: "dispatcher" | "worker",
  role: Role,
  rounds: number,
): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  const at = async (bytes: number) => {
    const out: Record<string, number> = {};
    for (const [name, line] of linesFor(roleName, bytes)) out[name] = await parseCost(role, line, rounds);
    return out;
  };
  const small = await at(4 * KIB), large = await at(MAX_LINE);
  const plain = await parseCost(role, plainLine(MAX_LINE), rounds);
  const [worst, worstCost] = Object.entries(large).sort((a, b) => b[1] - a[1])[0]!;
  const [steepest, growth] = Object.keys(large)
    .map((k): [string, number] => [k, large[k]! / small[k]!])
    .sort((a, b) => b[1] - a[1])[0]!;
  return {
    raw: { "4 KiB": small, "64 KiB": large, plain },
    figures: [
      figure({
        part: "Lines",
        name: `parse, ${roleName}: the worst 64 KiB line`,
        value: worstCost,
        unit: "µs/KiB",
        reference: { name: "an ordinary 64 KiB line", value: plain },
        // An escaped answer is up to twice as long: the same order as an ordinary line, not a power of it.
        target: { on: "ratio", op: "<=", limit: 10 },
        note: `worst of ${Object.keys(large).length} shapes: ${worst}` +
          (roleName === "worker" ? " (a RUN's argument goes through the service and the reply)" : ""),
      }),
      figure({
        part: "Lines",
        name: `parse, ${roleName}: cost per KiB at 64 KiB against 4 KiB`,
        value: large[steepest]!,
        unit: "µs/KiB",
        reference: { name: `the same shape at 4 KiB`, value: small[steepest]! },
        target: { on: "ratio", op: "<=", limit: 2 },
        note: `the shape whose cost per KiB grows most: ${steepest} (${growth.toFixed(2)}×; linear is 1×, ` +
          `quadratic 16×)`,
      }),
    ],
  };
}

/** Sends `lines` in one write on a new connection to `port`; ms from the write to the last of `replies` replies. */
async function roundTrip(port: number, lines: string[], replies: number): Promise<number> {
  const c = await LineConn.connect("127.0.0.1", port, { maxLineBytes: 2 * MAX_LINE });
  try {
    const greeting = parseReply((await c.readLine(30_000))!);
    if (greeting.code !== Status.READY) throw new Error(`not greeted: ${greeting.code} ${greeting.text}`);
    const bytes = enc.encode(lines.map((l) => l + "\n").join(""));
    const t0 = performance.now();
    for (let off = 0; off < bytes.length;) off += await c.conn.write(bytes.subarray(off));
    for (let i = 0; i < replies; i++) {
      if ((await c.readLine(60_000)) === null) throw new Error(`closed after ${i} of ${replies} replies`);
    }
    return performance.now() - t0;
  } finally {
    c.close();
  }
}

/** End to end on a live instance: three worst lines in one write (dispatcher), one per connection (worker). */
async function endToEnd(rounds: number): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  const inst = await startInstance({ workers: 1, flags: ["--rate-per-addr=0", "--log-level=warning"] });
  try {
    const figures: Figure[] = [];
    const raw: Record<string, unknown> = {};
    for (const role of ["dispatcher", "worker"] as const) {
      const port = role === "dispatcher" ? inst.port : inst.port + 1;
      const per = role === "dispatcher" ? 3 : 1;
      const cost = async (line: string) => {
        const ms: number[] = [];
        for (let r = 0; r < rounds; r++) {
          ms.push(await roundTrip(port, Array(per).fill(line), per));
        }
        return (Math.min(...ms) * 1000) / ((per * (enc.encode(line).length + 1)) / KIB);
      };
      const shapes: Record<string, number> = {};
      for (const [name, make] of Object.entries(LONG_RUNS)) shapes[name] = await cost(make(MAX_LINE));
      const plain = await cost(plainLine(MAX_LINE));
      raw[role] = { shapes, plain };
      const [worst, worstCost] = Object.entries(shapes).sort((a, b) => b[1] - a[1])[0]!;
      figures.push(figure({
        part: "Lines",
        name: `end to end, ${role}: the worst 64 KiB line`,
        value: worstCost,
        unit: "µs/KiB",
        reference: { name: "an ordinary 64 KiB line", value: plain },
        target: { on: "ratio", op: "<=", limit: 5 },
        note: `worst of ${Object.keys(shapes).length} shapes: ${worst}; ${
          per === 3
            ? "three lines in one write, until the third reply"
            : "one line per connection, until its reply"
        }; best of ${rounds}`,
      }));
    }
    const s = await inst.status();
    if (s.dispatcher.restarts + s.workers[0]!.restarts > 0) {
      throw new Error("a role restarted during the lines part");
    }
    return { figures, raw };
  } finally {
    await inst.stop();
  }
}

/** Runs the part. */
export async function benchLines(
  opts: { rounds: number },
): Promise<{ figures: Figure[]; raw: Record<string, unknown> }> {
  const d = await parseOnly("dispatcher", dispatcherRole, opts.rounds);
  const w = await parseOnly("worker", workerRole, opts.rounds);
  const e = await endToEnd(opts.rounds);
  return {
    figures: [...d.figures, ...w.figures, ...e.figures],
    raw: { parse: { dispatcher: d.raw, worker: w.raw }, end_to_end: e.raw },
  };
}
