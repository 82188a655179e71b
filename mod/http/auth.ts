/**
 * Who is calling: the chat accounts (the account service of `mod/chat/`,
 * the same SASL and NickServ use) by HTTP Basic (`account:password`) or by a
 * bearer token that `POST /v1/tokens` issued. Passwords are checked by the
 * account service, which bounds the hashing work and the attempts per
 * address; they are never logged, and no answer says whether an account
 * exists.
 * @module
 */
import { hostOf } from "../net/admission.ts";
import { ApiError } from "./problem.ts";

/** What the HTTP API needs of the account service. */
export interface AccountsApi {
  /** The account when `password` is its password, else null. */
  authenticate(name: string, password: string, address: string): Promise<string | null>;
  /** A new bearer token for `account` (shown once; only its hash is kept). */
  issueToken(account: string, options?: { ttlMs?: number; label?: string }): Promise<string>;
  /** The account a token belongs to, or null (unknown, revoked, expired). */
  tokenAccount(token: string): Promise<string | null>;
  /** Revokes a token; false when it was not one. */
  revokeToken(token: string): Promise<boolean>;
}

/** The challenge every 401 carries. */
export const CHALLENGE = { "www-authenticate": 'Basic realm="osps", charset="UTF-8", Bearer realm="osps"' };

function unauthorized(why: string): ApiError {
  return new ApiError(401, why, { headers: CHALLENGE });
}

/** The credentials of an `Authorization` field. */
export type Credentials =
  | { readonly kind: "basic"; readonly name: string; readonly password: string }
  | { readonly kind: "bearer"; readonly token: string };

/** Parses an `Authorization` field; throws 401 when it is missing or malformed. */
export function credentialsOf(header: string | undefined): Credentials {
  if (!header) throw unauthorized("credentials needed: HTTP Basic (account:password) or a bearer token");
  const [scheme = "", value = ""] = header.trim().split(/\s+/, 2);
  if (scheme.toLowerCase() === "bearer" && /^[A-Za-z0-9._~+/=-]{16,200}$/.test(value)) {
    return { kind: "bearer", token: value };
  }
  if (scheme.toLowerCase() === "basic") {
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(
        Uint8Array.from(atob(value), (c) => c.charCodeAt(0)),
      );
    } catch {
      throw unauthorized("malformed Basic credentials");
    }
    const colon = text.indexOf(":");
    if (colon > 0) return { kind: "basic", name: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  throw unauthorized("malformed credentials: use Basic or Bearer");
}

/** The account behind an `Authorization` field, from a client at `peer`; throws 401 or 503. */
export async function accountOf(
  accounts: AccountsApi | undefined,
  header: string | undefined,
  peer: string,
): Promise<string> {
  if (!accounts) throw new ApiError(503, "accounts are not available on this instance (chat is off)");
  const c = credentialsOf(header);
  let account: string | null;
  try {
    account = c.kind === "basic"
      ? await accounts.authenticate(c.name, c.password, hostOf(peer))
      : await accounts.tokenAccount(c.token);
  } catch (err) {
    throw accountFailure(err);
  }
  if (!account) {
    throw unauthorized(c.kind === "basic" ? "wrong account or password" : "unknown or expired token");
  }
  return account;
}

/** The account service's refusals (`AccountError.code`) as HTTP statuses. */
export function accountFailure(err: unknown): unknown {
  const code = (err as { code?: unknown })?.code;
  const message = (err as Error)?.message ?? "";
  switch (code) {
    case "RATE_LIMITED":
      return new ApiError(429, message || "too many password attempts; slow down");
    case "TEMPORARILY_UNAVAILABLE":
      return new ApiError(503, message || "busy checking passwords; retry later");
    case "ACCOUNT_NOT_FOUND":
      return unauthorized("wrong account or password");
  }
  return err;
}
