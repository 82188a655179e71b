/**
 * IRCv3 MONITOR: a client names the nicknames it cares about and is told
 * when each comes online (730) or goes offline (731), whichever worker or
 * host the other user is on. This worker's watchers are indexed by folded
 * nickname; {@link Monitors} is told of every registration, rename and
 * departure (local ones, and the other workers', `notify.ts`).
 * @module
 */
import { fold, formatMessage, validNick } from "./irc_message.ts";
import type { Command, IrcSession } from "./irc_session.ts";
import { MONITOR_LIMIT, N } from "./numerics.ts";

/** Who on this worker monitors which nickname. */
export class Monitors {
  readonly #watchers = new Map<string, Set<IrcSession>>();

  /** `s` watches `nick`. */
  add(s: IrcSession, nick: string): void {
    const key = fold(nick);
    (s.monitoring ??= new Map()).set(key, nick);
    let set = this.#watchers.get(key);
    if (!set) this.#watchers.set(key, set = new Set());
    set.add(s);
  }

  /** `s` stops watching `nick`. */
  remove(s: IrcSession, nick: string): void {
    const key = fold(nick);
    s.monitoring?.delete(key);
    const set = this.#watchers.get(key);
    set?.delete(s);
    if (set?.size === 0) this.#watchers.delete(key);
  }

  /** `s` watches nothing any more (MONITOR C, or it left). */
  clear(s: IrcSession): void {
    for (const key of [...s.monitoring?.keys() ?? []]) this.remove(s, key);
    s.monitoring = null;
  }

  /** Nicknames watched on this worker. */
  get size(): number {
    return this.#watchers.size;
  }

  /** `source` (`nick!user@host`) came online: its watchers here get 730. */
  online(source: string): void {
    const nick = source.split("!")[0]!;
    for (const s of this.#watchers.get(fold(nick)) ?? []) s.replyText(N.RPL_MONONLINE, source);
  }

  /** `nick` went offline: its watchers here get 731. */
  offline(nick: string): void {
    for (const s of this.#watchers.get(fold(nick)) ?? []) s.replyText(N.RPL_MONOFFLINE, nick);
  }
}

/** Replies 730/731 for `nicks`, as few lines as fit. */
async function status(s: IrcSession, nicks: readonly string[]): Promise<void> {
  const on: string[] = [], off: string[] = [];
  for (const nick of nicks) {
    const u = await s.ctx.store.user(nick);
    if (u) on.push(`${u.nick}!${u.user}@${u.host}`);
    else off.push(nick);
  }
  for (const chunk of chunks(on)) s.replyText(N.RPL_MONONLINE, chunk);
  for (const chunk of chunks(off)) s.replyText(N.RPL_MONOFFLINE, chunk);
}

/** Comma-joined lists that fit in a line. */
function chunks(items: readonly string[], max = 400): string[] {
  const out: string[] = [];
  let cur = "";
  for (const item of items) {
    if (cur !== "" && cur.length + item.length + 1 > max) out.push(cur), cur = "";
    cur += cur === "" ? item : `,${item}`;
  }
  if (cur !== "") out.push(cur);
  return out;
}

async function monitor(s: IrcSession, sub: string, arg: string): Promise<void> {
  const { monitors } = s.ctx;
  const targets = arg.split(",").filter((t) => t !== "");
  switch (sub) {
    case "+": {
      const added: string[] = [];
      for (const [i, nick] of targets.entries()) {
        if (!validNick(nick)) continue;
        if (!s.monitoring?.has(fold(nick)) && (s.monitoring?.size ?? 0) >= MONITOR_LIMIT) {
          s.replyText(
            N.ERR_MONLISTFULL,
            String(MONITOR_LIMIT),
            targets.slice(i).join(","),
            "Monitor list is full.",
          );
          break;
        }
        monitors.add(s, nick);
        added.push(nick);
      }
      return await status(s, added);
    }
    case "-":
      for (const nick of targets) monitors.remove(s, nick);
      return;
    case "C":
      return monitors.clear(s);
    case "L":
      for (const chunk of chunks([...s.monitoring?.values() ?? []])) s.replyText(N.RPL_MONLIST, chunk);
      return s.replyText(N.RPL_ENDOFMONLIST, "End of MONITOR list");
    case "S":
      return await status(s, [...s.monitoring?.values() ?? []]);
  }
  s.conn.send(
    formatMessage(s.ctx.cfg.serverName, "FAIL", ["MONITOR", "INVALID_PARAMS", sub, "Unknown subcommand"], {
      trailing: true,
    }),
  );
}

/** The MONITOR command. */
export const MONITOR_COMMANDS: Record<string, Command> = {
  MONITOR: {
    min: 1,
    run: (s, m) => {
      const sub = m.params[0]!.toUpperCase();
      if ((sub === "+" || sub === "-") && !m.params[1]) {
        return s.replyText(N.ERR_NEEDMOREPARAMS, "MONITOR", "Not enough parameters");
      }
      return monitor(s, sub, m.params[1] ?? "");
    },
  },
};
