/**
 * `--config FILE`: the watchdog's flags from a TOML or JSON file, under the
 * same names as on the command line (`workers = 4`, `"request-timeout-for" =
 * "sleep:40000"`). A flag given on the command line wins over the file; the
 * file wins over the defaults. Every value goes through the flag table's own
 * checks, so a file cannot set what the command line could not.
 *
 * A reload reads the file again ({@link loadWatchdogConfig} with the same
 * {@link ConfigSource}) and {@link liveChanges} says which changed values it
 * can apply and how (the `live` column of the flag table).
 * @module
 */
import { parse as parseToml } from "smol-toml";
import { flagValue, type FlagValues, nearest } from "../cli/cli.ts";
import { COMMANDS } from "../cli/commands.ts";
import { type ConfigSource, type WatchdogConfig, watchdogConfig } from "../cli/config.ts";
import { errnoName, SysError, UsageError } from "../errors.ts";
import { readFileAt } from "../sys/libc.ts";

/** What an errno means to someone naming a file. */
function errnoText(errno: number): string {
  const text: Record<number, string> = {
    2: "no such file",
    13: "permission denied",
    20: "a part of the path is not a directory",
    21: "it is a directory",
    27: `longer than ${MAX_CONFIG_BYTES} bytes`,
  };
  return text[errno] ?? errnoName(errno);
}

/** The config file is unreadable, malformed, or sets something it may not. */
export class ConfigFileError extends UsageError {}

/** Flags a file may not set: where the file is, and what only makes sense on a command line. */
const NOT_IN_FILE = new Set(["config"]);

/** Longest config file read. */
const MAX_CONFIG_BYTES = 1 << 20;

/**
 * Reads and parses `path`: JSON when it ends in `.json`, TOML otherwise.
 * Returns the top-level table. The file is read wherever it is (through
 * libc, as `/proc` is): it is the one file the operator names on the
 * watchdog's command line, and Deno's scoped read list covers the run dirs,
 * not every place an operator may keep or try a configuration.
 */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(readFileAt(path, MAX_CONFIG_BYTES));
  } catch (err) {
    const why = err instanceof SysError ? errnoText(err.errno) : (err as Error).message;
    throw new ConfigFileError(`cannot read config file "${path}": ${why}`, { cause: err });
  }
  let data: unknown;
  try {
    data = path.endsWith(".json") ? JSON.parse(text) : parseToml(text);
  } catch (err) {
    throw new ConfigFileError(
      `config file "${path}" is not valid ${path.endsWith(".json") ? "JSON" : "TOML"}: ${
        (err as Error).message
      }`,
      { cause: err },
    );
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ConfigFileError(`config file "${path}" must hold a table of flag names and values`);
  }
  return data as Record<string, unknown>;
}

/**
 * The flags of `command` from `file` merged under the command line: a value
 * from the file replaces a default, never a flag that was given.
 */
export function mergeConfig(
  command: string,
  source: ConfigSource,
  file: Record<string, unknown>,
  path = "config file",
): FlagValues {
  const known = Object.keys(COMMANDS[command]!.flags).filter((n) => !NOT_IN_FILE.has(n));
  const out: FlagValues = { ...source.flags };
  for (const [name, raw] of Object.entries(file)) {
    if (!known.includes(name)) {
      const near = nearest(name, known);
      throw new ConfigFileError(
        `${path}: unknown setting "${name}"${near ? `; did you mean "${near}"?` : ""} ` +
          `(settings are the flags of osps ${command}: osps help ${command})`,
      );
    }
    if (typeof raw !== "string" && typeof raw !== "number" && typeof raw !== "boolean") {
      throw new ConfigFileError(`${path}: "${name}" must be a string, number or boolean`);
    }
    let value;
    try {
      value = flagValue(command, name, raw);
    } catch (err) {
      throw new ConfigFileError(`${path}: ${(err as Error).message}`, { cause: err });
    }
    if (!source.given.has(name)) out[name] = value;
  }
  return out;
}

/** The watchdog's flag values: command line over `--config` file over defaults (the file read now). */
export function loadWatchdogFlags(source: ConfigSource): FlagValues {
  const path = String(source.flags["config"] ?? "");
  return path ? mergeConfig("watchdog", source, readConfigFile(path), path) : source.flags;
}

/**
 * The watchdog's configuration from `source`. A reload calls it again with
 * `cfg.source` (the file is read again) and compares with {@link liveChanges}.
 * @example
 * ```ts
 * const cmd = parseCommandLine(["watchdog", "--config", "/etc/osps/osps.toml"]);
 * const cfg = loadWatchdogConfig({ flags: cmd.flags, given: cmd.given });
 * ```
 */
export function loadWatchdogConfig(source: ConfigSource): WatchdogConfig {
  return watchdogConfig(loadWatchdogFlags(source), source.given, source);
}

/** The changed flags between two configurations, by what a reload can do with them. */
export interface LiveChanges {
  /** Applied in the running watchdog at once. */
  readonly now: string[];
  /** Applied to every child started from then on. */
  readonly respawn: string[];
  /** Not applied: need a full restart. */
  readonly restart: string[];
}

/**
 * Which flags differ between the watchdog flag values `before` and `after`
 * (from {@link loadWatchdogFlags}), by the flag table's `live` column.
 */
export function liveChanges(before: FlagValues, after: FlagValues): LiveChanges {
  const out: LiveChanges = { now: [], respawn: [], restart: [] };
  for (const [name, f] of Object.entries(COMMANDS["watchdog"]!.flags)) {
    if (before[name] === after[name]) continue;
    out[f.live ?? "restart"].push(name);
  }
  return out;
}
