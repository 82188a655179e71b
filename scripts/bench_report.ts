/**
 * Writes the suite's results: `results.json`, `RESULTS.md` (a table of every
 * figure, its reference, the ratio, the target and whether it was met) and
 * `latency.svg` (latency distributions and throughput by client count),
 * hand-written SVG without dependencies.
 * @module
 */
import type { Figure, Machine } from "./bench_util.ts";
import type { FlowKind, FlowRun } from "./bench_flow.ts";

/** Everything one run of the suite produced. */
export interface Results {
  readonly suite: "osps bench";
  readonly quick: boolean;
  readonly started_at: string;
  readonly duration_s: number;
  readonly machine: Machine;
  /** Load average at the start and at the end of the run. */
  readonly load: { readonly start: number[]; readonly end: number[] };
  readonly figures: Figure[];
  readonly flow: FlowRun[];
  readonly raw: Record<string, unknown>;
}

function num(x: number): string {
  if (!Number.isFinite(x) || Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  return a >= 1000
    ? Math.round(x).toString()
    : a >= 10
    ? x.toFixed(1)
    : a >= 1
    ? x.toFixed(2)
    : x.toPrecision(2);
}

function targetText(f: Figure): string {
  if (!f.target) return "";
  const what = f.target.on === "ratio" ? "ratio" : "value";
  return `${what} ${f.target.op === "<=" ? "≤" : "≥"} ${f.target.limit}${f.target.on === "ratio" ? "×" : ""}`;
}

/** The results as Markdown. */
export function resultsMarkdown(r: Results): string {
  const m = r.machine;
  const rows = r.figures.map((f) =>
    `| ${f.part} | ${f.name} | ${num(f.value)} ${f.unit} | ${
      f.reference ? `${f.reference.name}: ${f.reference.missing ?? num(f.reference.value)}` : ""
    } | ${f.ratio === undefined ? "" : `${num(f.ratio)}×`} | ${targetText(f)} | ${
      f.met === undefined ? "" : f.met ? "yes" : "**no**"
    } | ${f.note ?? ""} |`
  );
  const targets = r.figures.filter((f) => f.met !== undefined);
  return [
    "# osps benchmark results",
    "",
    `Written by \`deno task bench${
      r.quick ? " --quick" : ""
    }\` on ${r.started_at} in ${r.duration_s} s. Every`,
    "reference was measured in the same run on the same machine: compare ratios, not absolute figures.",
    "",
    "## Machine",
    "",
    `- CPUs: ${m.nproc} × ${m.cpu}`,
    `- Kernel: ${m.kernel}`,
    `- Deno ${m.deno} (V8 ${m.v8})`,
    `- Load average (1, 5, 15 min): ${r.load.start.join(", ")} at the start, ${
      r.load.end.join(", ")
    } at the end`,
    "",
    `## Figures (${targets.filter((f) => f.met).length} of ${targets.length} targets met)`,
    "",
    "Why each missed target is missed, measured (profiles, system calls, memory by module): " +
    "[docs/PERFORMANCE.md](../docs/PERFORMANCE.md); for the chat: [docs/CHAT.md](../docs/CHAT.md#measured). " +
    "This machine is a shared 2-core VM: the same run repeated moves the ratios by ±25 %.",
    "",
    "| part | figure | value | reference | ratio | target | met? | note |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    "![latency distributions and throughput](latency.svg)",
    "",
  ].join("\n");
}

const COLORS: Record<FlowKind, string> = {
  floor: "#bbbbbb",
  twohop: "#555555",
  oneshot: "#d9480f",
  session: "#1971c2",
};
const LABELS: Record<FlowKind, string> = {
  floor: "one-process floor (direct TCP)",
  twohop: "two-hop floor (plain dispatcher + worker)",
  oneshot: "osps one-shot",
  session: "osps session",
};

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
}

/** Latency CDFs (one panel per client count, log time axis) and a throughput bar chart, as SVG. */
export function latencySvg(runs: readonly FlowRun[]): string {
  const counts = [...new Set(runs.map((r) => r.clients))].sort((a, b) => a - b);
  const kinds: FlowKind[] = ["floor", "twohop", "oneshot", "session"];
  const pw = 300, ph = 220, pad = 50, top = 50;
  const width = pad + (counts.length + 1) * (pw + pad);
  const height = top + ph + 90;
  const all = runs.flatMap((r) => r.cdf.map((c) => c.ms)).filter((x) => x > 0);
  const lo = Math.log10(Math.max(0.01, Math.min(...all))), hi = Math.log10(Math.max(...all) * 1.1);
  const x = (ms: number) => ((Math.log10(Math.max(ms, 10 ** lo)) - lo) / (hi - lo || 1)) * pw;
  const y = (q: number) => ph - (q / 100) * ph;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${pad}" y="20" font-size="14" font-weight="bold">osps full cycle: latency distribution (CDF, log time) and throughput by client count</text>`,
  ];
  counts.forEach((c, i) => {
    const ox = pad + i * (pw + pad);
    out.push(`<g transform="translate(${ox},${top})">`);
    out.push(`<rect width="${pw}" height="${ph}" fill="none" stroke="#ccc"/>`);
    out.push(
      `<text x="${pw / 2}" y="-8" text-anchor="middle" font-weight="bold">${c} client${
        c > 1 ? "s" : ""
      }</text>`,
    );
    for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) {
      const gx = x(10 ** e);
      out.push(`<line x1="${gx}" y1="0" x2="${gx}" y2="${ph}" stroke="#eee"/>`);
      out.push(
        `<text x="${gx}" y="${ph + 14}" text-anchor="middle">${
          10 ** e >= 1 ? 10 ** e : (10 ** e).toFixed(-e)
        } ms</text>`,
      );
    }
    for (const q of [50, 90, 99]) {
      out.push(`<line x1="0" y1="${y(q)}" x2="${pw}" y2="${y(q)}" stroke="#eee"/>`);
      out.push(`<text x="-4" y="${y(q) + 4}" text-anchor="end">p${q}</text>`);
    }
    for (const k of kinds) {
      const r = runs.find((r) => r.kind === k && r.clients === c);
      if (!r || r.cdf.length === 0) continue;
      const pts = r.cdf.map((p) => `${x(p.ms).toFixed(1)},${y(p.q).toFixed(1)}`).join(" ");
      out.push(`<polyline points="${pts}" fill="none" stroke="${COLORS[k]}" stroke-width="2"/>`);
    }
    out.push(`</g>`);
  });
  // Throughput: grouped bars per client count.
  const ox = pad + counts.length * (pw + pad);
  const maxRps = Math.max(1, ...runs.map((r) => r.throughput_rps));
  const gw = pw / counts.length, bw = (gw - 16) / kinds.length;
  out.push(`<g transform="translate(${ox},${top})">`);
  out.push(`<rect width="${pw}" height="${ph}" fill="none" stroke="#ccc"/>`);
  out.push(`<text x="${pw / 2}" y="-8" text-anchor="middle" font-weight="bold">throughput (req/s)</text>`);
  counts.forEach((c, i) => {
    kinds.forEach((k, j) => {
      const r = runs.find((r) => r.kind === k && r.clients === c);
      if (!r) return;
      const h = (r.throughput_rps / maxRps) * (ph - 20);
      const bx = i * gw + 8 + j * bw;
      out.push(
        `<rect x="${bx.toFixed(1)}" y="${(ph - h).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${
          h.toFixed(1)
        }" fill="${COLORS[k]}"/>`,
      );
      out.push(
        `<text x="${(bx + bw / 2).toFixed(1)}" y="${
          (ph - h - 3).toFixed(1)
        }" text-anchor="middle" font-size="9">${Math.round(r.throughput_rps)}</text>`,
      );
    });
    out.push(
      `<text x="${(i + 0.5) * gw}" y="${ph + 14}" text-anchor="middle">${c} client${c > 1 ? "s" : ""}</text>`,
    );
  });
  out.push(`</g>`);
  kinds.forEach((k, j) => {
    const lx = pad + j * 180, ly = top + ph + 45;
    out.push(`<rect x="${lx}" y="${ly - 9}" width="14" height="10" fill="${COLORS[k]}"/>`);
    out.push(`<text x="${lx + 20}" y="${ly}">${esc(LABELS[k])}</text>`);
  });
  out.push(
    `<text x="${pad}" y="${
      top + ph + 75
    }" fill="#555">Curves: share of requests (y) answered within a time (x). Same request (echo) for all; one-process floor = one direct TCP connection per request; two-hop floor = the same two connections as osps, nothing else.</text>`,
  );
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
