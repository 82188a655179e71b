/**
 * Reading a command line against the table in mod/cli/commands.ts:
 * parsing (`node:util` parseArgs), help text, and the argv the watchdog
 * builds for its children.
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "../errors.ts";
import { COMMANDS, type CommandSpec } from "./commands.ts";
import type { FlagSpec } from "./flags.ts";

/** Values of parsed flags, keyed by flag name. */
export type FlagValues = Record<string, string | number | boolean | undefined>;

/** Result of {@link parseCommandLine}. */
export interface ParsedCommand {
  readonly command: string;
  readonly flags: FlagValues;
  /** Flags given on the command line (the others hold their defaults). */
  readonly given: ReadonlySet<string>;
  readonly positionals: string[];
  readonly help: boolean;
}

/** Parses `argv` (without the program name): first positional is the subcommand. */
export function parseCommandLine(argv: string[]): ParsedCommand {
  const [first, ...rest] = argv;
  if (first === undefined || first === "help" || first === "--help" || first === "-h") {
    const topic = first === "help" ? rest[0] : undefined;
    if (topic !== undefined && !Object.hasOwn(COMMANDS, topic)) {
      throw new UsageError(`unknown command "${topic}"`);
    }
    return { command: topic ?? "", flags: {}, given: new Set(), positionals: [], help: true };
  }
  const spec = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (!spec) {
    const near = nearest(first, Object.keys(COMMANDS));
    throw new UsageError(
      `unknown command "${first}"${near ? `; did you mean "${near}"?` : ""} (osps help lists them)`,
    );
  }
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, f] of Object.entries(spec.flags)) {
    options[name] = {
      type: f.type === "boolean" ? "boolean" : "string",
      ...(f.short ? { short: f.short } : {}),
    };
  }
  // For commands that take TYPE ARG…, everything from TYPE on is the request, even "-5".
  let args = rest, tail: string[] = [];
  if (spec.positionals) {
    const at = firstPositional(rest, spec);
    if (at >= 0) [args, tail] = [rest.slice(0, at), rest.slice(at)];
  }
  checkFlags(first, spec, args);
  let parsed;
  try {
    parsed = parseArgs({ args: joinValues(spec, args), options, allowPositionals: true, strict: true });
    parsed.positionals.push(...tail);
  } catch (err) {
    throw new UsageError(`${first}: ${(err as Error).message}; see "osps help ${first}"`, { cause: err });
  }
  if (!spec.positionals && parsed.positionals.length > 0) {
    throw new UsageError(`${first}: unexpected argument "${parsed.positionals[0]}"`);
  }
  const flags: FlagValues = {};
  const given = new Set<string>();
  for (const [name, f] of Object.entries(spec.flags)) {
    const raw = (parsed.values as Record<string, string | boolean | undefined>)[name];
    if (raw !== undefined) given.add(name);
    flags[name] = raw === undefined ? f.default : convert(first, name, f, raw);
  }
  return { command: first, flags, given, positionals: parsed.positionals, help: parsed.values.help === true };
}

/** Refuses unknown flags with the nearest known name, before parseArgs words it its own way. */
function checkFlags(command: string, spec: CommandSpec, args: string[]): void {
  const names = [...Object.keys(spec.flags), "help"];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") break;
    if (!a.startsWith("-") || a === "-") continue;
    const long = a.startsWith("--");
    const name = long ? a.slice(2).split("=")[0]! : a.slice(1, 2);
    const flag = long ? (name === "help" ? { type: "boolean" } : spec.flags[name]) : shortFlag(spec, name);
    if (!flag) {
      const near = nearest(name, names);
      throw new UsageError(
        `${command}: unknown flag ${long ? "--" : "-"}${name}${near ? `; did you mean --${near}?` : ""} ` +
          `(osps help ${command} lists every flag)`,
      );
    }
    if (flag.type !== "boolean" && !a.includes("=") && (!long ? a.length === 2 : true)) {
      if (i + 1 >= args.length) {
        throw new UsageError(`${command}: ${a} needs a value (see "osps help ${command}")`);
      }
      i++; // its value, even one that starts with "-"
    }
  }
}

function shortFlag(spec: CommandSpec, letter: string): FlagSpec | { type: "boolean" } | undefined {
  if (letter === "h") return { type: "boolean" };
  return Object.values(spec.flags).find((f) => f.short === letter);
}

/** `--flag value` → `--flag=value`, so that a value starting with "-" (say -5) is read as a value. */
function joinValues(spec: CommandSpec, args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      out.push(...args.slice(i));
      break;
    }
    const long = a.startsWith("--") && !a.includes("=") ? spec.flags[a.slice(2)] : undefined;
    const short = /^-[a-zA-Z]$/.test(a) ? shortFlag(spec, a.slice(1)) : undefined;
    const f = long ?? short;
    if (f && f.type !== "boolean" && i + 1 < args.length) {
      const name = long ? a.slice(2) : Object.entries(spec.flags).find(([, x]) => x === short)![0];
      out.push(`--${name}=${args[++i]}`);
    } else out.push(a);
  }
  return out;
}

/** The candidate closest to `word` by edit distance, if close enough to be a likely typo. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

function firstPositional(args: string[], spec: CommandSpec): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") return i + 1 < args.length ? i + 1 : -1;
    if (!a.startsWith("-") || a === "-") return i;
    if (a.includes("=")) continue;
    const name = a.startsWith("--")
      ? a.slice(2)
      : Object.entries(spec.flags).find(([, f]) => f.short === a.slice(1))?.[0];
    const flag = name === undefined ? undefined : spec.flags[name];
    if (flag && flag.type !== "boolean") i++; // its value
  }
  return -1;
}

/** Checks and converts one value of `command`'s flag `name` as given in a config file (same rules as argv). */
export function flagValue(
  command: string,
  name: string,
  raw: string | number | boolean,
): string | number | boolean {
  const f = COMMANDS[command]?.flags[name];
  if (!f) throw new UsageError(`${command}: unknown flag --${name}`);
  if (f.type === "boolean" && typeof raw !== "boolean") {
    throw new UsageError(`${command}: --${name} takes true or false, got ${JSON.stringify(raw)}`);
  }
  if (f.type !== "boolean" && typeof raw === "boolean") {
    throw new UsageError(
      `${command}: --${name} takes a ${f.type === "int" ? "whole number" : "string"}, got ${raw}`,
    );
  }
  return convert(command, name, f, typeof raw === "number" ? String(raw) : raw);
}

function convert(
  command: string,
  name: string,
  f: FlagSpec,
  raw: string | boolean,
): string | number | boolean {
  if (f.type === "boolean") return raw;
  const text = String(raw);
  if (f.type === "string") {
    if (f.choices && !f.choices.includes(text)) {
      throw new UsageError(`${command}: --${name} must be one of ${f.choices.join(", ")}, got "${text}"`);
    }
    return text;
  }
  if (!/^-?\d+$/.test(text)) {
    throw new UsageError(`${command}: --${name} takes a whole number, got "${text}"`);
  }
  const n = Number(text);
  if ((f.min !== undefined && n < f.min) || (f.max !== undefined && n > f.max)) {
    throw new UsageError(
      `${command}: --${name} must be between ${f.min ?? "-∞"} and ${f.max ?? "∞"}, got ${n}`,
    );
  }
  return n;
}

/** Builds the argv that reproduces `values` for `command` (the watchdog uses it for its children). */
export function toArgv(command: string, values: FlagValues): string[] {
  const spec = COMMANDS[command];
  if (!spec) throw new UsageError(`unknown command "${command}"`);
  const out = [command];
  for (const [name, f] of Object.entries(spec.flags)) {
    const v = values[name];
    if (v === undefined || v === f.default) continue;
    if (f.type === "boolean") {
      if (v) out.push(`--${name}`);
    } else out.push(`--${name}=${v}`);
  }
  return out;
}

/** Help text: the command list, or one command's flags. */
export function helpText(command = ""): string {
  const spec = command ? COMMANDS[command] : undefined;
  if (!spec) {
    const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
    const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)} ${c.summary}`);
    return [
      "osps — a supervised dispatcher/worker server",
      "",
      "Usage: osps <command> [flags]   (osps help <command> for its flags)",
      "",
      "Commands:",
      ...rows,
      "",
    ].join("\n");
  }
  const rows = Object.entries(spec.flags).map(([n, f]) => {
    const left = `${f.short ? `-${f.short}, ` : "    "}--${n}${
      f.type === "boolean" ? "" : f.type === "int" ? " N" : " VALUE"
    }`;
    const def = f.default !== undefined && f.default !== false && f.default !== ""
      ? ` (default ${f.default})`
      : "";
    const choices = f.choices ? ` [${f.choices.join("|")}]` : "";
    return `  ${left.padEnd(30)} ${f.doc}${choices}${def}`;
  });
  return [
    `Usage: ${spec.usage}`,
    "",
    spec.summary,
    "",
    "Flags:",
    ...rows,
    "  -h, --help".padEnd(32) + " show this help",
    "",
  ]
    .join("\n");
}
