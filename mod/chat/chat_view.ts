/**
 * How `osps chat` shows IRC traffic to a person: one short line per event
 * (`#room <nick> text`, `* nick joined #room` …), and what a typed line
 * means (`/join #room`, `/msg nick text`, plain text to the current channel).
 * @module
 */
import { formatMessage, type IrcMessage } from "./irc_message.ts";

/** The nickname in a `nick!user@host` source. */
export function nickOf(source: string): string {
  return source.split("!")[0]!;
}

function clock(m: IrcMessage): string {
  const at = m.tags["time"] ? new Date(m.tags["time"]) : new Date();
  return at.toTimeString().slice(0, 5);
}

/** The line to show for a server message, or null for one not worth showing. */
export function render(m: IrcMessage): string | null {
  const who = nickOf(m.prefix);
  const [a = "", b = "", c = ""] = m.params;
  const t = clock(m);
  switch (m.command) {
    case "PRIVMSG":
      return a.startsWith("#") ? `${t} ${a} <${who}> ${b}` : `${t} *${who}* ${b}`;
    case "NOTICE":
      return `${t} -${who}${a.startsWith("#") ? `:${a}` : ""}- ${b}`;
    case "JOIN":
      return `${t} * ${who} joined ${a}`;
    case "PART":
      return `${t} * ${who} left ${a}${b ? ` (${b})` : ""}`;
    case "QUIT":
      return `${t} * ${who} quit (${a})`;
    case "NICK":
      return `${t} * ${who} is now ${a}`;
    case "TOPIC":
      return `${t} * ${who} set the topic of ${a}: ${b}`;
    case "KICK":
      return `${t} * ${who} kicked ${b} from ${a} (${c})`;
    case "MODE":
      return `${t} * ${who} set mode ${m.params.slice(1).join(" ")} on ${a}`;
    case "332":
      return `topic of ${b}: ${c}`;
    case "353":
      return `in ${m.params[2]}: ${m.params[3]}`;
    case "ERROR":
      return `server: ${a}`;
  }
  if (/^[45]\d\d$/.test(m.command) && m.command !== "422") {
    return `error ${m.command}: ${m.params.slice(1).join(" ")}`;
  }
  return null;
}

/** What a typed line asks for. */
export type Typed =
  | { readonly kind: "send"; readonly line: string; readonly current?: string }
  | { readonly kind: "quit"; readonly line: string }
  | { readonly kind: "help" }
  | { readonly kind: "error"; readonly text: string };

/** Help for the typed commands. */
export const CHAT_HELP = [
  "text            say it in the current channel",
  "/join #room     join (and make it current)     /part [#room]   leave",
  "/msg NICK text  private message                /names          who is here",
  "/topic text     set the topic                  /nick NEW       change nickname",
  "/quit [why]     leave                          /quote LINE     send a raw IRC line",
].join("\n");

/** Parses a typed line; `current` is the current channel, if any. */
export function parseTyped(text: string, current: string | undefined): Typed {
  if (!text.startsWith("/")) {
    if (!current) return { kind: "error", text: "join a channel first (/join #room)" };
    return { kind: "send", line: formatMessage("", "PRIVMSG", [current, text], { trailing: true }) };
  }
  const [cmd = "", ...rest] = text.slice(1).split(" ");
  const arg = rest.join(" ");
  switch (cmd.toLowerCase()) {
    case "join":
      return rest[0]
        ? { kind: "send", line: `JOIN ${rest[0]}`, current: rest[0] }
        : { kind: "error", text: "/join #room" };
    case "part":
      return rest[0] || current
        ? { kind: "send", line: `PART ${rest[0] ?? current}` }
        : { kind: "error", text: "/part #room" };
    case "msg":
      return rest.length >= 2
        ? {
          kind: "send",
          line: formatMessage("", "PRIVMSG", [rest[0]!, rest.slice(1).join(" ")], { trailing: true }),
        }
        : { kind: "error", text: "/msg NICK text" };
    case "names":
      return current
        ? { kind: "send", line: `NAMES ${current}` }
        : { kind: "error", text: "no current channel" };
    case "topic":
      return current
        ? { kind: "send", line: formatMessage("", "TOPIC", [current, arg], { trailing: true }) }
        : { kind: "error", text: "no current channel" };
    case "nick":
      return rest[0] ? { kind: "send", line: `NICK ${rest[0]}` } : { kind: "error", text: "/nick NEW" };
    case "quote":
      return { kind: "send", line: arg };
    case "quit":
      return { kind: "quit", line: formatMessage("", "QUIT", [arg || "bye"], { trailing: true }) };
    case "help":
      return { kind: "help" };
  }
  return { kind: "error", text: `unknown command /${cmd}; /help lists them` };
}
