/**
 * Conformance: `docs/PROTOCOL.md` against the code. Its tables are compared
 * with the constants in `mod/protocol.ts` and `mod/cli.ts`; its example
 * transcripts are parsed with the protocol module and replayed, byte for
 * byte, against a live instance started with the flags the document names.
 */
import assert from "node:assert/strict";
import { parseCommandLine } from "../mod/cli/cli.ts";
import { COMMANDS } from "../mod/cli/commands.ts";
import { instancePaths, limitFlags, watchdogConfig } from "../mod/cli/config.ts";
import { ProtocolError } from "../mod/errors.ts";
import { LineConn } from "../mod/net/line_conn.ts";
import {
  checkGreeting,
  parseAssign,
  parseDispatcherCommand,
  parseReply,
  parseRunCommand,
  Status,
} from "../mod/net/protocol.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { workSummary } from "../mod/link/ticket_reports.ts";
import { FifoFrame } from "../mod/ipc/fifo_frames.ts";
import { Frame, LINK_VERSION } from "../mod/link/link_wire.ts";
import { waitFor, withInstance } from "./harness.ts";

const DOC = Deno.readTextFileSync(new URL("../docs/PROTOCOL.md", import.meta.url));

/** Fenced blocks with the given info string. */
function blocks(info: string): string[] {
  const re = new RegExp("^```" + info + "\\n([\\s\\S]*?)^```$", "gm");
  return [...DOC.matchAll(re)].map((m) => m[1]!);
}

/** Rows (cells trimmed, backticks dropped) of the first table after `heading`. */
function tableAfter(heading: string): string[][] {
  const at = DOC.indexOf(heading);
  assert.ok(at >= 0, `heading ${heading} in PROTOCOL.md`);
  const lines = DOC.slice(at).split("\n");
  const start = lines.findIndex((l) => l.startsWith("|"));
  const rows: string[][] = [];
  for (const l of lines.slice(start + 2)) {
    if (!l.startsWith("|")) break;
    rows.push(l.slice(1, -1).split("|").map((c) => c.trim().replaceAll("`", "")));
  }
  return rows;
}

Deno.test("the status code table lists exactly the codes of mod/protocol.ts", () => {
  const rows = tableAfter("## Status codes");
  const documented = new Map(rows.map((r) => [r[1]!, Number(r[0])]));
  assert.deepEqual(documented, new Map(Object.entries(Status)));
});

Deno.test("the limits table names every limit flag with its real default", () => {
  const rows = tableAfter("## Limits");
  const flags = COMMANDS.watchdog!.flags;
  for (const [flag, def] of rows) {
    const name = flag!.replace(/^--/, "");
    assert.ok(name in flags, `--${name} is a watchdog flag`);
    assert.equal(String(flags[name]!.default), def, `default of --${name}`);
  }
  const cfg = watchdogConfig(parseCommandLine(["watchdog", "--run-dir=/tmp/osps-doc-test"]).flags);
  const documented = new Set(rows.map((r) => r[0]!.replace(/^--/, "")));
  for (const name of Object.keys(limitFlags(cfg))) assert.ok(documented.has(name), `--${name} documented`);
});

Deno.test("the FIFO frame table matches FifoFrame in mod/ipc/fifo_frames.ts", () => {
  const rows = tableAfter("### Frames on the FIFOs");
  const documented = new Map(rows.map((r) => [r[2]!, Number(r[0])]));
  assert.deepEqual(documented, new Map(Object.entries(FifoFrame)));
  for (const r of rows) assert.equal(r[1], String.fromCharCode(Number(r[0])));
});

Deno.test("the TCP link's frame tables match Frame and LINK_VERSION in mod/link/link_wire.ts", () => {
  assert.ok(DOC.includes(`## The TCP worker link (\`${LINK_VERSION}\`)`));
  const documented = new Map<string, number>();
  for (const r of tableAfter("### Handshake and versioning")) {
    for (const m of r[2]!.matchAll(/([A-Z]+) \((\d+)\)/g)) documented.set(m[1]!, Number(m[2]));
  }
  for (const r of tableAfter("### Messages after the handshake")) {
    const numbers = r[0]!.split(",").map(Number), names = r[1]!.split(",").map((n) => n.trim());
    names.forEach((n, i) => documented.set(n, numbers[i]!));
  }
  assert.deepEqual(documented, new Map(Object.entries(Frame)));
});

/** One step of a transcript. */
type Step =
  | { kind: "connect"; role: "dispatcher" | "worker"; port?: string }
  | { kind: "switch"; index: number }
  | { kind: "wait"; ms: number }
  | { kind: "send"; bytes: string; lf: boolean }
  | { kind: "expect"; line: string };

function parseTranscript(text: string): Step[] {
  return text.split("\n").filter((l) => l.trim() && !l.startsWith("#")).map((l): Step => {
    if (l === "@dispatcher") return { kind: "connect", role: "dispatcher" };
    const back = /^@conn (\d+)$/.exec(l);
    if (back) return { kind: "switch", index: Number(back[1]) };
    const wait = /^@wait (\d+)$/.exec(l);
    if (wait) return { kind: "wait", ms: Number(wait[1]) };
    const w = /^@worker (\{\w+\})$/.exec(l);
    if (w) return { kind: "connect", role: "worker", port: w[1]! };
    if (l.startsWith("C: ")) return { kind: "send", bytes: l.slice(3), lf: true };
    if (l.startsWith("C+ ")) return { kind: "send", bytes: l.slice(3), lf: false };
    if (l.startsWith("S: ")) return { kind: "expect", line: l.slice(3) };
    throw new Error(`bad transcript line ${JSON.stringify(l)}`);
  });
}

/** Turns a `C` line into bytes: `{name}` from vars, `{c*N}`, `\xNN`, `\r`. */
function clientBytes(text: string, vars: Map<string, string>): Uint8Array {
  const out: number[] = [];
  const enc = new TextEncoder();
  const re = /\{(\w+)\}|\{(.)\*(\d+)\}|\\x([0-9a-f]{2})|\\r|([^{\\]+|[{\\])/g;
  for (const m of text.matchAll(re)) {
    if (m[1] !== undefined) {
      const v = vars.get(m[1]);
      assert.ok(v !== undefined, `{${m[1]}} used before it was captured`);
      out.push(...enc.encode(v));
    } else if (m[2] !== undefined) out.push(...enc.encode(m[2].repeat(Number(m[3]))));
    else if (m[4] !== undefined) out.push(parseInt(m[4], 16));
    else if (m[0] === "\\r") out.push(0x0d);
    else out.push(...enc.encode(m[0]));
  }
  return new Uint8Array(out);
}

/** Matches a server line against an `S` pattern, binding `{name}` captures. */
function matchServer(pattern: string, line: string, vars: Map<string, string>): boolean {
  const names: string[] = [];
  const source = pattern.split(/(\{\w+\}|…)/).map((part) => {
    if (part === "…") return ".*";
    const name = /^\{(\w+)\}$/.exec(part)?.[1];
    if (name === undefined) return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    if (vars.has(name)) return vars.get(name)!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    names.push(name);
    return "(\\S+)";
  }).join("");
  const m = new RegExp(`^${source}$`, "s").exec(line);
  if (!m) return false;
  names.forEach((n, i) => vars.set(n, m[i + 1]!));
  return true;
}

const TRANSCRIPTS = blocks("osps-transcript").map(parseTranscript);

Deno.test("PROTOCOL.md has examples of every kind of message", () => {
  assert.ok(TRANSCRIPTS.length >= 8, `found ${TRANSCRIPTS.length} transcripts`);
  const codes = new Set<number>();
  for (const t of TRANSCRIPTS) {
    for (const s of t) if (s.kind === "expect" && s.line !== "<EOF>") codes.add(Number(s.line.slice(0, 3)));
  }
  for (const c of [200, 202, 220, 221, 400, 401, 404, 408, 413, 429, 505]) assert.ok(codes.has(c), `a ${c}`);
});

Deno.test("every example line parses with mod/protocol.ts, and parse errors are the documented replies", () => {
  const sample = new Map([["port", "2223"], ["ticket", "0123456789abcdef0123456789abcdef"]]);
  const dec = new TextDecoder("utf-8", { fatal: true });
  for (const t of TRANSCRIPTS) {
    let role = "dispatcher";
    const roles: string[] = [];
    let pending: ProtocolError | null = null;
    for (const step of t) {
      if (step.kind === "connect") roles.push(role = step.role);
      if (step.kind === "switch") role = roles[step.index - 1]!;
      if (step.kind === "send" && step.lf) {
        const names = [...step.bytes.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
        const vars = new Map(names.map((k) => [k, sample.get(k === "port" ? "port" : "ticket")!]));
        let line: string;
        try {
          line = dec.decode(clientBytes(step.bytes, vars));
        } catch {
          continue; // not UTF-8: the framing layer answers, see the live replay
        }
        if (line.includes("\0") || line.length > 1024) continue;
        try {
          if (role === "dispatcher") parseDispatcherCommand(line);
          else parseRunCommand(line);
          pending = null;
        } catch (err) {
          assert.ok(err instanceof ProtocolError, String(err));
          pending = err;
        }
      }
      if (step.kind === "expect" && step.line !== "<EOF>") {
        const line = step.line.replace(/\{\w+\}/g, (v) => v === "{port}" ? "2223" : sample.get("ticket")!);
        const reply = parseReply(line);
        if (reply.code === Status.READY) {
          checkGreeting(reply);
          continue;
        }
        if (/^200 ASSIGN /.test(line)) parseAssign(reply);
        if (pending) {
          assert.equal(line, `${pending.status} ${pending.message}`, "documented reply to a parse error");
          pending = null;
        }
      }
    }
  }
});

Deno.test("every example transcript in PROTOCOL.md replays against a live instance", async () => {
  const [command] = blocks("osps-instance");
  const argv = command!.trim().split(/\s+/);
  assert.deepEqual(argv.slice(0, 2), ["osps", "watchdog"]);
  const workersFlag = argv.find((a) => a.startsWith("--workers="));
  await withInstance({
    workers: Number(workersFlag?.split("=")[1] ?? 1),
    flags: argv.slice(2).filter((a) => a !== workersFlag),
  }, async (inst) => {
    const seg = Segment.open(instancePaths(inst.runDir).shm);
    try {
      for (const [n, t] of TRANSCRIPTS.entries()) {
        await waitFor("every worker idle", () => {
          for (let i = 1; i <= inst.workers; i++) {
            if (workSummary(seg.slot(i), 0).text !== "idle") return false;
          }
          return true;
        });
        await replay(t, inst.port, `example ${n + 1}`);
      }
    } finally {
      seg.close();
    }
  });
});

async function replay(steps: Step[], dispatcherPort: number, what: string): Promise<void> {
  const vars = new Map([["port", String(dispatcherPort + 1)]]); // worker 1, as the document says
  const open: LineConn[] = [];
  let conn: LineConn | undefined;
  try {
    for (const [i, step] of steps.entries()) {
      const where = `${what}, step ${i + 1}`;
      if (step.kind === "connect") {
        const port = step.role === "dispatcher" ? dispatcherPort : Number(vars.get(step.port!.slice(1, -1)));
        conn = await LineConn.connect("127.0.0.1", port);
        open.push(conn);
      } else if (step.kind === "switch") {
        conn = open[step.index - 1];
        assert.ok(conn, `${where}: no connection ${step.index}`);
      } else if (step.kind === "wait") {
        await new Promise((r) => setTimeout(r, step.ms));
      } else if (step.kind === "send") {
        const bytes = clientBytes(step.bytes + (step.lf ? "\\x0a" : ""), vars);
        await conn!.conn.write(bytes);
      } else {
        const line = await conn!.readLine(5_000);
        if (step.line === "<EOF>") {
          assert.equal(line, null, `${where}: expected the server to close`);
          continue;
        }
        assert.ok(line !== null, `${where}: expected ${step.line}, got EOF`);
        assert.ok(matchServer(step.line, line, vars), `${where}: expected ${step.line}\n got ${line}`);
        parseReply(line);
      }
    }
  } finally {
    for (const c of open) c.close();
    // Let the server see those closes before the next example counts connections.
    await new Promise((r) => setTimeout(r, 50));
  }
}
