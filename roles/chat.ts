/**
 * `osps chat --nick NICK [#room…]`: the interactive chat client. It asks the
 * dispatcher for a worker like every other request (type `chat`), presents
 * the ticket, and from the worker's `200` on speaks IRC on that same
 * connection: joins the rooms, shows each room's last messages
 * (CHATHISTORY), then what people say — osps chat users and IRC clients
 * alike. Lines typed on stdin are sent; end of input leaves.
 * @module
 */
import type { ChatClientConfig } from "../mod/cli/config.ts";
import { ServiceError } from "../mod/errors.ts";
import { Session } from "../mod/client/session.ts";
import { OutOfScope } from "../mod/client/reach.ts";
import { runScoped } from "../mod/client/scope.ts";
import { readLines } from "../mod/ipc/control.ts";
import { CHAT_HELP, parseTyped, render } from "../mod/chat/chat_view.ts";
import { formatMessage, parseMessage } from "../mod/chat/irc_message.ts";
import type { LineConn } from "../mod/net/line_conn.ts";

const encoder = new TextEncoder();
function show(line: string): void {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
}

/** Runs the chat client. Returns the exit code (3 when the chat refused us). */
export async function runChat(cfg: ChatClientConfig, rooms: string[]): Promise<number> {
  const rerun = await runScoped(cfg.host, cfg.port);
  if (rerun !== null) return rerun;
  const session = await Session.open(cfg.host, cfg.port);
  let conn: LineConn;
  try {
    ({ conn } = await session.takeOver("chat", cfg.nick));
  } catch (err) {
    if (err instanceof OutOfScope) {
      await session.close().catch(() => {});
      const code = await runScoped(cfg.host, cfg.port, true); // nothing typed yet: run again, scoped
      if (code !== null) return code;
    }
    if (!(err instanceof ServiceError)) throw err;
    show(`osps chat: ${err.message}`);
    return 3;
  } finally {
    await session.close().catch(() => {});
  }
  const send = (line: string) => conn.writeLine(line);
  let current: string | undefined;
  // The server handles a connection's lines in order: the history asked right after JOIN ends where the join began.
  const join = async (room: string) => {
    current = room;
    await send(`JOIN ${room}`);
    if (cfg.history > 0) await send(`CHATHISTORY LATEST ${room} * ${cfg.history}`);
  };
  const welcomed = Promise.withResolvers<boolean>();
  const reader = (async () => {
    for (;;) {
      const line = await conn.readLine().catch(() => null);
      if (line === null) break;
      const m = parseMessage(line);
      if (!m) continue;
      if (m.command === "PING") {
        await send(formatMessage("", "PONG", [m.params[0] ?? ""], { trailing: true }));
      } else if (m.command === "001") {
        welcomed.resolve(true);
      } else if (m.command === "433" || m.command === "ERROR") {
        welcomed.resolve(false);
      }
      const shown = render(m);
      if (shown !== null) show(shown);
    }
    welcomed.resolve(false);
  })();

  let code = 0;
  if (await welcomed.promise) {
    await send("CAP REQ :batch server-time draft/chathistory");
    for (const room of rooms) await join(room);
    show(`connected as ${cfg.nick}${current ? `; talking in ${current}` : ""} (/help for commands)`);
    let quit = "QUIT :bye";
    for await (const raw of readLines(Deno.stdin.readable)) {
      const typed = parseTyped(raw.trimEnd(), current);
      if (typed.kind === "help") show(CHAT_HELP);
      else if (typed.kind === "error") show(typed.text);
      else if (typed.kind === "quit") {
        quit = typed.line;
        break;
      } else if (typed.current) {
        await join(typed.current);
      } else if (typed.line !== "") {
        await send(typed.line);
        const own = parseMessage(typed.line);
        if (own?.command === "PRIVMSG") show(render({ ...own, prefix: cfg.nick })!); // not echoed by the server
      }
    }
    await send(quit);
  } else code = 3;
  // The server answers QUIT with ERROR and closes; do not wait for ever.
  const timer = setTimeout(() => conn.close(), 2_000);
  await reader;
  clearTimeout(timer);
  conn.close();
  return code;
}
