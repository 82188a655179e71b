/** Reading osps's status page in Chromium, and traffic to give its plots points (tests and `deno task screenshot`). */
import type { Chromium } from "./chromium.ts";
import type { Instance } from "../harness.ts";

/** What the page shows, read from its DOM. */
export interface PageView {
  title: string;
  readiness: string;
  rows: { role: string; cells: string[] }[];
  ratePoints: number;
  rateNow: string;
  requests: number;
  refresh: string | null;
}

/** Reads the page's DOM. */
export function readPage(browser: Chromium): Promise<PageView> {
  return browser.evaluate<PageView>(`(() => ({
    title: document.title,
    readiness: document.querySelector("#readiness")?.textContent ?? "",
    rows: [...document.querySelectorAll("#roles tbody tr")].map((tr) => ({
      role: tr.dataset.role,
      cells: [...tr.children].map((td) => td.textContent),
    })),
    ratePoints: (document.querySelector('polyline[data-series="rate"]')?.getAttribute("points") ?? "")
      .split(" ").filter(Boolean).length,
    rateNow: document.querySelector('[data-now="rate"]')?.textContent ?? "",
    requests: Number(document.querySelector("#requests")?.textContent ?? -1),
    refresh: document.querySelector('meta[http-equiv="refresh"]')?.getAttribute("content") ?? null,
  }))()`);
}

/** Serves requests for about `seconds`, so the plots have points. */
export async function traffic(inst: Instance, seconds: number): Promise<void> {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    await Promise.all([
      inst.client(["--repeat", "40", "echo", "x"]),
      inst.client(["--repeat", "20", "sha256", "y"]),
    ]);
  }
}
