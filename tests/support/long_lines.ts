/**
 * The worst line of each shape: long runs of what a parser may loop over
 * (blanks, tabs, CRs, non-ASCII, almost-valid tickets), each ending in a
 * byte that makes the line wrong, so that every byte must be looked at. A
 * quadratic step anywhere from bytes to a parsed line makes the longest of
 * these cost seconds. The hostile fuzz (`tests/fuzz_test.ts`) sends them, and
 * the benchmark's `lines` part measures them (`scripts/bench_lines.ts`).
 */

/** Each shape, as a line (without LF) of at most `bytes` bytes of UTF-8 (`bytes` ≥ 64). */
export const LONG_RUNS: Readonly<Record<string, (bytes: number) => string>> = {
  blanks: (n) => "a" + " ".repeat(n - 2) + "b",
  tabs: (n) => "a" + "\t".repeat(n - 2) + "b",
  "blanks around": (n) => " ".repeat((n >> 1) - 2) + "QUIT" + "\t".repeat((n >> 1) - 3) + "x",
  CRs: (n) => "a" + "\r".repeat(n - 2) + "b",
  "non-ASCII": (n) => "a" + "é".repeat((n - 2) >> 1) + "b",
  "almost-valid tickets": (n) => "OUTCOME " + "0123456789abcdef".repeat((n - 9) >> 4) + "g",
  "almost-valid RUN": (n) => `RUN ${"ab".repeat(16)} echo` + " ".repeat(n - 44) + "z",
};

/** An ordinary line of `bytes` bytes (one word of letters): the reference the worst lines are set against. */
export function plainLine(bytes: number): string {
  return "x".repeat(bytes);
}
