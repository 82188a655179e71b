/**
 * A strict checker of the Prometheus text exposition format 0.0.4, for tests:
 * it parses an exposition into families and throws on the first rule broken.
 *
 * Rules checked: every line is a comment, blank, or a sample; `# TYPE` at
 * most once per family, before its samples, with a known type; `# HELP` at
 * most once; metric and label names match the grammar and labels are not
 * repeated; label values use only the escapes `\\`, `\"`, `\n`; values are
 * floats or `+Inf`/`-Inf`/`NaN`; a family's samples are contiguous; no series
 * appears twice; counters end in `_total` and are never negative; histograms
 * have `_bucket` lines with `le`, ascending bounds, non-decreasing counts,
 * a `+Inf` bucket equal to `_count`, and a `_sum`; the text ends with LF.
 */

/** One sample line. */
export interface PromSample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** One family. */
export interface PromFamily {
  readonly name: string;
  type: string;
  help: string | null;
  readonly samples: PromSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const FLOAT = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** The exposition broke a rule of the format. */
export class PromFormatError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "PromFormatError";
  }
}

function parseValue(text: string, line: number): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  if (!FLOAT.test(text)) throw new PromFormatError(line, `bad value "${text}"`);
  return Number(text);
}

/** Parses `{a="x",b="y"}` starting at `s[0] === "{"`; returns the labels and the rest of the line. */
function parseLabels(s: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  while (s[i] !== "}") {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(s.slice(i));
    if (!m) throw new PromFormatError(line, `bad label at "${s.slice(i, i + 20)}"`);
    const name = m[1]!;
    if (name in labels) throw new PromFormatError(line, `label "${name}" repeated`);
    i += m[0].length;
    let value = "";
    for (;;) {
      const c = s[i];
      if (c === undefined) throw new PromFormatError(line, "unterminated label value");
      if (c === '"') break;
      if (c === "\\") {
        const e = s[i + 1];
        if (e === "\\" || e === '"') value += e;
        else if (e === "n") value += "\n";
        else throw new PromFormatError(line, `bad escape "\\${e}" in label value`);
        i += 2;
      } else {
        value += c;
        i++;
      }
    }
    labels[name] = value;
    i++; // closing quote
    if (s[i] === ",") i++;
    else if (s[i] !== "}") throw new PromFormatError(line, "expected , or } after a label");
  }
  return { labels, rest: s.slice(i + 1) };
}

function familyOf(sample: string, families: Map<string, PromFamily>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = sample.endsWith(suffix) ? sample.slice(0, -suffix.length) : null;
    if (base && ["histogram", "summary"].includes(families.get(base)?.type ?? "")) return base;
  }
  return sample;
}

function checkHistogram(f: PromFamily): void {
  const series = new Map<string, PromSample[]>();
  const key = (labels: Record<string, string>) =>
    JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le").sort());
  for (const s of f.samples) {
    const k = key(s.labels);
    if (!series.has(k)) series.set(k, []);
    series.get(k)!.push(s);
  }
  for (const [k, samples] of series) {
    const buckets = samples.filter((s) => s.name === `${f.name}_bucket`);
    const count = samples.find((s) => s.name === `${f.name}_count`);
    const sum = samples.find((s) => s.name === `${f.name}_sum`);
    if (!buckets.length || !count || !sum) {
      throw new Error(`histogram ${f.name}${k}: needs _bucket, _sum, _count`);
    }
    let lastLe = -Infinity, lastCount = 0;
    for (const b of buckets) {
      if (!("le" in b.labels)) throw new Error(`histogram ${f.name}${k}: a bucket without le`);
      const le = parseValue(b.labels["le"]!, 0);
      if (!(le > lastLe)) throw new Error(`histogram ${f.name}${k}: le not ascending at ${b.labels["le"]}`);
      if (b.value < lastCount) throw new Error(`histogram ${f.name}${k}: bucket counts decrease`);
      [lastLe, lastCount] = [le, b.value];
    }
    if (lastLe !== Infinity) throw new Error(`histogram ${f.name}${k}: no +Inf bucket`);
    if (lastCount !== count.value) {
      throw new Error(`histogram ${f.name}${k}: +Inf bucket ${lastCount} ≠ _count`);
    }
  }
}

/** Parses and checks `text`; returns its families by name. Throws {@link PromFormatError} (or Error) on a broken rule. */
export function checkExposition(text: string): Map<string, PromFamily> {
  if (!text.endsWith("\n")) throw new PromFormatError(0, "exposition must end with a line feed");
  const families = new Map<string, PromFamily>();
  const seen = new Set<string>();
  const closed = new Set<string>();
  let current: string | null = null;
  const family = (name: string) => {
    if (!families.has(name)) families.set(name, { name, type: "untyped", help: null, samples: [] });
    return families.get(name)!;
  };
  text.slice(0, -1).split("\n").forEach((raw, idx) => {
    const n = idx + 1;
    if (raw.trim() === "") return;
    if (raw.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m;
      if (!NAME.test(name!)) throw new PromFormatError(n, `bad metric name "${name}"`);
      const f = family(name!);
      if (kind === "TYPE") {
        if (!TYPES.has(rest!)) throw new PromFormatError(n, `unknown type "${rest}"`);
        if (f.samples.length) throw new PromFormatError(n, `TYPE of ${name} after its samples`);
        if (f.type !== "untyped" || closed.has(name!)) {
          throw new PromFormatError(n, `second TYPE for ${name}`);
        }
        f.type = rest!;
      } else {
        if (f.help !== null) throw new PromFormatError(n, `second HELP for ${name}`);
        if (rest!.replace(/\\[\\n]/g, "").includes("\\")) throw new PromFormatError(n, "bad escape in HELP");
        f.help = rest!;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(.*)$/.exec(raw);
    if (!m) throw new PromFormatError(n, `not a sample: "${raw}"`);
    const sampleName = m[1]!;
    let rest = m[2]!;
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, n));
    const parts = rest.trim().split(/\s+/);
    if (!rest.startsWith(" ") || parts.length < 1 || parts.length > 2) {
      throw new PromFormatError(n, `bad sample "${raw}"`);
    }
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new PromFormatError(n, "bad timestamp");
    const value = parseValue(parts[0]!, n);
    for (const k of Object.keys(labels)) if (!LABEL.test(k)) throw new PromFormatError(n, `bad label "${k}"`);
    const name = familyOf(sampleName, families);
    if (current !== name) {
      if (current) closed.add(current);
      if (closed.has(name)) throw new PromFormatError(n, `samples of ${name} are not contiguous`);
      current = name;
    }
    const id = `${sampleName}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(id)) throw new PromFormatError(n, `series repeated: ${raw}`);
    seen.add(id);
    const f = family(name);
    if (f.type === "counter") {
      if (!name.endsWith("_total")) throw new PromFormatError(n, `counter ${name} must end in _total`);
      if (value < 0) throw new PromFormatError(n, `counter ${name} is negative`);
    }
    if (f.type === "histogram" && sampleName === name) {
      throw new PromFormatError(n, `bare sample of histogram ${name}`);
    }
    f.samples.push({ name: sampleName, labels, value });
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

/** The sum of the samples of `name` whose labels include `labels` (0 when there are none). */
export function sampleValue(
  families: Map<string, PromFamily>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const fam = families.get(name.replace(/_(bucket|sum|count)$/, "")) ?? families.get(name);
  const hits = (fam?.samples ?? []).filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  return hits.reduce((a, s) => a + s.value, 0);
}
