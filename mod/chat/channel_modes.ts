/**
 * Channel modes in one place: which letters exist and what kind each is
 * (the table ISUPPORT `CHANMODES` and `PREFIX` are printed from), how a
 * `MODE #chan +kl-t key 10` request parses, how a change applies to a
 * channel's state as a delta (only what it names changes: two operators
 * setting different modes never undo each other), and how the applied change
 * is shown. The store applies a change inside the transaction that numbers
 * its event; every worker's channel replica applies the shown MODE event with
 * the same functions, so they cannot disagree.
 * @module
 */

/** How a mode letter takes its argument (ISUPPORT CHANMODES types A–D, and prefix modes). */
export type ModeKind =
  /** Type A: a list (bans …); always an argument. */
  | "list"
  /** Type B: an argument when set and when unset (the key). */
  | "always"
  /** Type C: an argument only when set (the limit). */
  | "set"
  /** Type D: a flag, no argument. */
  | "flag"
  /** A member's prefix (`@` for o, `+` for v); argument: a nickname. */
  | "prefix";

/**
 * Every channel mode osps knows, by letter. Modules that add modes (lists,
 * more flags) add them here, so ISUPPORT, parsing and replicas follow.
 */
export const MODE_KINDS: Record<string, ModeKind> = {
  /** Bans (`ban_list.ts`; kept in the list store, not in the channel's mode state). */
  b: "list",
  k: "always",
  l: "set",
  /** Invite-only (`moderation.ts`). */
  i: "flag",
  /** Moderated: only voiced members and operators speak (`moderation.ts`). */
  m: "flag",
  n: "flag",
  s: "flag",
  t: "flag",
  o: "prefix",
  v: "prefix",
};

/** Prefix modes, highest first, with the sign each shows in NAMES and WHO. */
export const PREFIXES: ReadonlyArray<{ readonly mode: string; readonly sign: string }> = [
  { mode: "o", sign: "@" },
  { mode: "v", sign: "+" },
];

/** Largest `+l` accepted (what every store keeps exactly). */
export const MAX_LIMIT = 2_147_483_647;

/** The modes of a channel that are not about members. */
export interface ModeState {
  /** Flag modes set (type D), sorted, e.g. "nt". */
  readonly flags: string;
  /** Channel key (+k), "" when none. */
  readonly key: string;
  /** User limit (+l), 0 when none. */
  readonly limit: number;
}

/** One parsed change: a sign, a letter, and its argument if it takes one. */
export interface ModeOp {
  readonly on: boolean;
  readonly letter: string;
  readonly arg?: string;
}

/** ISUPPORT `CHANMODES=A,B,C,D` from {@link MODE_KINDS}. */
export function chanmodesToken(): string {
  const of = (k: ModeKind) => Object.keys(MODE_KINDS).filter((l) => MODE_KINDS[l] === k).sort().join("");
  return `CHANMODES=${of("list")},${of("always")},${of("set")},${of("flag")}`;
}

/** ISUPPORT `PREFIX=(ov)@+`. */
export function prefixToken(): string {
  return `PREFIX=(${PREFIXES.map((p) => p.mode).join("")})${PREFIXES.map((p) => p.sign).join("")}`;
}

/** Every channel mode letter, sorted (RPL_MYINFO). */
export function channelModeLetters(): string {
  return Object.keys(MODE_KINDS).sort().join("");
}

/**
 * Parses `+kl-t key 10` into changes. Letters osps does not know are
 * returned apart (the command answers 472 for each); a letter missing its
 * argument is dropped. A list mode without an argument is a query (`MODE #c
 * b`): it is returned in `queries`.
 *
 * @example
 * ```ts
 * parseModes("+kl-t", ["key", "10"]).ops; // [{on:true,letter:"k",arg:"key"}, {on:true,letter:"l",arg:"10"}, {on:false,letter:"t"}]
 * ```
 */
export function parseModes(
  change: string,
  args: readonly string[],
): { ops: ModeOp[]; unknown: string[]; queries: string[] } {
  const ops: ModeOp[] = [], unknown: string[] = [], queries: string[] = [];
  let on = true, next = 0;
  for (const letter of change) {
    if (letter === "+" || letter === "-") {
      on = letter === "+";
      continue;
    }
    const kind = Object.hasOwn(MODE_KINDS, letter) ? MODE_KINDS[letter] : undefined;
    if (kind === undefined) {
      unknown.push(letter);
      continue;
    }
    const takes = kind === "list" || kind === "always" || kind === "prefix" || (kind === "set" && on);
    if (!takes) {
      ops.push({ on, letter });
      continue;
    }
    const arg = args[next++];
    if (arg === undefined) {
      if (kind === "list") queries.push(letter);
      continue;
    }
    ops.push({ on, letter, arg });
  }
  return { ops, unknown, queries };
}

/** A `+l` argument as a limit, or null when it is not one (not a whole number in 1 … {@link MAX_LIMIT}). */
export function parseLimit(arg: string | undefined): number | null {
  if (arg === undefined || !/^\d{1,10}$/.test(arg)) return null;
  const n = Number(arg);
  return n >= 1 && n <= MAX_LIMIT ? n : null;
}

/** A key is one word without commas or control characters, at most 23 bytes (as most servers). */
function validKey(arg: string | undefined): arg is string {
  // deno-lint-ignore no-control-regex -- control characters are what a key may not hold
  return arg !== undefined && arg.length > 0 && arg.length <= 23 && !/[\s,:\x00-\x1f]/.test(arg);
}

/**
 * One op of a store's MODE write, in order with the member changes around
 * it: a list change (bans: already applied to its list) is only shown, a
 * flag, key or limit change goes through {@link applyModes}; both are
 * pushed to `applied` and the state after returned. Undefined for a prefix
 * change (`o`, `v`): the store applies it to the member.
 */
export function applyChannelOp(state: ModeState, op: ModeOp, applied: ModeOp[]): ModeState | undefined {
  const kind = MODE_KINDS[op.letter];
  if (kind === "prefix") return undefined;
  if (kind === "list") {
    applied.push(op);
    return state;
  }
  const r = applyModes(state, [op]);
  applied.push(...r.applied);
  return r.next;
}

/**
 * Applies the non-member changes of `ops` to `state` as a delta: what is
 * already so is skipped, the rest is returned as `applied` (in order) with
 * the state after it. Prefix and list changes are left to the caller (they
 * concern members or lists): they are returned in `rest`.
 */
export function applyModes(
  state: ModeState,
  ops: readonly ModeOp[],
): { next: ModeState; applied: ModeOp[]; rest: ModeOp[] } {
  let { flags, key, limit } = state;
  const applied: ModeOp[] = [], rest: ModeOp[] = [];
  for (const op of ops) {
    const kind = MODE_KINDS[op.letter];
    if (kind === "flag") {
      if (op.on === flags.includes(op.letter)) continue;
      flags = op.on ? [...flags, op.letter].sort().join("") : flags.replace(op.letter, "");
      applied.push({ on: op.on, letter: op.letter });
    } else if (op.letter === "k") {
      if (op.on) {
        if (!validKey(op.arg) || op.arg === key) continue;
        key = op.arg;
        applied.push(op);
      } else if (key !== "") {
        applied.push({ on: false, letter: "k", arg: "*" });
        key = "";
      }
    } else if (op.letter === "l") {
      if (op.on) {
        const n = parseLimit(op.arg);
        if (n === null || n === limit) continue;
        limit = n;
        applied.push({ on: true, letter: "l", arg: String(n) });
      } else if (limit !== 0) {
        limit = 0;
        applied.push({ on: false, letter: "l" });
      }
    } else rest.push(op);
  }
  return { next: { flags, key, limit }, applied, rest };
}

/** The MODE event's parameters for applied changes: `["+kl-t", "key", "10"]`; [] when nothing changed. */
export function showModes(applied: readonly ModeOp[]): string[] {
  if (applied.length === 0) return [];
  let text = "", sign = "";
  const args: string[] = [];
  for (const op of applied) {
    const s = op.on ? "+" : "-";
    if (s !== sign) text += sign = s;
    text += op.letter;
    if (op.arg !== undefined) args.push(op.arg);
  }
  return [text, ...args];
}

/** The mode string RPL_CHANNELMODEIS shows: `+ntkl`, with key and limit for members only. */
export function describeModes(state: ModeState, member: boolean): string[] {
  const shown = [`+${state.flags}${state.key ? "k" : ""}${state.limit ? "l" : ""}`];
  if (member && state.key) shown.push(state.key);
  if (member && state.limit) shown.push(String(state.limit));
  return shown;
}

/** Prefix bits (as stored in `members.op`): bit i is {@link PREFIXES}[i]. */
export function prefixBit(mode: string): number {
  const i = PREFIXES.findIndex((p) => p.mode === mode);
  return i < 0 ? 0 : 1 << i;
}

/** The signs shown before a member's nick for its prefix bits: all (`@+`, multi-prefix) or the highest. */
export function prefixSigns(bits: number, all = false): string {
  let out = "";
  for (let i = 0; i < PREFIXES.length; i++) {
    if (bits & (1 << i)) {
      out += PREFIXES[i]!.sign;
      if (!all) break;
    }
  }
  return out;
}
