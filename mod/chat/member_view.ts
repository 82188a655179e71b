/**
 * How a channel member is shown, by what the viewer enabled: its prefix
 * (`@` operator, `+` voiced; both with IRCv3 `multi-prefix`, the highest
 * alone without), and in NAMES its `nick!user@host` with `userhost-in-names`.
 * @module
 */
import type { Member } from "./chat_store.ts";

/** The member's prefix for a viewer with (or without) multi-prefix. */
export function prefixOf(m: Pick<Member, "op" | "voice"> | null | undefined, multi: boolean): string {
  if (!m) return "";
  if (multi) return (m.op ? "@" : "") + (m.voice ? "+" : "");
  return m.op ? "@" : m.voice ? "+" : "";
}

/** A NAMES entry for a viewer with these capabilities. */
export function namesEntry(m: Member, caps: ReadonlySet<string>): string {
  const who = caps.has("userhost-in-names") && m.host !== undefined
    ? `${m.nick}!${m.user}@${m.host}`
    : m.nick;
  return prefixOf(m, caps.has("multi-prefix")) + who;
}
