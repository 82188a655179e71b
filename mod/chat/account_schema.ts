/**
 * Schema version 2 of the chat database (one entry of `SCHEMA` in
 * `store_schema.ts`): accounts and what hangs on them, the lists the IRC
 * server keeps (bans, invitations, WHOWAS), and the columns IRCv3 needs on
 * existing tables — the account a user is logged in to, and the sender's
 * account and client-only tags of each channel event (so that history
 * replays them).
 *
 * A channel is *registered* when it has a row in `channel_regs`: that row is
 * the marker the channel life cycle reads (an unregistered channel vanishes
 * when its last member leaves; a registered one keeps its topic, modes and
 * ban list). Bans and invitations hang on the channel row and go with it.
 * @module
 */

const V2 = `
CREATE TABLE accounts (
  folded TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, password TEXT NOT NULL, scram TEXT NOT NULL,
  verified INTEGER NOT NULL, verify_code TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE account_tokens (
  hash TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(folded) ON DELETE CASCADE,
  expires_at BIGINT NOT NULL, label TEXT NOT NULL);
CREATE INDEX account_tokens_account ON account_tokens(account);
CREATE TABLE channel_regs (
  channel TEXT PRIMARY KEY, founder TEXT NOT NULL REFERENCES accounts(folded) ON DELETE CASCADE,
  registered_at BIGINT NOT NULL);
CREATE INDEX channel_regs_founder ON channel_regs(founder);
CREATE TABLE channel_access (
  channel TEXT NOT NULL REFERENCES channel_regs(channel) ON DELETE CASCADE,
  account TEXT NOT NULL REFERENCES accounts(folded) ON DELETE CASCADE,
  level TEXT NOT NULL, PRIMARY KEY (channel, account));
CREATE INDEX channel_access_account ON channel_access(account);
CREATE TABLE bans (
  channel TEXT NOT NULL REFERENCES channels(folded) ON DELETE CASCADE, mask TEXT NOT NULL,
  set_by TEXT NOT NULL, set_at BIGINT NOT NULL, PRIMARY KEY (channel, mask));
CREATE TABLE invites (
  channel TEXT NOT NULL REFERENCES channels(folded) ON DELETE CASCADE, nick TEXT NOT NULL,
  at BIGINT NOT NULL, PRIMARY KEY (channel, nick));
CREATE TABLE whowas (
  folded TEXT NOT NULL, nick TEXT NOT NULL, "user" TEXT NOT NULL, host TEXT NOT NULL, realname TEXT NOT NULL,
  account TEXT NOT NULL, at BIGINT NOT NULL);
CREATE INDEX whowas_folded ON whowas(folded, at);
ALTER TABLE users ADD COLUMN account TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN account TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN tags TEXT NOT NULL DEFAULT '';
`;

/** Schema version 2, for both engines. */
export const ACCOUNTS_STEP = { sqlite: V2, postgres: V2 } as const;
