/**
 * A writer of the Prometheus text exposition format (version 0.0.4): one
 * `# HELP` and `# TYPE` per family, then its samples, label values escaped.
 *
 * osps writes its own instead of using `prom-client`: the watchdog renders a
 * few hundred lines from shared memory on each scrape and keeps no registry,
 * and loading `prom-client` through Deno's npm layer costs about 30 MB of
 * resident memory in an idle watchdog (measured: 38 MB → 68 MB) for nothing
 * osps uses.
 * @module
 */

/** Labels of one sample, name → value. */
export type Labels = Readonly<Record<string, string | number>>;

/** One sample of a counter or gauge. */
export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
}

/** One series of a histogram: cumulative counts come from `counts` (per bucket, not cumulative). */
export interface HistogramSeries {
  readonly labels?: Labels;
  /** Upper bounds, ascending, without +Inf. */
  readonly bounds: readonly number[];
  /** Observations per bucket, `bounds.length + 1` of them (the last is above every bound). */
  readonly counts: readonly number[];
  readonly sum: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A family name or label name that the format does not allow. */
export class MetricNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MetricNameError";
  }
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A sample value as the format writes it (`+Inf`, `-Inf`, `NaN`, or a plain number). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {}).map(([k, v]) => {
    if (!LABEL.test(k) || k.startsWith("__")) throw new MetricNameError(`invalid label name "${k}"`);
    return `${k}="${escapeLabel(String(v))}"`;
  });
  if (extra) pairs.push(`${extra[0]}="${extra[1]}"`);
  return pairs.length ? `{${pairs.join(",")}}` : "";
}

/**
 * Collects metric families and renders them as one exposition.
 * @example
 * ```ts
 * const w = new PromWriter();
 * w.counter("osps_requests_total", "Requests answered.", [{ labels: { type: "echo" }, value: 3 }]);
 * w.gauge("osps_queue_depth", "Clients waiting.", [{ value: 0 }]);
 * console.log(w.text());
 * ```
 */
export class PromWriter {
  readonly #lines: string[] = [];
  readonly #names = new Set<string>();

  #family(name: string, type: string, help: string): void {
    if (!NAME.test(name)) throw new MetricNameError(`invalid metric name "${name}"`);
    if (this.#names.has(name)) throw new MetricNameError(`metric "${name}" written twice`);
    if (type === "counter" && !name.endsWith("_total")) {
      throw new MetricNameError(`counter "${name}" must end in _total`);
    }
    this.#names.add(name);
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  #samples(name: string, samples: readonly Sample[]): void {
    for (const s of samples) this.#lines.push(`${name}${labelText(s.labels)} ${formatValue(s.value)}`);
  }

  /** A counter family (the name ends in `_total`). */
  counter(name: string, help: string, samples: readonly Sample[]): this {
    this.#family(name, "counter", help);
    this.#samples(name, samples);
    return this;
  }

  /** A gauge family. */
  gauge(name: string, help: string, samples: readonly Sample[]): this {
    this.#family(name, "gauge", help);
    this.#samples(name, samples);
    return this;
  }

  /** A histogram family: `_bucket` lines (cumulative, ending in `le="+Inf"`), `_sum` and `_count` per series. */
  histogram(name: string, help: string, series: readonly HistogramSeries[]): this {
    this.#family(name, "histogram", help);
    for (const s of series) {
      let cumulative = 0;
      s.bounds.forEach((b, i) => {
        cumulative += s.counts[i] ?? 0;
        this.#lines.push(`${name}_bucket${labelText(s.labels, ["le", formatValue(b)])} ${cumulative}`);
      });
      cumulative += s.counts[s.bounds.length] ?? 0;
      this.#lines.push(`${name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${cumulative}`);
      this.#lines.push(`${name}_sum${labelText(s.labels)} ${formatValue(s.sum)}`);
      this.#lines.push(`${name}_count${labelText(s.labels)} ${cumulative}`);
    }
    return this;
  }

  /** The exposition, LF-terminated. */
  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

/** The Content-Type of the text format. */
export const PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
