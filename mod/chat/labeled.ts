/**
 * IRCv3 `labeled-response`: a client tags a command `@label=x`, and the
 * server answers it so that the client can tell which lines are its answer —
 * one line carries the label, several come in a `labeled-response` batch
 * opened with the label, and a command with no answer gets `ACK`.
 *
 * While a labeled command runs, the session's connection collects the lines
 * sent to it as responses (`IrcConn.capture`): its replies, and the echoes of
 * its own events (its JOIN, its message with echo-message). Other users'
 * events still go out at once, outside the batch. A labeled channel message
 * waits for its commit, so that its echo is part of its answer.
 * @module
 */
import { formatMessage, type IrcMessage } from "./irc_message.ts";
import type { IrcSession } from "./irc_session.ts";
import { escapeTag, hasTag, withTag } from "./tags.ts";

/** Longest label honoured (the spec's limit); a longer one is ignored. */
export const MAX_LABEL_BYTES = 64;

let batches = 0;

/** The command's label when the session enabled labeled-response, else undefined. */
export function labelOf(s: IrcSession, m: IrcMessage): string | undefined {
  const label = m.tags["label"];
  if (label === undefined || label === "" || label.length > MAX_LABEL_BYTES) return undefined;
  return s.caps.has("labeled-response") ? label : undefined;
}

/** Runs a labeled command and sends its answer as the spec asks. */
export async function runLabeled(s: IrcSession, label: string, run: () => Promise<void>): Promise<void> {
  const collected: string[] = [];
  s.conn.capture = collected;
  try {
    await run();
  } finally {
    if (s.conn.capture === collected) s.conn.capture = null;
    answer(s, escapeTag(label), collected);
  }
}

function answer(s: IrcSession, label: string, lines: readonly string[]): void {
  const server = s.ctx.cfg.serverName;
  if (lines.length === 0) {
    s.conn.send(`@label=${label} ${formatMessage(server, "ACK", [])}`);
    return;
  }
  if (lines.length === 1) {
    s.conn.send(withTag(lines[0]!, `label=${label}`));
    return;
  }
  const id = `L${(++batches).toString(36)}`;
  s.conn.send(`@label=${label} ${formatMessage(server, "BATCH", [`+${id}`, "labeled-response"])}`);
  // A line already in a batch of its own (chathistory) stays in it; that batch's BATCH lines join ours.
  for (const line of lines) s.conn.send(hasTag(line, "batch") ? line : withTag(line, `batch=${id}`));
  s.conn.send(formatMessage(server, "BATCH", [`-${id}`]));
}
