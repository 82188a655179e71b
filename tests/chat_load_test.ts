/**
 * The chat-scale benchmark's load client (`scripts/chat_load.ts`) against
 * a stand-in IRC server that welcomes every client but answers only some
 * JOINs, as ngircd at 10,000 clients stops answering them: the join phase
 * ends at its deadline with what was joined, so that
 * `deno task bench --parts chat-scale` finishes.
 */
import assert from "node:assert/strict";

const LOAD = new URL("../scripts/chat_load.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** A server that sends 001 to every client and 366 to the first `answered` JOINs only. */
function standIn(answered: number): { port: number; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let joins = 0;
  const conns: Deno.Conn[] = [];
  void (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      void (async () => {
        const enc = new TextEncoder(), dec = new TextDecoder(), buf = new Uint8Array(4096);
        let text = "", nick = "*";
        try {
          for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
            text += dec.decode(buf.subarray(0, n));
            for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n")) {
              const line = text.slice(0, nl).trim();
              text = text.slice(nl + 1);
              if (line.startsWith("NICK ")) nick = line.slice(5);
              if (line.startsWith("USER ")) await conn.write(enc.encode(`:s 001 ${nick} :hi\r\n`));
              if (line.startsWith("JOIN ") && ++joins <= answered) {
                await conn.write(enc.encode(`:${nick}!u@h JOIN #scale\r\n:s 366 ${nick} #scale :End\r\n`));
              }
            }
          }
        } catch { /* closed */ }
      })();
    }
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return {
    port,
    close: () => {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

Deno.test("chat-scale load client: JOINs unanswered by the deadline end the phase as unfinished, with what joined", async () => {
  const server = standIn(3);
  const load = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `--config=${CONFIG}`, "--allow-net=127.0.0.1", "--allow-ffi", LOAD]
      .concat([String(server.port), "8", "1", "1500"]),
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = load.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const writer = load.stdin.getWriter();
  let text = "";
  const next = async (): Promise<Record<string, unknown>> => {
    while (!text.includes("\n")) {
      const r = await lines.read();
      if (r.done) throw new Error("the load client exited");
      text += r.value;
    }
    const line = text.slice(0, text.indexOf("\n"));
    text = text.slice(text.indexOf("\n") + 1);
    return JSON.parse(line);
  };
  const timer = setTimeout(() => load.kill("SIGKILL"), 20_000); // the old client waited for ever
  try {
    assert.equal((await next())["phase"], "ready");
    await writer.write(new TextEncoder().encode("go\n"));
    assert.equal((await next())["phase"], "registered");
    const started = performance.now();
    await writer.write(new TextEncoder().encode("go\n"));
    const joined = await next();
    assert.equal(joined["phase"], "joined");
    assert.equal(joined["joins"], 3);
    assert.equal(joined["unfinished"], 5);
    assert.ok(
      performance.now() - started >= 1_400,
      `ended at its deadline, not before: ${JSON.stringify(joined)}`,
    );
    await writer.write(new TextEncoder().encode("done\n"));
    assert.equal((await load.status).code, 0);
  } finally {
    clearTimeout(timer);
    await writer.close().catch(() => {});
    try {
      load.kill("SIGKILL");
    } catch { /* exited */ }
    await load.status;
    server.close();
  }
});
