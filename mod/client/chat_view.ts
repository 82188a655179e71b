/**
 * How `osps chat` shows IRC traffic to a person and reads what they type:
 * one short line per event (`#room <nick> text`, `* nick joined #room` …),
 * the replies to raw `/quote` commands, and which nickname and channel are
 * ours now (after `/nick`, `/part`, a kick or a refused join).
 *
 * Everything shown that came from the network goes through {@link printable}:
 * other users' bytes never reach the terminal as control sequences.
 * @module
 */
import { fold, formatMessage, type IrcMessage } from "../chat/irc_message.ts";

/** The nickname in a `nick!user@host` source. */
export function nickOf(source: string): string {
  return source.split("!")[0]!;
}

/**
 * `text` safe to print on a terminal: IRC formatting (bold, colours, reset …)
 * removed; every other control character (ESC, BEL, BS, CR, the C1 controls
 * such as CSI) shown in caret or `\u` notation instead of acting on the
 * terminal; bidirectional overrides, which can make a line read as something
 * else, shown as `\u` too. Linear in the input.
 */
export function printable(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x02 || c === 0x0f || c === 0x11 || c === 0x16 || c === 0x1d || c === 0x1e || c === 0x1f) {
      continue;
    }
    if (c === 0x03) { // colour: ^C[fg[,bg]] with one or two digits each
      let j = i + 1;
      const digits = (from: number) => {
        let k = from;
        while (k < text.length && k < from + 2 && text.charCodeAt(k) >= 0x30 && text.charCodeAt(k) <= 0x39) {
          k++;
        }
        return k;
      };
      j = digits(j);
      if (j > i + 1 && text[j] === "," && digits(j + 1) > j + 1) j = digits(j + 1);
      i = j - 1;
      continue;
    }
    if (c === 0x09) out += " ";
    else if (c < 0x20 || c === 0x7f) out += `^${String.fromCharCode(c ^ 0x40)}`;
    else if ((c >= 0x80 && c <= 0x9f) || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069)) {
      out += `\\u${c.toString(16).padStart(4, "0")}`;
    } else out += text[i];
  }
  return out;
}

function clock(m: IrcMessage): string {
  const at = m.tags["time"] ? new Date(m.tags["time"]) : new Date();
  return Number.isNaN(at.getTime()) ? new Date().toTimeString().slice(0, 5) : at.toTimeString().slice(0, 5);
}

/** Numerics not worth a line: the welcome burst, list and names ends, channel times. */
const QUIET = new Set([
  "001",
  "002",
  "003",
  "004",
  "005",
  "375",
  "376",
  "422",
  "366",
  "329",
  "333",
  "315",
  "318",
  "323",
]);
/** Numerics that end a failed JOIN, with the channel as their second parameter. */
const JOIN_REFUSED = new Set(["403", "405", "471", "473", "474", "475", "476", "477"]);

/** What a typed line asks for. */
export type Typed =
  | { readonly kind: "send"; readonly line: string }
  | { readonly kind: "quit"; readonly line: string }
  | { readonly kind: "help" }
  | { readonly kind: "error"; readonly text: string };

/** Help for the typed commands. */
export const CHAT_HELP = [
  "text            say it in the current channel",
  "/join #room     join (and make it current)     /part [#room]   leave",
  "/msg NICK text  private message                /names          who is here",
  "/topic text     set the topic                  /nick NEW       change nickname",
  "/quit [why]     leave                          /quote LINE     send a raw IRC line (its replies are shown)",
].join("\n");

/** One chat session as its user sees it: our nickname, our channels, the current one. */
export class ChatView {
  #nick: string;
  /** Channels we are in (or asked to join), oldest first. */
  readonly #rooms: string[] = [];
  #current: string | undefined;
  /** Lines to show besides the one for a message (the current channel changed). */
  readonly #notes: string[] = [];

  constructor(nick: string) {
    this.#nick = nick;
  }

  /** Our nickname now. */
  get nick(): string {
    return this.#nick;
  }

  /** The channel plain text goes to, if any. */
  get current(): string | undefined {
    return this.#current;
  }

  #isMe(source: string): boolean {
    return fold(nickOf(source)) === fold(this.#nick);
  }

  #enter(room: string): void {
    if (!this.#rooms.some((r) => fold(r) === fold(room))) this.#rooms.push(room);
    this.#current = room;
  }

  /** The server says we joined `room` (asked by `/join`, `/quote` or another client of ours). */
  #joined(room: string): void {
    if (!this.#rooms.some((r) => fold(r) === fold(room))) this.#rooms.push(room);
    this.#current ??= room;
  }

  #leave(room: string): void {
    const i = this.#rooms.findIndex((r) => fold(r) === fold(room));
    if (i >= 0) this.#rooms.splice(i, 1);
    if (this.#current !== undefined && fold(this.#current) === fold(room)) {
      this.#current = this.#rooms.at(-1);
      this.#notes.push(
        this.#current ? `now talking in ${printable(this.#current)}` : "not in any channel now: /join #room",
      );
    }
  }

  /** Lines to show for a server message, after taking in what it changes (our nick, our channels). */
  receive(m: IrcMessage): string[] {
    const [a = "", b = ""] = m.params;
    if (m.command === "001" && a) this.#nick = a;
    else if (m.command === "NICK" && this.#isMe(m.prefix)) this.#nick = a;
    else if (m.command === "JOIN" && this.#isMe(m.prefix)) this.#joined(a);
    else if (m.command === "PART" && this.#isMe(m.prefix)) this.#leave(a);
    else if (m.command === "KICK" && fold(b) === fold(this.#nick)) this.#leave(a);
    else if (JOIN_REFUSED.has(m.command) && this.#rooms.some((r) => fold(r) === fold(b))) this.#leave(b);
    const shown = render(m);
    const notes = this.#notes.splice(0);
    return shown === null ? notes : [shown, ...notes];
  }

  /** What a typed line asks for; `/join` and `/part` change the current channel at once. */
  typed(text: string): Typed {
    if (!text.startsWith("/")) {
      if (!this.#current) return { kind: "error", text: "join a channel first (/join #room)" };
      return { kind: "send", line: formatMessage("", "PRIVMSG", [this.#current, text], { trailing: true }) };
    }
    const [cmd = "", ...rest] = text.slice(1).split(" ");
    const arg = rest.join(" ");
    switch (cmd.toLowerCase()) {
      case "join":
        if (!rest[0]) return { kind: "error", text: "/join #room" };
        this.#enter(rest[0]);
        return { kind: "send", line: `JOIN ${rest[0]}` };
      case "part": {
        const room = rest[0] ?? this.#current;
        if (!room) return { kind: "error", text: "/part #room" };
        this.#leave(room);
        return {
          kind: "send",
          line: formatMessage("", "PART", [room, rest.slice(1).join(" ")].filter(Boolean)),
        };
      }
      case "msg":
        return rest.length >= 2
          ? {
            kind: "send",
            line: formatMessage("", "PRIVMSG", [rest[0]!, rest.slice(1).join(" ")], { trailing: true }),
          }
          : { kind: "error", text: "/msg NICK text" };
      case "names":
        return this.#current
          ? { kind: "send", line: `NAMES ${this.#current}` }
          : { kind: "error", text: "no current channel" };
      case "topic":
        return this.#current
          ? { kind: "send", line: formatMessage("", "TOPIC", [this.#current, arg], { trailing: true }) }
          : { kind: "error", text: "no current channel" };
      case "nick":
        return rest[0] ? { kind: "send", line: `NICK ${rest[0]}` } : { kind: "error", text: "/nick NEW" };
      case "quote":
        return arg ? { kind: "send", line: arg } : { kind: "error", text: "/quote LINE" };
      case "quit":
        return { kind: "quit", line: formatMessage("", "QUIT", [arg || "bye"], { trailing: true }) };
      case "help":
        return { kind: "help" };
    }
    return { kind: "error", text: `unknown command /${cmd}; /help lists them` };
  }

  /** Lines to show after taking in what this process is about to send (plus the line for our own message). */
  notes(): string[] {
    return this.#notes.splice(0);
  }

  /** The line for a message we sent (the server does not echo it back), or null. */
  own(sent: IrcMessage): string | null {
    return sent.command === "PRIVMSG" || sent.command === "NOTICE"
      ? render({ ...sent, prefix: this.#nick })
      : null;
  }
}

/** The line to show for a server message, or null for one not worth showing. */
export function render(m: IrcMessage): string | null {
  const p = m.params.map(printable);
  const who = printable(nickOf(m.prefix));
  const [a = "", b = "", c = ""] = p;
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
      return `${t} * ${who} set mode ${p.slice(1).join(" ")} on ${a}`;
    case "INVITE":
      return `${t} * ${who} invites you to ${b}`;
    case "332":
      return `topic of ${b}: ${c}`;
    case "353":
      return `in ${p[2]}: ${p[3]}`;
    case "ERROR":
      return `server: ${a}`;
    case "FAIL":
    case "WARN":
    case "NOTE":
      return `${m.command.toLowerCase()} ${p.join(" ")}`;
  }
  if (!/^\d\d\d$/.test(m.command) || QUIET.has(m.command)) return null;
  // Any other reply (to /quote WHOIS, WHO, LIST, MODE, ISON, AWAY …): its words after our own nick.
  const words = p.slice(1).join(" ");
  return /^[45]/.test(m.command) ? `error ${m.command}: ${words}` : words;
}
