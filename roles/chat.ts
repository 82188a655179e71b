/**
 * `osps chat --nick NICK [#room…]`: the interactive chat client. It asks the
 * dispatcher for a worker like every other request (type `chat`), presents
 * the ticket, and from the worker's `200` on speaks IRC on that same
 * connection: joins the rooms, shows each room's last messages
 * (CHATHISTORY), then what people say — osps chat users and IRC clients
 * alike. Lines typed on stdin are sent. It ends when the user leaves (`/quit`
 * or end of input: exit 0) or when the server goes away or refuses us (the
 * reason is shown; exit 3), at once, even while waiting for a typed line.
 * @module
 */
import type { ChatClientConfig } from "../mod/cli/config.ts";
import { ServiceError } from "../mod/errors.ts";
import { Session } from "../mod/client/session.ts";
import { OutOfScope } from "../mod/client/reach.ts";
import { runScoped } from "../mod/client/scope.ts";
import { readLines } from "../mod/ipc/control.ts";
import { CHAT_HELP, ChatView, printable } from "../mod/client/chat_view.ts";
import { formatMessage, parseMessage } from "../mod/chat/irc_message.ts";
import type { LineConn } from "../mod/net/line_conn.ts";

const encoder = new TextEncoder();
function show(line: string): void {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
}

/** The token of the PING that tells when the server has handled the joins. */
const CAUGHT_UP = "osps-chat-joined";
/** How long to wait for the server's goodbye after our QUIT. */
const QUIT_WAIT_MS = 2_000;

/** Runs the chat client. Returns the exit code (0: the user left; 3: refused, or the server went away). */
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
  const view = new ChatView(cfg.nick);
  let quitting = false;
  /** Sends a line; false once the connection is gone. */
  const send = (line: string) => conn.writeLine(line);
  const welcomed = Promise.withResolvers<boolean>();
  /** Resolved when the server answers our PING: it has handled every line sent before it (JOINs, history). */
  const caughtUp = Promise.withResolvers<void>();
  let lastError = "";
  const reader = (async () => {
    for (;;) {
      const line = await conn.readLine().catch(() => null);
      if (line === null) break;
      const m = parseMessage(line);
      if (!m) continue;
      if (m.command === "PING") {
        await send(formatMessage("", "PONG", [m.params[0] ?? ""], { trailing: true }));
      } else if (m.command === "PONG" && m.params.at(-1) === CAUGHT_UP) {
        caughtUp.resolve();
      } else if (m.command === "001") {
        welcomed.resolve(true);
      } else if (m.command === "433" || m.command === "ERROR") {
        welcomed.resolve(false);
        if (m.command === "ERROR") lastError = printable(m.params[0] ?? "");
      }
      for (const shown of view.receive(m)) show(shown);
    }
    welcomed.resolve(false);
    caughtUp.resolve();
  })();

  if (!(await welcomed.promise)) {
    conn.close(); // refused (433, ERROR): shown already; the server would wait for another NICK
    await reader;
    return 3;
  }
  await send("CAP REQ :batch server-time draft/chathistory");
  const join = async (room: string) => {
    const typed = view.typed(`/join ${room}`);
    if (typed.kind === "send") await send(typed.line);
    if (cfg.history > 0) await send(`CHATHISTORY LATEST ${room} * ${cfg.history}`);
  };
  for (const room of rooms) await join(room);
  // What was typed ahead (a pipe) is sent once the rooms are joined and their history shown, in that order.
  await send(`PING :${CAUGHT_UP}`);
  await caughtUp.promise;
  show(`connected as ${view.nick}${view.current ? `; talking in ${view.current}` : ""} (/help for commands)`);

  // Typed lines and the server's end race: a server that goes away ends the session at once.
  const lines = readLines(Deno.stdin.readable)[Symbol.asyncIterator]();
  const gone = reader.then(() => null);
  let quit = "QUIT :bye";
  for (;;) {
    const next = await Promise.race([lines.next(), gone]);
    if (next === null) break; // the server went away
    if (next.done) {
      quitting = true;
      break;
    }
    const typed = view.typed(next.value.trimEnd());
    if (typed.kind === "help") show(CHAT_HELP);
    else if (typed.kind === "error") show(typed.text);
    else if (typed.kind === "quit") {
      quit = typed.line;
      quitting = true;
      break;
    } else if (typed.line !== "") {
      if (!(await send(typed.line))) break;
      if (/^JOIN /i.test(typed.line) && cfg.history > 0) {
        await send(`CHATHISTORY LATEST ${typed.line.slice(5)} * ${cfg.history}`);
      }
      const own = parseMessage(typed.line);
      const shown = own && view.own(own); // the server does not echo our messages
      if (shown) show(shown);
    }
    for (const note of view.notes()) show(note);
  }
  if (quitting) {
    await send(quit);
    // The server answers QUIT with ERROR and closes; do not wait for ever.
    const timer = setTimeout(() => conn.close(), QUIT_WAIT_MS);
    await reader;
    clearTimeout(timer);
    conn.close();
    return 0;
  }
  conn.close();
  await reader;
  show(`osps chat: the server closed the connection${lastError ? ` (${lastError})` : ""}`);
  return 3;
}
