/**
 * Headless Chromium (Debian's `chromium`) driven over the Chrome DevTools
 * protocol with Deno's own WebSocket: enough for a test to load a page, read
 * what it shows and take a screenshot, with no npm package.
 */

/** Where Debian installs it (`deno task test` installs it when run as root: scripts/test_deps.ts). */
export const CHROMIUM = "/usr/bin/chromium";

interface CdpReply {
  id?: number;
  method?: string;
  sessionId?: string;
  result?: Record<string, unknown>;
  error?: { message: string };
  params?: Record<string, unknown>;
}

/** A running headless browser with one page. Dispose to close it and remove its profile. */
export class Chromium implements AsyncDisposable {
  readonly #proc: Deno.ChildProcess;
  readonly #profile: string;
  readonly #ws: WebSocket;
  readonly #stderr: Promise<void>;
  #next = 1;
  readonly #pending = new Map<number, { resolve: (r: CdpReply) => void }>();
  readonly #events: CdpReply[] = [];
  #session = "";

  private constructor(proc: Deno.ChildProcess, profile: string, ws: WebSocket, stderr: Promise<void>) {
    this.#proc = proc;
    this.#profile = profile;
    this.#ws = ws;
    this.#stderr = stderr;
    ws.onmessage = (e) => {
      const msg = JSON.parse(String(e.data)) as CdpReply;
      if (msg.id !== undefined) this.#pending.get(msg.id)?.resolve(msg);
      else this.#events.push(msg);
    };
  }

  /** Starts Chromium headless on a fresh profile and attaches to a blank page of `width`×`height`. */
  static async launch(width = 1100, height = 820): Promise<Chromium> {
    const profile = Deno.makeTempDirSync({ prefix: "osps-chromium-" });
    const proc = new Deno.Command(CHROMIUM, {
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        `--user-data-dir=${profile}`,
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        `--window-size=${width},${height}`,
        "about:blank",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reader = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "", url: string | undefined;
    while (!url) {
      const r = await reader.read();
      if (r.done) throw new Error(`chromium exited before listening:\n${text}`);
      text += r.value;
      url = /DevTools listening on (ws:\/\/\S+)/.exec(text)?.[1];
    }
    const stderr = (async () => {
      while (!(await reader.read()).done) { /* drain */ }
    })();
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const browser = new Chromium(proc, profile, ws, stderr);
    const { targetInfos } = (await browser.send("Target.getTargets")) as {
      targetInfos: { targetId: string; type: string }[];
    };
    const page = targetInfos.find((t) => t.type === "page")!;
    const { sessionId } =
      (await browser.send("Target.attachToTarget", { targetId: page.targetId, flatten: true })) as {
        sessionId: string;
      };
    browser.#session = sessionId;
    await browser.send("Page.enable", {}, true);
    await browser.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    }, true);
    return browser;
  }

  /** Sends a DevTools command (to the page when `onPage`); resolves with its result. */
  async send(
    method: string,
    params: Record<string, unknown> = {},
    onPage = false,
  ): Promise<Record<string, unknown>> {
    const id = this.#next++;
    const reply = new Promise<CdpReply>((resolve) => this.#pending.set(id, { resolve }));
    this.#ws.send(JSON.stringify({ id, method, params, ...(onPage ? { sessionId: this.#session } : {}) }));
    const r = await reply;
    this.#pending.delete(id);
    if (r.error) throw new Error(`${method}: ${r.error.message}`);
    return r.result ?? {};
  }

  /** Loads `url` and waits for its load event. */
  async goto(url: string): Promise<void> {
    this.#events.length = 0;
    await this.send("Page.navigate", { url }, true);
    for (let i = 0; i < 200 && !this.#events.some((e) => e.method === "Page.loadEventFired"); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Evaluates `expression` in the page; resolves with its (JSON) value. */
  async evaluate<T>(expression: string): Promise<T> {
    const r = (await this.send("Runtime.evaluate", { expression, returnByValue: true }, true)) as {
      result: { value: T };
      exceptionDetails?: { text: string };
    };
    if (r.exceptionDetails) throw new Error(`evaluate: ${r.exceptionDetails.text}`);
    return r.result.value;
  }

  /** A PNG of the page as shown. */
  async screenshot(): Promise<Uint8Array> {
    const { data } = (await this.send("Page.captureScreenshot", { format: "png" }, true)) as { data: string };
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }

  /** Closes the browser, reaps it and removes its profile. */
  async [Symbol.asyncDispose](): Promise<void> {
    const closed = new Promise((r) => (this.#ws.onclose = r));
    this.#ws.close();
    await closed;
    try {
      this.#proc.kill("SIGTERM");
    } catch { /* gone */ }
    await this.#proc.status;
    await this.#stderr;
    Deno.removeSync(this.#profile, { recursive: true });
  }
}
