/**
 * How a session sees a channel, for the commands: from its worker's replica
 * when it is a member (in memory, current as of the last event applied),
 * else from the store; a secret channel is hidden from those outside it.
 * And how a command hands on the event its change stored.
 * @module
 */
import type { ChannelEvent, ChannelInfo } from "./chat_store.ts";
import type { ChannelReplica } from "./channel_replica.ts";
import { fold, validChannel } from "./irc_message.ts";
import type { IrcSession } from "./irc_session.ts";

/** A channel as a session sees it: from its replica when the session is a member, else from the store. */
export interface Seen {
  readonly info: ChannelInfo;
  readonly replica?: ChannelReplica;
  readonly member: boolean;
}

/** The channel `name` for `s`, or null when there is no such channel. */
export async function seeChannel(s: IrcSession, name: string): Promise<Seen | null> {
  if (!validChannel(name)) return null;
  const member = s.joined.has(fold(name));
  const replica = member ? s.ctx.hub.replica(name) : undefined;
  if (replica) return { info: replica.info(), replica, member };
  const info = await s.ctx.store.channel(name);
  return info ? { info, member } : null;
}

/** True when `seen` is a secret channel and `s` is not in it: it is shown as if it did not exist. */
export function hidden(seen: Seen): boolean {
  return seen.info.modes.includes("s") && !seen.member;
}

/** Delivers a stored event here, publishes it, and waits until this worker's replica applied it. */
export async function committed(s: IrcSession, ev: ChannelEvent): Promise<void> {
  s.ctx.commit([ev], s.id);
  await s.ctx.hub.whenApplied(ev.channel, ev.seq);
}
