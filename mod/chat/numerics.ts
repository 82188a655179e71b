/**
 * The numeric replies osps sends (RFC 1459/2812 and the modern IRC
 * documentation), by name, and the ISUPPORT tokens it advertises.
 * @module
 */
import { CHANNELLEN, NICKLEN, TOPICLEN } from "./irc_message.ts";
import { MAX_BANS } from "./list_store.ts";

/** Numeric replies, by their usual names. */
export const N = {
  RPL_WELCOME: "001",
  RPL_YOURHOST: "002",
  RPL_CREATED: "003",
  RPL_MYINFO: "004",
  RPL_ISUPPORT: "005",
  RPL_UMODEIS: "221",
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
  RPL_LUSEROP: "252",
  RPL_LUSERUNKNOWN: "253",
  RPL_LUSERCHANNELS: "254",
  RPL_LUSERME: "255",
  RPL_LOCALUSERS: "265",
  RPL_GLOBALUSERS: "266",
  RPL_WHOWASUSER: "314",
  RPL_WHOISACCOUNT: "330",
  RPL_WHOISBOT: "335",
  RPL_INVITELIST: "336",
  RPL_ENDOFINVITELIST: "337",
  RPL_INVITING: "341",
  RPL_WHOSPCRPL: "354",
  RPL_ENDOFWHOWAS: "369",
  ERR_WASNOSUCHNICK: "406",
  ERR_USERONCHANNEL: "443",
  ERR_INVITEONLYCHAN: "473",
  ERR_BANNEDFROMCHAN: "474",
  ERR_BANLISTFULL: "478",
  RPL_MONONLINE: "730",
  RPL_MONOFFLINE: "731",
  RPL_MONLIST: "732",
  RPL_ENDOFMONLIST: "733",
  ERR_MONLISTFULL: "734",
  RPL_LOGGEDIN: "900",
  RPL_LOGGEDOUT: "901",
  ERR_NICKLOCKED: "902",
  RPL_SASLSUCCESS: "903",
  ERR_SASLFAIL: "904",
  ERR_SASLTOOLONG: "905",
  ERR_SASLABORTED: "906",
  ERR_SASLALREADY: "907",
  RPL_SASLMECHS: "908",
} as const;

/**
 * Channel modes by kind (ISUPPORT CHANMODES=A,B,C,D): a list with a mask
 * (b, bans); a parameter always (k, key); a parameter when set (l, limit);
 * flags (i invite-only, m moderated, n no outside messages, s secret, t topic
 * by ops). Prefix modes (PREFIX): o, v.
 */
export const CHANMODES = "b,k,l,imnst";
/** Channel modes osps knows, all kinds. */
export const CHANNEL_MODES = "biklmnostv";
/** Channel modes that take a parameter (RPL_MYINFO). */
export const CHANNEL_MODES_WITH_PARAM = "bklov";
/** Channel flag modes (no parameter). */
export const CHANNEL_FLAGS = "imnst";
/** User modes osps knows: i invisible, B bot (IRCv3 bot-mode). */
export const USER_MODES = "iB";
/** Modes a new channel gets. */
export const NEW_CHANNEL_MODES = "nt";
/** Most channels one client may be in. */
export const MAX_CHANNELS_PER_CLIENT = 50;
/** Largest CHATHISTORY answer. */
export const CHATHISTORY_MAX = 100;
/** Most nicknames one client may MONITOR. */
export const MONITOR_LIMIT = 100;
/** Targets one PRIVMSG/NOTICE may name. */
export const MAX_TARGETS = 4;

/** ISUPPORT tokens (RPL_ISUPPORT, 005). */
export function isupportTokens(network: string): string[] {
  return [
    "AWAYLEN=200",
    "BOT=B",
    "CASEMAPPING=rfc1459",
    `CHANLIMIT=#:${MAX_CHANNELS_PER_CLIENT}`,
    `CHANMODES=${CHANMODES}`,
    `CHANNELLEN=${CHANNELLEN}`,
    "CHANTYPES=#",
    `CHATHISTORY=${CHATHISTORY_MAX}`,
    "KICKLEN=390",
    `MAXLIST=b:${MAX_BANS}`,
    "MODES=4",
    `MONITOR=${MONITOR_LIMIT}`,
    `NETWORK=${network}`,
    `NICKLEN=${NICKLEN}`,
    "PREFIX=(ov)@+",
    `TARGMAX=PRIVMSG:${MAX_TARGETS},NOTICE:${MAX_TARGETS},JOIN:,PART:,NAMES:1,WHOIS:1`,
    `TOPICLEN=${TOPICLEN}`,
    "USERLEN=18",
    "WHOX",
  ];
}
