/**
 * The numeric replies osps sends (RFC 1459/2812 and the modern IRC
 * documentation), by name, and the ISUPPORT tokens it advertises.
 * @module
 */
import { CHANNELLEN, NICKLEN, TOPICLEN } from "./irc_message.ts";
import { chanmodesToken, prefixToken } from "./channel_modes.ts";

/** Numeric replies, by their usual names. */
export const N = {
  RPL_WELCOME: "001",
  RPL_YOURHOST: "002",
  RPL_CREATED: "003",
  RPL_MYINFO: "004",
  RPL_ISUPPORT: "005",
  RPL_ENDOFSTATS: "219",
  RPL_UMODEIS: "221",
  RPL_STATSUPTIME: "242",
  RPL_STATSDEBUG: "249",
  RPL_LUSERCLIENT: "251",
  RPL_AWAY: "301",
  RPL_USERHOST: "302",
  RPL_ISON: "303",
  RPL_UNAWAY: "305",
  RPL_NOWAWAY: "306",
  RPL_WHOISUSER: "311",
  RPL_WHOISSERVER: "312",
  RPL_ENDOFWHO: "315",
  RPL_WHOISIDLE: "317",
  RPL_ENDOFWHOIS: "318",
  RPL_WHOISCHANNELS: "319",
  RPL_LISTSTART: "321",
  RPL_LIST: "322",
  RPL_LISTEND: "323",
  RPL_CHANNELMODEIS: "324",
  RPL_CREATIONTIME: "329",
  RPL_NOTOPIC: "331",
  RPL_TOPIC: "332",
  RPL_TOPICWHOTIME: "333",
  RPL_WHOREPLY: "352",
  RPL_NAMREPLY: "353",
  RPL_ENDOFNAMES: "366",
  RPL_MOTD: "372",
  RPL_MOTDSTART: "375",
  RPL_ENDOFMOTD: "376",
  ERR_NOSUCHNICK: "401",
  ERR_NOSUCHCHANNEL: "403",
  ERR_TOOMANYCHANNELS: "405",
  RPL_ENDOFBANLIST: "368",
  RPL_BANLIST: "367",
  ERR_CANNOTSENDTOCHAN: "404",
  ERR_NORECIPIENT: "411",
  ERR_NOTEXTTOSEND: "412",
  ERR_INPUTTOOLONG: "417",
  ERR_UNKNOWNCOMMAND: "421",
  ERR_NOMOTD: "422",
  ERR_NONICKNAMEGIVEN: "431",
  ERR_ERRONEUSNICKNAME: "432",
  ERR_NICKNAMEINUSE: "433",
  ERR_USERNOTINCHANNEL: "441",
  ERR_NOTONCHANNEL: "442",
  ERR_NOTREGISTERED: "451",
  ERR_NEEDMOREPARAMS: "461",
  ERR_ALREADYREGISTERED: "462",
  ERR_PASSWDMISMATCH: "464",
  ERR_CHANNELISFULL: "471",
  ERR_UNKNOWNMODE: "472",
  ERR_BADCHANNELKEY: "475",
  ERR_BADCHANMASK: "476",
  ERR_CHANOPRIVSNEEDED: "482",
  ERR_UMODEUNKNOWNFLAG: "501",
  ERR_USERSDONTMATCH: "502",
  ERR_INVALIDCAPCMD: "410",
} as const;

/** User modes osps knows. */
export const USER_MODES = "i";
/** Modes a new channel gets. */
export const NEW_CHANNEL_MODES = "nt";
/** Most channels one client may be in. */
export const MAX_CHANNELS_PER_CLIENT = 50;
/** Largest CHATHISTORY answer. */
export const CHATHISTORY_MAX = 100;
/** Targets one PRIVMSG/NOTICE may name. */
export const MAX_TARGETS = 4;

/** ISUPPORT tokens (RPL_ISUPPORT, 005). */
export function isupportTokens(network: string): string[] {
  return [
    "AWAYLEN=200",
    "CASEMAPPING=rfc1459",
    `CHANLIMIT=#:${MAX_CHANNELS_PER_CLIENT}`,
    chanmodesToken(),
    `CHANNELLEN=${CHANNELLEN}`,
    "CHANTYPES=#",
    "ELIST=MNU",
    `CHATHISTORY=${CHATHISTORY_MAX}`,
    "KICKLEN=390",
    "MODES=4",
    `NETWORK=${network}`,
    `NICKLEN=${NICKLEN}`,
    prefixToken(),
    `TARGMAX=PRIVMSG:${MAX_TARGETS},NOTICE:${MAX_TARGETS},JOIN:,PART:,NAMES:1,WHOIS:1`,
    `TOPICLEN=${TOPICLEN}`,
    "USERLEN=18",
  ];
}
