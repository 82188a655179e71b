/**
 * Instances with chat on, for the chat tests: an IRC port and a data dir of
 * their own, and a way to find clients served by different workers.
 */
import assert from "node:assert/strict";
import { freePorts, type Instance, withInstance, type WithInstanceOptions } from "../harness.ts";
import { LibClient } from "./irc.ts";

/** Where an instance's chat is. */
export interface ChatPlace {
  readonly ircPort: number;
  readonly dataDir: string;
}

/** Flags that turn chat on at `place`. */
export function chatFlags(place: ChatPlace): string[] {
  return [`--irc-port=${place.ircPort}`, `--data-dir=${place.dataDir}`];
}

/** A fresh IRC port and data dir (the caller removes the dir). */
export function newChatPlace(): ChatPlace {
  return { ircPort: freePorts(1), dataDir: Deno.makeTempDirSync({ prefix: "osps-chat-data-" }) };
}

/** {@link withInstance} with chat on; the data dir is removed afterwards. */
export async function withChat(
  options: WithInstanceOptions & { place?: ChatPlace },
  body: (inst: Instance, place: ChatPlace) => Promise<void>,
): Promise<Instance> {
  const place = options.place ?? newChatPlace();
  try {
    return await withInstance(
      { ...options, flags: [...chatFlags(place), ...(options.flags ?? [])] },
      (inst) => body(inst, place),
    );
  } finally {
    if (!options.place) Deno.removeSync(place.dataDir, { recursive: true });
  }
}

/**
 * Registers clients `<prefix>1`, `<prefix>2` … until one is served by each
 * of `workers` different worker processes (the kernel spreads connections
 * by address hash); closes the extra ones. Returns them by worker slot order.
 */
export async function clientsOnEveryWorker(
  ircPort: number,
  prefix: string,
  workers = 2,
): Promise<Array<{ client: LibClient; owner: string }>> {
  const byOwner = new Map<string, LibClient>();
  const extra: LibClient[] = [];
  for (let i = 1; byOwner.size < workers && i <= 64; i++) {
    const c = await LibClient.connect(ircPort, `${prefix}${i}`);
    const owner = await c.owner();
    if (byOwner.has(owner)) extra.push(c);
    else byOwner.set(owner, c);
  }
  await Promise.all(extra.map((c) => c.quit()));
  assert.equal(byOwner.size, workers, "clients reached every worker");
  return [...byOwner.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([owner, client]) => ({
    owner,
    client,
  }));
}

/**
 * Two members of `channel`, one on each of two workers ({@link clientsOnEveryWorker}),
 * returned once the first has seen the second's JOIN.
 */
export async function membersOnTwoWorkers(
  ircPort: number,
  prefix: string,
  channel: string,
): Promise<Array<{ client: LibClient; owner: string }>> {
  const both = await clientsOnEveryWorker(ircPort, prefix);
  const [a, b] = [both[0]!.client, both[1]!.client];
  await a.join(channel);
  await b.join(channel);
  await a.waitLine(`${b.nick} joined`, (m) => m.command === "JOIN" && m.nick === b.nick);
  return both;
}

/** The slot (worker id) of an owner id `<slot>.<random>`. */
export function slotOf(owner: string): number {
  return Number(owner.split(".")[0]);
}
