/**
 * Lines with IRCv3 tags, built once per message and shared by every
 * recipient. Which tags a client gets depends on the capabilities it enabled
 * (`server-time`: `time`; `message-tags`: `msgid`, `bot` and the sender's
 * client-only tags; `account-tag`: `account`; `extended-join`: the long form
 * of JOIN): a recipient's choice is a small bit mask ({@link TagMask}), and an
 * {@link Outgoing} keeps one formatted line per mask that was asked for. A
 * message to 10,000 members costs at most a few string builds, never one per
 * member; and the encoded bytes are shared too, so 10,000 queues hold one
 * copy of a message, not 10,000.
 *
 * Message ids: a channel event's is `<seq>:<folded channel>` — its number in
 * the channel, which CHATHISTORY accepts back (`msgid=…`), unique because a
 * channel's numbers are; a private message's is the worker's owner id and a
 * counter.
 * @module
 */
import { fold, formatMessage } from "./irc_message.ts";
import type { ChannelEvent } from "./chat_store.ts";

/** Bits of what a client receives in tags (from its capabilities). */
export const TagMask = {
  /** `server-time`: `time=`. */
  time: 1,
  /** `message-tags`: `msgid=`, `bot`, client-only tags. */
  messageTags: 2,
  /** `account-tag`: `account=`. */
  account: 4,
  /** `extended-join`: JOIN with account and realname. */
  extendedJoin: 8,
} as const;

/** What a message carries besides its line. */
export interface TagMeta {
  /** When it happened, ms since the epoch. */
  readonly at: number;
  readonly msgid?: string;
  /** The sender's account ("" or absent: none). */
  readonly account?: string;
  /** Client-only tags, escaped as on the wire (`+a=b;+c`). */
  readonly tags?: string;
  /** The sender is a bot (user mode +B). */
  readonly bot?: boolean;
}

const encoder = new TextEncoder();
const TAG_ESCAPE: Record<string, string> = { ";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n" };

/** A tag value escaped for the wire. */
export function escapeTag(value: string): string {
  return value.replace(/[; \\\r\n]/g, (c) => TAG_ESCAPE[c]!);
}

/** A message to deliver: one line per tag mask, each built once. */
export class Outgoing {
  readonly base: string;
  readonly meta: TagMeta;
  /** The line for `extended-join` clients, when it differs. */
  readonly extended: string | undefined;
  readonly #lines: Array<string | undefined> = [];
  readonly #bytes: Array<Uint8Array | undefined> = [];
  #time: string | undefined;

  constructor(base: string, meta: TagMeta, extended?: string) {
    this.base = base;
    this.meta = meta;
    this.extended = extended;
  }

  /** The line with the tags that `mask` asks for. */
  line(mask: number): string {
    return this.#lines[mask] ??= this.#build(mask);
  }

  /** {@link line} encoded with its CR LF, once per mask: every recipient's queue shares these bytes. */
  bytes(mask: number): Uint8Array {
    return this.#bytes[mask] ??= encoder.encode(`${this.line(mask)}\r\n`);
  }

  #build(mask: number): string {
    const body = mask & TagMask.extendedJoin && this.extended !== undefined ? this.extended : this.base;
    let tags = "";
    const add = (t: string) => tags += tags === "" ? t : `;${t}`;
    if (mask & TagMask.time) add(`time=${this.#time ??= new Date(this.meta.at).toISOString()}`);
    if (mask & TagMask.messageTags) {
      if (this.meta.msgid) add(`msgid=${escapeTag(this.meta.msgid)}`);
      if (this.meta.bot) add("bot");
      if (this.meta.tags) add(this.meta.tags);
    }
    if (mask & TagMask.account && this.meta.account) add(`account=${escapeTag(this.meta.account)}`);
    return tags === "" ? body : `@${tags} ${body}`;
  }
}

/** The msgid of a channel event. */
export function eventMsgid(ev: Pick<ChannelEvent, "seq" | "channel">): string {
  return `${ev.seq}:${fold(ev.channel)}`;
}

const TRAILING = new Set(["PRIVMSG", "NOTICE", "TOPIC", "PART", "KICK"]);

/**
 * A channel event as delivered: its line, and for a JOIN the extended form
 * (`JOIN #chan <account|*> :<realname>`, from the event's params).
 */
export function eventOutgoing(ev: ChannelEvent): Outgoing {
  const meta: TagMeta = { at: ev.at, msgid: eventMsgid(ev), account: ev.account, tags: ev.tags };
  if (ev.kind === "JOIN") {
    const base = formatMessage(ev.source, "JOIN", [ev.channel]);
    const [account = ev.account || "*", realname = ""] = ev.params;
    return new Outgoing(
      base,
      meta,
      formatMessage(ev.source, "JOIN", [ev.channel, account, realname], { trailing: true }),
    );
  }
  const line = formatMessage(ev.source, ev.kind, [ev.channel, ...ev.params], {
    trailing: TRAILING.has(ev.kind),
  });
  return new Outgoing(line, meta);
}

/** `line` with one more tag (kept first; a line without tags gets a tag section). */
export function withTag(line: string, tag: string): string {
  return line.startsWith("@") ? `@${tag};${line.slice(1)}` : `@${tag} ${line}`;
}

/** True when a line's tag section has `name` (with or without a value). */
export function hasTag(line: string, name: string): boolean {
  if (!line.startsWith("@")) return false;
  const end = line.indexOf(" ");
  for (const t of line.slice(1, end < 0 ? undefined : end).split(";")) {
    if (t === name || t.startsWith(`${name}=`)) return true;
  }
  return false;
}

/**
 * The client-only tags of a parsed message (`+name`), escaped for relaying,
 * or "" when none; at most `maxBytes` of them (IRCv3: 4094), the rest dropped.
 */
export function clientTags(tags: Readonly<Record<string, string>>, maxBytes = 4094): string {
  let out = "";
  for (const [k, v] of Object.entries(tags)) {
    if (!k.startsWith("+") || !/^\+[A-Za-z0-9./-]+$/.test(k) || k.length > 100) continue;
    const t = v === "" ? k : `${k}=${escapeTag(v)}`;
    if (out.length + t.length + 1 > maxBytes) break;
    out += out === "" ? t : `;${t}`;
  }
  return out;
}
