/**
 * `GET /`: a status page for people, plain HTML and SVG rendered by the
 * watchdog (no script, no build step), reloading itself every few seconds:
 * readiness, every role's state, restarts and last exit, heartbeat ages, and
 * requests per second and latency over the last minutes as plots. It shows
 * request types, never request arguments, tickets or client addresses.
 * @module
 */
import type { StatsCounts } from "../ipc/stats.ts";
import type { TrafficPoint } from "./history.ts";
import type { ChildStatus, InstanceStatus } from "./instance_status.ts";
import type { Readiness } from "./readiness.ts";

/** What the page shows. */
export interface PageInput {
  readonly title: string;
  readonly status: InstanceStatus | null;
  readonly counts: StatsCounts | null;
  readonly readiness: Readiness;
  readonly traffic: readonly TrafficPoint[];
  /** Seconds of history the plots span. */
  readonly spanSeconds: number;
  readonly refreshSeconds: number;
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function ms(v: number | null): string {
  if (v === null) return "–";
  return v < 10_000 ? `${v} ms` : v < 600_000 ? `${Math.round(v / 1000)} s` : `${Math.round(v / 60_000)} min`;
}

/** A round number at or above `v` (1, 2 or 5 × 10^k). */
function niceCeil(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return ([1, 2, 5, 10].find((m) => m * p >= v) ?? 10) * p;
}

interface Series {
  readonly key: "rate" | "p50Ms" | "p99Ms";
  readonly label: string;
  readonly color: string;
}

/** One line plot of `series` over the last `span` seconds. */
/** One plot: its id, title, unit and lines. */
interface PlotSpec {
  readonly id: string;
  readonly title: string;
  readonly unit: string;
  readonly series: readonly Series[];
  /** Seconds of history shown. */
  readonly span: number;
}

/** One line plot of the spec's series over the last `span` seconds. */
function plot(points: readonly TrafficPoint[], spec: PlotSpec): string {
  const { id, title, unit, series, span } = spec;
  const W = 480, H = 150, L = 48, B = 22, T = 8;
  const values = points.flatMap((p) => series.map((s) => p[s.key] ?? 0));
  const top = niceCeil(Math.max(0, ...values));
  const x = (t: number) => L + ((t + span) / span) * (W - L - 8);
  const y = (v: number) => T + (1 - v / top) * (H - T - B);
  const grid = [0, 0.5, 1].map((f) =>
    `<line x1="${L}" x2="${W - 8}" y1="${y(top * f)}" y2="${y(top * f)}" class="grid"/>` +
    `<text x="${L - 4}" y="${y(top * f) + 4}" text-anchor="end">${+(top * f).toPrecision(3)}</text>`
  ).join("");
  const minutes = Math.floor(span / 60);
  const ticks = Array.from({ length: minutes + 1 }, (_, m) => {
    const t = -m * 60, anchor = m === 0 ? "end" : m === minutes ? "start" : "middle";
    return `<text x="${x(t)}" y="${H - 6}" text-anchor="${anchor}">${
      t === 0 ? "now" : `${t / 60} min`
    }</text>`;
  }).join("");
  const lines = series.map((s) => {
    const pts = points.filter((p) => p[s.key] !== null && p.t >= -span)
      .map((p) => `${x(p.t).toFixed(1)},${y(p[s.key]!).toFixed(1)}`).join(" ");
    return `<polyline data-series="${s.key}" points="${pts}" fill="none" stroke="${s.color}" stroke-width="2"/>`;
  }).join("");
  const last = points.at(-1);
  const legend = series.map((s) =>
    `<span style="color:${s.color}">■</span> ${s.label}: <b data-now="${s.key}">${
      last?.[s.key] != null ? +last[s.key]!.toFixed(2) : "–"
    }</b> ${unit}`
  ).join(" &nbsp; ");
  return `<figure><figcaption>${title} <small>${legend}</small></figcaption>` +
    `<svg id="${id}" data-plot="${id}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${title}">` +
    `${grid}${ticks}${lines}</svg></figure>`;
}

function childRow(c: ChildStatus, ready: boolean): string {
  const name = c.name;
  const cells = [
    name,
    String(c.pid || "–"),
    String(c.port),
    c.state + (c.backoff_ms > 0 ? ` (retry in ${ms(c.backoff_ms)})` : ""),
    c.role === "dispatcher" ? "–" : c.work + (c.request ? `: ${c.request.split(" ")[0]}` : ""),
    String(c.restarts),
    c.last_exit,
    ms(c.heartbeat_age_ms),
    ms(c.uptime_ms),
    String(c.served),
    String(c.conns),
  ];
  const cls = c.state === "ready" ? (ready ? "ok" : "") : "bad";
  return `<tr class="${cls}" data-role="${escapeHtml(name)}">${
    cells.map((v) => `<td>${escapeHtml(v)}</td>`).join("")
  }</tr>`;
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:70em}
h1{font-size:1.3em;margin:0 0 .3em}
.banner{padding:.5em .8em;border-radius:4px;margin:.5em 0 1em;font-weight:600}
.banner.ok{background:#e3f5e1;color:#1b5e20}.banner.bad{background:#fde7e7;color:#8e1b1b}
table{border-collapse:collapse;margin-bottom:1em}
th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}
th{background:#f4f4f4}tr.bad td{background:#fff4f4}
figure{display:inline-block;margin:0 1.5em 1em 0}figcaption{font-weight:600;margin-bottom:.2em}
svg text{font-size:10px;fill:#666}svg .grid{stroke:#e5e5e5}
small{font-weight:400;color:#555}footer{color:#777;font-size:12px}
`;

/** Renders the page. */
export function renderStatusPage(p: PageInput): string {
  const s = p.status;
  const r = p.readiness;
  const head = `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
    `<meta http-equiv="refresh" content="${p.refreshSeconds}">` +
    `<meta name="viewport" content="width=device-width,initial-scale=1">` +
    `<title>${escapeHtml(p.title)}</title><style>${STYLE}</style></head><body>`;
  const banner = `<div id="readiness" class="banner ${r.ready ? "ok" : "bad"}">${
    r.ready ? "READY" : "NOT READY"
  } — ${escapeHtml(r.reason)}</div>`;
  let body = `<h1>${escapeHtml(p.title)}</h1>${banner}`;
  const http = s?.http;
  if (http) {
    const host = String(http["http-host"]);
    const base = `http://${host.includes(":") ? `[${host}]` : host}:${http["http-port"]}`;
    body += `<p id="api">HTTP API: <a href="${escapeHtml(base)}/v1/openapi.json">${escapeHtml(base)}/v1</a>` +
      ` · <a href="${escapeHtml(base)}/">web chat</a></p>`;
  }
  if (s) {
    const sum = (a: number[][]) => a.flat().reduce((x, y) => x + y, 0);
    const requests = p.counts ? sum(p.counts.requests) : 0;
    const refusals = p.counts ? p.counts.refusals.reduce((x, y) => x + y, 0) : 0;
    body += `<p id="watchdog">watchdog pid ${s.watchdog.pid} · ${escapeHtml(s.watchdog.state)}` +
      (s.watchdog.ready_for_ms !== null ? ` for ${ms(s.watchdog.ready_for_ms)}` : "") +
      ` · queue <b id="queue">${s.queue_depth}</b> waiting · <b id="requests">${requests}</b> requests answered` +
      ` · ${refusals} refused</p>`;
    const cols = [
      "role",
      "pid",
      "port",
      "state",
      "work",
      "restarts",
      "last exit",
      "heartbeat",
      "uptime",
      "served",
      "conns",
    ];
    body += `<table id="roles"><thead><tr>${cols.map((c) => `<th>${c}</th>`).join("")}</tr></thead><tbody>` +
      [s.dispatcher, ...s.workers].map((c) => childRow(c, r.ready)).join("") + `</tbody></table>`;
    if (s.reloads.last && !s.reloads.last.ok) {
      body += `<p id="reload" class="banner bad">last reload: ${escapeHtml(s.reloads.last.text)}</p>`;
    }
    for (const q of s.quarantine) {
      body +=
        `<p class="banner bad">quarantine: ${escapeHtml(q.type)} refused for ${ms(q.refused_for_ms)} more ` +
        `(it cost ${q.kills} workers)</p>`;
    }
  }
  body += plot(p.traffic, {
    id: "rate",
    title: "Requests per second",
    unit: "req/s",
    series: [{ key: "rate", label: "now", color: "#1565c0" }],
    span: p.spanSeconds,
  });
  body += plot(p.traffic, {
    id: "latency",
    title: "Latency",
    unit: "ms",
    series: [{ key: "p50Ms", label: "p50", color: "#2e7d32" }, {
      key: "p99Ms",
      label: "p99",
      color: "#c62828",
    }],
    span: p.spanSeconds,
  });
  body += `<footer>Refreshes every ${p.refreshSeconds} s · <a href="/metrics">/metrics</a> · ` +
    `<a href="/readyz">/readyz</a> · <a href="/healthz">/healthz</a> · <a href="/status.json">/status.json</a></footer>`;
  return `${head}${body}</body></html>\n`;
}
