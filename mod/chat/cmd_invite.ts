/**
 * INVITE: `INVITE nick #chan` lets `nick` into a `+i` channel (and past a
 * ban) once, within an hour; `INVITE` alone lists the channels you are
 * invited to (336/337). The invited user gets the INVITE wherever it is
 * connected; the channel's operators who enabled IRCv3 `invite-notify` are
 * told; other members are not (RFC 2812).
 * @module
 */
import { fold, formatMessage, validChannel } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { notifyCompanions, tellUser } from "./notify.ts";

async function invite(s: IrcSession, nick: string, channel: string): Promise<void> {
  const { store, lists } = s.ctx;
  const target = await store.user(nick);
  if (!target) return s.replyText(N.ERR_NOSUCHNICK, nick, "No such nick/channel");
  const info = validChannel(channel) ? await store.channel(channel) : null;
  const name = info?.name ?? channel;
  if (info) {
    const members = await store.members(channel);
    const me = members.find((m) => fold(m.nick) === fold(s.nick));
    if (!me) return s.replyText(N.ERR_NOTONCHANNEL, name, "You're not on that channel");
    if (info.modes.includes("i") && !me.op) {
      return s.replyText(N.ERR_CHANOPRIVSNEEDED, name, "You're not channel operator");
    }
    if (members.some((m) => fold(m.nick) === fold(target.nick))) {
      return s.replyText(N.ERR_USERONCHANNEL, target.nick, name, "is already on channel");
    }
    await lists.invite(channel, target.nick);
    const line = formatMessage(s.source, "INVITE", [target.nick, name]);
    const ops = members.filter((m) => m.op && fold(m.nick) !== fold(s.nick)).map((m) => fold(m.nick));
    if (ops.length > 0) {
      notifyCompanions(s, line, { cap: "invite-notify", channels: [fold(name)], only: ops });
    }
  }
  s.reply(N.RPL_INVITING, target.nick, name);
  tellUser(s.ctx, target.nick, formatMessage(s.source, "INVITE", [target.nick, name]), {
    origin: s.id,
    meta: s.account ? { account: s.account } : {},
  });
  if (target.away) s.replyText(N.RPL_AWAY, target.nick, target.away);
}

async function inviteList(s: IrcSession): Promise<void> {
  for (const channel of await s.ctx.lists.invitesOf(s.nick)) s.reply(N.RPL_INVITELIST, channel);
  s.replyText(N.RPL_ENDOFINVITELIST, "End of /INVITE list");
}

/** INVITE. */
export const INVITE_COMMANDS: Record<string, Command> = {
  INVITE: {
    min: 0,
    run: (s, m) => {
      if (m.params.length === 0) return inviteList(s);
      if (m.params.length < 2) return s.replyText(N.ERR_NEEDMOREPARAMS, "INVITE", "Not enough parameters");
      return invite(s, m.params[0]!, m.params[1]!);
    },
  },
};
