/**
 * IRCv3 `draft/chathistory` over the stored channel messages: `CHATHISTORY
 * LATEST | BEFORE | AFTER | AROUND | BETWEEN | TARGETS`. A point is `*`,
 * `timestamp=…` or `msgid=…`; event times are strictly increasing within a
 * channel (the store makes them so), so a time is a place in its history as
 * exact as a message id, and paging by either skips nothing. Members only;
 * private messages are not stored (their history is empty).
 * @module
 */
import type { ChannelEvent, HistoryPoint, HistoryQuery } from "./chat_store.ts";
import { fold, formatMessage, type IrcMessage, isChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { CHATHISTORY_MAX } from "./numerics.ts";
import { eventOutgoing, seqOfMsgid, TagMask, withTag } from "./tags.ts";

function fail(s: IrcSession, code: string, ...rest: string[]): void {
  s.conn.send(
    formatMessage(s.ctx.cfg.serverName, "FAIL", ["CHATHISTORY", code, ...rest], { trailing: true }),
  );
}

let batchCounter = 0;

/** A batch reference for this worker (unique among the batches a client sees). */
function batchRef(): string {
  return `h${(++batchCounter).toString(36)}`;
}

/** Sends stored messages, in a `chathistory` batch when the client enabled batches. */
export function sendHistory(s: IrcSession, target: string, events: readonly ChannelEvent[]): void {
  const batch = s.caps.has("batch") ? batchRef() : "";
  if (batch) s.conn.send(formatMessage(s.ctx.cfg.serverName, "BATCH", [`+${batch}`, "chathistory", target]));
  // Replayed messages carry their time even without server-time (a client would show them as new), and
  // their msgid for a chathistory client (its next page starts there).
  const mask = s.tagMask | (batch ? TagMask.time : 0) |
    (s.caps.has("draft/chathistory") ? TagMask.messageTags : 0);
  for (const ev of events) {
    const line = eventOutgoing(ev).line(mask);
    s.conn.send(batch ? withTag(line, `batch=${batch}`) : line);
  }
  if (batch) s.conn.send(formatMessage(s.ctx.cfg.serverName, "BATCH", [`-${batch}`]));
}

/** A selector: `*`, `timestamp=ISO 8601`, or `msgid=` of `target`; null when malformed. */
function parsePoint(text: string, target: string): HistoryPoint | "*" | null {
  if (text === "*") return "*";
  const eq = text.indexOf("=");
  const [kind, value] = eq < 0 ? [text, ""] : [text.slice(0, eq), text.slice(eq + 1)];
  if (kind === "timestamp") {
    const at = Date.parse(value);
    return Number.isFinite(at) ? { at } : null;
  }
  if (kind === "msgid") {
    const seq = seqOfMsgid(value, target);
    return seq === null ? null : { seq };
  }
  return null;
}

/** `p` just before itself: "after this" includes the point itself (AROUND's second half). */
function justBefore(p: HistoryPoint): HistoryPoint {
  return "seq" in p ? { seq: p.seq - 1 } : { at: p.at - 1 };
}

/** Two points of one kind (a message id and a time are compared by the message's time). */
async function sameKind(
  s: IrcSession,
  target: string,
  a: HistoryPoint,
  b: HistoryPoint,
): Promise<[HistoryPoint, HistoryPoint]> {
  if (("seq" in a) === ("seq" in b)) return [a, b];
  const toTime = async (p: HistoryPoint): Promise<HistoryPoint> => {
    if (!("seq" in p)) return p;
    const [ev] = await s.ctx.store.eventsBetween(target, p.seq - 1, p.seq + 1);
    return { at: ev?.at ?? 0 };
  };
  return [await toTime(a), await toTime(b)];
}

function before(a: HistoryPoint, b: HistoryPoint): boolean {
  return "seq" in a && "seq" in b ? a.seq < b.seq : "at" in a && "at" in b ? a.at < b.at : false;
}

async function targets(s: IrcSession, from: string, to: string, count: string): Promise<void> {
  const [a, b] = [parsePoint(from, ""), parsePoint(to, "")];
  const limit = Math.min(Number(count), CHATHISTORY_MAX);
  if (!a || !b || a === "*" || b === "*" || !("at" in a) || !("at" in b) || !(limit >= 1)) {
    return fail(s, "INVALID_PARAMS", "TARGETS", "Invalid parameters");
  }
  const [lo, hi] = a.at < b.at ? [a.at, b.at] : [b.at, a.at];
  const names = [...s.joined.keys()].map((k) => s.ctx.hub.replica(k)?.name ?? k);
  // A target is listed by its latest message: one whose latest message is past the window is not listed
  // (with an older time), as irctest and ergo read the spec.
  const latest = await s.ctx.store.lastActivity(names, lo, Number.MAX_SAFE_INTEGER);
  const found = [...latest].filter(([, at]) => at < hi).sort(([, x], [, y]) => x - y).slice(0, limit);
  const batch = s.caps.has("batch") ? batchRef() : "";
  const server = s.ctx.cfg.serverName;
  if (batch) s.conn.send(formatMessage(server, "BATCH", [`+${batch}`, "draft/chathistory-targets"]));
  for (const [name, at] of found) {
    const tags = batch ? { batch } : undefined;
    s.conn.send(
      formatMessage(server, "CHATHISTORY", ["TARGETS", name, new Date(at).toISOString()], { tags }),
    );
  }
  if (batch) s.conn.send(formatMessage(server, "BATCH", [`-${batch}`]));
}

async function chathistory(s: IrcSession, m: IrcMessage): Promise<void> {
  const sub = m.params[0]!.toUpperCase();
  if (sub === "TARGETS") return await targets(s, m.params[1]!, m.params[2]!, m.params[3] ?? "");
  const target = m.params[1]!;
  const between = sub === "BETWEEN";
  if (!["LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN"].includes(sub)) {
    return fail(s, "INVALID_PARAMS", m.params[0]!, "Unknown CHATHISTORY subcommand");
  }
  const points = (between ? [m.params[2]!, m.params[3] ?? ""] : [m.params[2]!]).map((p) =>
    parsePoint(p, target)
  );
  const limit = Math.min(Number(m.params[between ? 4 : 3] ?? ""), CHATHISTORY_MAX);
  if (
    points.some((p) => p === null || (p === "*" && sub !== "LATEST")) || !Number.isInteger(limit) || limit < 1
  ) {
    return fail(s, "INVALID_PARAMS", sub, "Invalid parameters");
  }
  if (!isChannel(target)) return sendHistory(s, target, []); // private messages are not stored
  if (!s.joined.has(fold(target))) {
    return fail(s, "INVALID_TARGET", sub, target, "Messages could not be retrieved");
  }
  const p = points[0] as HistoryPoint | "*";
  const history = (q: HistoryQuery) => s.ctx.store.history(target, q);
  let events: ChannelEvent[];
  if (sub === "LATEST") events = await history({ ...(p === "*" ? {} : { after: p }), limit, newest: true });
  else if (sub === "BEFORE") events = await history({ before: p as HistoryPoint, limit, newest: true });
  else if (sub === "AFTER") events = await history({ after: p as HistoryPoint, limit, newest: false });
  else if (sub === "AROUND") {
    const half = Math.floor(limit / 2);
    const point = p as HistoryPoint;
    const older = half > 0 ? await history({ before: point, limit: half, newest: true }) : [];
    events = [...older, ...await history({ after: justBefore(point), limit: limit - half, newest: false })];
  } else {
    const [a, b] = await sameKind(s, target, p as HistoryPoint, points[1] as HistoryPoint);
    events = before(a, b)
      ? await history({ after: a, before: b, limit, newest: false })
      : await history({ after: b, before: a, limit, newest: true });
  }
  sendHistory(s, target, events);
}

/** History commands, by name. */
export const HISTORY_COMMANDS: Record<string, Command> = {
  CHATHISTORY: { min: 4, run: chathistory },
};
