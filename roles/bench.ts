/**
 * `osps bench`: a load generator (placeholder until the benchmark issue lands).
 * @module
 */
import type { FlagValues } from "../mod/cli.ts";
import { UsageError } from "../mod/errors.ts";

/** Runs the load generator. */
export function runBench(_flags: FlagValues, _positionals: string[]): Promise<number> {
  return Promise.reject(new UsageError("bench is not implemented yet"));
}
