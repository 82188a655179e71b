/**
 * IRCv3 SASL (3.1 and 3.2): `AUTHENTICATE` with the PLAIN and SCRAM-SHA-256
 * mechanisms, before registration (the usual way) or after it.
 *
 * Payloads come base64-encoded in chunks of at most 400 bytes (a chunk of
 * exactly 400 means more follows; `+` is an empty one). A whole payload is at
 * most {@link MAX_PAYLOAD} bytes (past that: 904; one chunk over 400: 905). PLAIN is checked against the scrypt hash
 * (`accounts.ts`); SCRAM-SHA-256 (RFC 5802/7677, no channel binding) against
 * the stored verifier, so it costs the server no hash — the client does the
 * PBKDF2. An unknown account goes through SCRAM's first step with a made-up
 * salt, so a client cannot tell which names exist.
 *
 * Numerics: 900 logged in, 903 success, 904 failure, 905 too long, 906
 * aborted, 907 already logged in, 908 the mechanisms.
 * @module
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { formatMessage } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { N } from "./numerics.ts";
import { AccountError } from "./accounts.ts";
import { base64, hmac, SCRAM_ITERATIONS, type ScramVerifier, sha256 } from "./password.ts";
import { logIn } from "./login.ts";

/** The mechanisms offered (CAP LS 302 `sasl=` value, 908). */
export const SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256"] as const;
/** Longest payload accepted, decoded chunks together (base64). */
export const MAX_PAYLOAD = 4096;
const CHUNK = 400;

/** An exchange in progress. */
export interface SaslExchange {
  readonly mechanism: typeof SASL_MECHANISMS[number];
  /** Base64 received so far of the current payload. */
  buffer: string;
  /** SCRAM: what the first step established. */
  scram?: {
    readonly account: string | null;
    readonly verifier: ScramVerifier;
    readonly nonce: string;
    readonly gs2: string;
    readonly clientFirstBare: string;
    readonly serverFirst: string;
    /** Server-final sent; waiting for the client's empty answer. */
    verified?: boolean;
  };
}

function authenticate(s: IrcSession, payload: string): void {
  s.conn.send(formatMessage(s.ctx.cfg.serverName, "AUTHENTICATE", [payload]));
}

/** Sends a server message, base64 in chunks of 400 (and an empty `+` after an exact multiple). */
function sendPayload(s: IrcSession, text: string): void {
  const b = base64.encode(new TextEncoder().encode(text));
  for (let i = 0; i < b.length; i += CHUNK) authenticate(s, b.slice(i, i + CHUNK));
  if (b.length % CHUNK === 0) authenticate(s, "+");
}

function fail(s: IrcSession, text = "SASL authentication failed"): void {
  s.sasl = null;
  s.replyText(N.ERR_SASLFAIL, text);
}

async function succeed(s: IrcSession, account: string): Promise<void> {
  s.sasl = null;
  await logIn(s, account);
  s.replyText(N.RPL_SASLSUCCESS, "SASL authentication successful");
}

function decode(b64: string): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(base64.decode(b64));
  } catch {
    return null;
  }
}

async function plain(s: IrcSession, text: string): Promise<void> {
  const [authzid = "", authcid = "", password = "", ...extra] = text.split("\0");
  if (extra.length > 0 || authcid === "" || (authzid !== "" && authzid !== authcid)) return fail(s);
  const account = await s.ctx.accounts.authenticate(authcid, password, s.host);
  if (account === null) return fail(s);
  await succeed(s, account);
}

/** RFC 5802 §5.1: `=2C` is ",", `=3D` is "="; any other "=" is malformed. */
function saslName(text: string): string | null {
  if (/=(?!2C|3D)/.test(text)) return null;
  return text.replace(/=2C/g, ",").replace(/=3D/g, "=");
}

function attrs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of text.split(",")) {
    if (part.length >= 2 && part[1] === "=") out.set(part[0]!, part.slice(2));
  }
  return out;
}

async function scramFirst(s: IrcSession, text: string): Promise<void> {
  // gs2-header: cbind flag ("n" or "y": no channel binding), authzid, then client-first-bare.
  const m = /^([ny]),(a=[^,]*)?,(n=[^,]*,r=[^,]+(?:,.*)?)$/s.exec(text);
  if (!m) return fail(s);
  const bare = attrs(m[3]!);
  const user = saslName(bare.get("n") ?? "");
  const authzid = m[2] ? saslName(m[2].slice(2)) : "";
  if (!user || authzid === null || (authzid !== "" && authzid !== user)) return fail(s);
  s.ctx.accounts.attempt(s.host);
  const found = await s.ctx.accounts.scram(user);
  const verifier: ScramVerifier = found?.verifier ?? {
    salt: base64.encode(new Uint8Array(randomBytes(16))),
    iterations: SCRAM_ITERATIONS,
    storedKey: base64.encode(new Uint8Array(randomBytes(32))),
    serverKey: base64.encode(new Uint8Array(randomBytes(32))),
  };
  const nonce = bare.get("r")! + base64.encode(new Uint8Array(randomBytes(18)));
  const serverFirst = `r=${nonce},s=${verifier.salt},i=${verifier.iterations}`;
  s.sasl!.scram = {
    account: found?.account ?? null,
    verifier,
    nonce,
    gs2: `${m[1]},${m[2] ?? ""},`,
    clientFirstBare: m[3]!,
    serverFirst,
  };
  sendPayload(s, serverFirst);
}

function xor(a: Uint8Array, b: Uint8Array): Uint8Array {
  return a.map((x, i) => x ^ b[i]!);
}

async function scramFinal(s: IrcSession, text: string): Promise<void> {
  const st = s.sasl!.scram!;
  if (st.verified) {
    // The client's empty answer to server-final.
    return text === "" && st.account ? await succeed(s, st.account) : fail(s);
  }
  const at = text.lastIndexOf(",p=");
  if (at < 0) return fail(s);
  const withoutProof = text.slice(0, at);
  const a = attrs(withoutProof);
  if (a.get("c") !== base64.encode(new TextEncoder().encode(st.gs2)) || a.get("r") !== st.nonce) {
    return fail(s);
  }
  let proof: Uint8Array;
  try {
    proof = base64.decode(text.slice(at + 3));
  } catch {
    return fail(s);
  }
  const authMessage = `${st.clientFirstBare},${st.serverFirst},${withoutProof}`;
  const storedKey = base64.decode(st.verifier.storedKey);
  const signature = hmac(storedKey, authMessage);
  if (proof.length !== signature.length) return fail(s);
  const clientKey = xor(proof, signature);
  if (!st.account || !timingSafeEqual(sha256(clientKey), storedKey)) return fail(s);
  const serverSignature = hmac(base64.decode(st.verifier.serverKey), authMessage);
  st.verified = true;
  sendPayload(s, `v=${base64.encode(serverSignature)}`);
}

/** A whole payload arrived. */
async function step(s: IrcSession, b64: string): Promise<void> {
  const text = b64 === "" ? "" : decode(b64);
  if (text === null) return fail(s);
  try {
    if (s.sasl!.mechanism === "PLAIN") return await plain(s, text);
    if (!s.sasl!.scram) return await scramFirst(s, text);
    return await scramFinal(s, text);
  } catch (err) {
    if (err instanceof AccountError) return fail(s, err.message);
    throw err;
  }
}

function start(s: IrcSession, mechanism: string): void {
  const mech = SASL_MECHANISMS.find((m) => m === mechanism.toUpperCase());
  if (!mech) {
    s.replyText(N.RPL_SASLMECHS, SASL_MECHANISMS.join(","), "are available SASL mechanisms");
    return fail(s);
  }
  s.sasl = { mechanism: mech, buffer: "" };
  authenticate(s, "+");
}

/** Ends an exchange in progress (AUTHENTICATE *, or CAP END / registration meanwhile). */
export function abortSasl(s: IrcSession): void {
  if (!s.sasl) return;
  s.sasl = null;
  s.replyText(N.ERR_SASLABORTED, "SASL authentication aborted");
}

async function authenticateCommand(s: IrcSession, arg: string): Promise<void> {
  if (arg === "*") {
    if (s.sasl) return abortSasl(s);
    return fail(s);
  }
  if (!s.sasl) {
    if (!s.caps.has("sasl")) return fail(s, "You must enable the sasl capability first");
    if (s.account !== "") return s.replyText(N.ERR_SASLALREADY, "You have already authenticated using SASL");
    return start(s, arg);
  }
  if (arg.length > CHUNK) {
    s.sasl = null;
    return s.replyText(N.ERR_SASLTOOLONG, "SASL message too long");
  }
  if (arg !== "+") s.sasl.buffer += arg;
  if (s.sasl.buffer.length > MAX_PAYLOAD) return fail(s, "SASL payload too long");
  if (arg.length === CHUNK) return; // more follows
  const payload = s.sasl.buffer;
  s.sasl.buffer = "";
  await step(s, payload);
}

/** The AUTHENTICATE command. */
export const SASL_COMMANDS: Record<string, Command> = {
  AUTHENTICATE: { min: 1, early: true, run: (s, m) => authenticateCommand(s, m.params[0]!) },
};
