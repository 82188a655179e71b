/**
 * The IRC message grammar (RFC 1459 §2.3.1, RFC 2812 §2.3.1, IRCv3 message
 * tags), in one place: parsing a client's line, formatting the server's, and
 * the names (nicknames, channels) with their case mapping. Every chat module
 * uses this one parser.
 *
 * ```abnf
 * message  = [ "@" tags SPACE ] [ ":" prefix SPACE ] command *14( SPACE middle ) [ SPACE ":" trailing ]
 * command  = 1*letter / 3digit
 * middle   = nospcrlfcl *( ":" / nospcrlfcl )
 * trailing = *( ":" / " " / nospcrlfcl )
 * ```
 * @module
 */

/** One parsed IRC message. */
export interface IrcMessage {
  /** IRCv3 tags (`@a=b;c`), unescaped; empty when none. */
  readonly tags: Readonly<Record<string, string>>;
  /** The source (`nick!user@host` or a server name), without the colon; "" when absent. */
  readonly prefix: string;
  /** The command in upper case (`PRIVMSG`, `001`). */
  readonly command: string;
  /** Parameters, the trailing one last (without its colon). */
  readonly params: readonly string[];
}

/** Longest line without tags, CR LF included (RFC 1459 §2.3). */
export const MAX_LINE_BYTES = 512;
/** Longest tag section a line may have, "@" and the space included (IRCv3 message-tags: the server's). */
export const MAX_TAG_BYTES = 8191;
/** Longest tag section a client may send, "@" and the space included (IRCv3 message-tags: 4094 bytes of tags). */
export const MAX_CLIENT_TAG_BYTES = 4096;
/** At most this many parameters (RFC 2812: 14 middles and a trailing one). */
export const MAX_PARAMS = 15;

const TAG_UNESCAPE: Record<string, string> = { ":": ";", s: " ", "\\": "\\", r: "\r", n: "\n" };
const TAG_ESCAPE: Record<string, string> = { ";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n" };

function parseTags(text: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const item of text.split(";")) {
    if (item === "") continue;
    const eq = item.indexOf("=");
    const key = eq < 0 ? item : item.slice(0, eq);
    const raw = eq < 0 ? "" : item.slice(eq + 1);
    tags[key] = raw.replace(/\\(.?)/g, (_, c: string) => TAG_UNESCAPE[c] ?? c);
  }
  return tags;
}

/**
 * Parses one line (CR LF already removed). Returns null for a line with no
 * command (empty, only a prefix, only tags): RFC 1459 says to ignore those.
 * @example
 * ```ts
 * parseMessage("PRIVMSG #a :hello there").params; // ["#a", "hello there"]
 * ```
 */
export function parseMessage(line: string): IrcMessage | null {
  let rest = line;
  let tags: Record<string, string> = {};
  if (rest.startsWith("@")) {
    const sp = rest.indexOf(" ");
    if (sp < 0) return null;
    tags = parseTags(rest.slice(1, sp));
    rest = rest.slice(sp + 1).replace(/^ +/, "");
  }
  let prefix = "";
  if (rest.startsWith(":")) {
    const sp = rest.indexOf(" ");
    if (sp < 0) return null;
    prefix = rest.slice(1, sp);
    rest = rest.slice(sp + 1);
  }
  rest = rest.replace(/^ +/, "");
  const params: string[] = [];
  let command = "";
  while (rest.length > 0) {
    if (command !== "" && (rest.startsWith(":") || params.length === MAX_PARAMS - 1)) {
      params.push(rest.startsWith(":") ? rest.slice(1) : rest);
      break;
    }
    const sp = rest.indexOf(" ");
    const word = sp < 0 ? rest : rest.slice(0, sp);
    if (command === "") command = word.toUpperCase();
    else params.push(word);
    rest = sp < 0 ? "" : rest.slice(sp + 1).replace(/^ +/, "");
  }
  if (command === "") return null;
  return { tags, prefix, command, params };
}

/**
 * Formats a message. The last parameter gets a colon when it needs one
 * (empty, has a space, starts with ":"), or when `trailing` is set. The
 * line without tags never exceeds 510 bytes (512 with CR LF, RFC 1459
 * §2.3): a longer last parameter is cut, never inside a character. CR, LF
 * and NUL never appear in it (each becomes a space): one formatted message
 * is always exactly one line.
 */
export function formatMessage(
  prefix: string,
  command: string,
  params: readonly string[],
  options: { trailing?: boolean; tags?: Readonly<Record<string, string>> } = {},
): string {
  let out = "";
  const tagText = Object.entries(options.tags ?? {})
    .map(([k, v]) => (v === "" ? k : `${k}=${v.replace(/[; \\\r\n]/g, (c) => TAG_ESCAPE[c]!)}`))
    .join(";");
  if (tagText) out += `@${tagText} `;
  let body = prefix ? `:${prefix} ${command}` : command;
  params.forEach((p, i) => {
    const last = i === params.length - 1;
    const colon = last && (options.trailing || p === "" || p.includes(" ") || p.startsWith(":"));
    if (last && body.length + p.length > 168 && byteLength(body) + 2 + byteLength(p) > MAX_LINE_BYTES - 2) {
      p = truncateBytes(p, Math.max(0, MAX_LINE_BYTES - 2 - byteLength(body) - 2));
    }
    body += colon ? ` :${p}` : ` ${p}`;
  });
  if (/[\r\n\0]/.test(body)) body = body.replace(/[\r\n\0]/g, " ");
  return out + body;
}

/**
 * A host as IRC can show it: an IPv6 address that starts with ":" (`::1`)
 * would read as a trailing parameter in 311 and 352, so it gets a leading
 * "0" (`0::1`), as other servers do.
 */
export function displayHost(host: string): string {
  return host.startsWith(":") ? `0${host}` : host;
}

/** Nickname limit advertised in ISUPPORT (NICKLEN). */
export const NICKLEN = 30;
/** Channel name limit advertised in ISUPPORT (CHANNELLEN). */
export const CHANNELLEN = 50;
/** Topic limit advertised in ISUPPORT (TOPICLEN). */
export const TOPICLEN = 390;

/**
 * Folds a name by the rfc1459 case mapping (advertised as
 * `CASEMAPPING=rfc1459`): A–Z are a–z, and `[]\~` are the upper case of
 * `{}|^`. Uniqueness of nicknames and channels is decided on folded names.
 */
export function fold(name: string): string {
  return name.replace(/[A-Z\[\]\\~]/g, (c) => {
    switch (c) {
      case "[":
        return "{";
      case "]":
        return "}";
      case "\\":
        return "|";
      case "~":
        return "^";
    }
    return c.toLowerCase();
  });
}

/** RFC 2812 §2.3.1: a letter or special first, then letters, digits, specials and "-". */
export function validNick(nick: string): boolean {
  return nick.length <= NICKLEN && /^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$/.test(nick);
}

// deno-lint-ignore no-control-regex -- BEL and NUL are exactly what RFC 2812 forbids in a channel name
const NOT_IN_CHANNEL = /[\s,\x07\x00:]/;

/** A channel name: "#" then 1..CHANNELLEN-1 characters, none of space, comma, BEL, NUL, CR, LF or ":". */
export function validChannel(name: string): boolean {
  return name.length >= 2 && name.length <= CHANNELLEN && name.startsWith("#") && !NOT_IN_CHANNEL.test(name);
}

/** True when `target` names a channel (CHANTYPES=#). */
export function isChannel(target: string): boolean {
  return target.startsWith("#");
}

const NON_ASCII = /[\u0080-\uffff]/;

/** Bytes of `s` in UTF-8. */
export function byteLength(s: string): number {
  if (!NON_ASCII.test(s)) return s.length; // the common case, scanned natively (NAMES lines of a big channel)
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** `s` cut to at most `max` UTF-8 bytes, never inside a character. */
export function truncateBytes(s: string, max: number): string {
  if (byteLength(s) <= max) return s;
  let out = "";
  let n = 0;
  for (const ch of s) {
    const b = byteLength(ch);
    if (n + b > max) break;
    out += ch;
    n += b;
  }
  return out;
}
