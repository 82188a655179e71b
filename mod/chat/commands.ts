/**
 * Every IRC command osps understands, by name: the one table a session
 * dispatches on (an unknown command gets 421, or 451 before registration).
 * @module
 */
import { CHANNEL_COMMANDS } from "./cmd_channel.ts";
import { CONNECTION_COMMANDS } from "./cmd_connection.ts";
import { MESSAGE_COMMANDS } from "./cmd_message.ts";
import { QUERY_COMMANDS } from "./cmd_query.ts";
import type { Command } from "./irc_session.ts";
import { ACCOUNT_COMMANDS } from "./cmd_account.ts";
import { INVITE_COMMANDS } from "./cmd_invite.ts";
import { MONITOR_COMMANDS } from "./monitor.ts";
import { PRESENCE_COMMANDS } from "./presence.ts";
import { SASL_COMMANDS } from "./sasl.ts";
import { SERVICE_COMMANDS } from "./services.ts";

/** The command table. */
export const COMMANDS: Readonly<Record<string, Command>> = {
  ...CONNECTION_COMMANDS,
  ...CHANNEL_COMMANDS,
  ...MESSAGE_COMMANDS,
  ...QUERY_COMMANDS,
  ...SASL_COMMANDS,
  ...ACCOUNT_COMMANDS,
  ...SERVICE_COMMANDS,
  ...MONITOR_COMMANDS,
  ...INVITE_COMMANDS,
  ...PRESENCE_COMMANDS,
};
