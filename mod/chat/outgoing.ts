/**
 * One event as it leaves the server: formatted and encoded once, whatever
 * the number of recipients. A channel message to 5,000 members is one
 * string and one `Uint8Array` that every member's send queue shares; a
 * variant with tags (server-time, and what capabilities add) is encoded once
 * per variant, on first use.
 * @module
 */
import type { ChannelEvent } from "./chat_store.ts";
import { fold, formatMessage } from "./irc_message.ts";

const encoder = new TextEncoder();

/** Kinds whose last parameter is free text, always sent with a colon. */
const TEXT_LAST = new Set(["PRIVMSG", "NOTICE", "TOPIC", "PART", "KICK", "QUIT"]);

/** The IRC line (without tags) an event shows. */
export function eventLine(ev: ChannelEvent): string {
  if (ev.kind === "QUIT" || ev.kind === "NICK") {
    return formatMessage(ev.source, ev.kind, ev.params, { trailing: ev.kind === "QUIT" });
  }
  return formatMessage(ev.source, ev.kind, [ev.channel, ...ev.params], {
    trailing: TEXT_LAST.has(ev.kind) && ev.params.length > 0,
  });
}

/** A line for many recipients, encoded once per variant. */
export class Outgoing {
  /** The line without tags and without CR LF. */
  readonly line: string;
  /** When it happened (ms since the epoch): the `time` tag. */
  readonly at: number;
  /** The channel event it shows, if it is one. */
  readonly ev: ChannelEvent | undefined;
  /** The connection that caused it (`owner/n`), "" when unknown. */
  readonly origin: string;
  #plain: Uint8Array | undefined;
  #variants: Map<string, Uint8Array> | undefined;

  constructor(line: string, at: number, origin = "", ev?: ChannelEvent) {
    this.line = line;
    this.at = at;
    this.origin = origin;
    this.ev = ev;
  }

  /** The line of a channel event. */
  static of(ev: ChannelEvent, origin: string): Outgoing {
    return new Outgoing(eventLine(ev), ev.at, origin, ev);
  }

  /** The line with CR LF, without tags. */
  plain(): Uint8Array {
    return this.#plain ??= encoder.encode(this.line + "\r\n");
  }

  /**
   * The line with tags, CR LF included; `key` names the variant (the
   * recipients that ask for the same tags share one encoding).
   */
  tagged(key: string, tags: () => Readonly<Record<string, string>>): Uint8Array {
    this.#variants ??= new Map();
    let bytes = this.#variants.get(key);
    if (!bytes) {
      const t = tags();
      bytes = Object.keys(t).length === 0
        ? this.plain()
        : encoder.encode(`${formatMessage("", "", [], { tags: t })}${this.line}\r\n`);
      this.#variants.set(key, bytes);
    }
    return bytes;
  }
}

/** The IRCv3 `msgid` of a channel event: its number and its channel (folded), unique forever. */
export function msgidOf(ev: ChannelEvent): string {
  return `${ev.seq}:${fold(ev.channel)}`;
}

/** The event number a `msgid` of `channel` names, or null when it is not one of that channel's. */
export function seqOfMsgid(msgid: string, channel: string): number | null {
  const colon = msgid.indexOf(":");
  const seq = Number(msgid.slice(0, colon));
  return colon > 0 && Number.isSafeInteger(seq) && seq > 0 && msgid.slice(colon + 1) === fold(channel)
    ? seq
    : null;
}
