/**
 * `osps client`: one request, the same request N times on one dispatcher
 * connection (`--repeat`), or an interactive prompt (no TYPE). With `--json`,
 * answers and errors alike are one JSON object per line on stdout.
 * @module
 */
import type { ClientConfig } from "../mod/cli/config.ts";
import { ProtocolError, ServiceError, UsageError } from "../mod/errors.ts";
import {
  type Answer,
  DispatcherLost,
  DispatcherUnreachable,
  Session,
  WorkerLost,
  WorkerUnreachable,
} from "../mod/client/session.ts";
import { OutOfScope } from "../mod/client/reach.ts";
import { runScoped } from "../mod/client/scope.ts";
import { readLines } from "../mod/ipc/control.ts";
import { serviceNames, SERVICES } from "../mod/services/registry.ts";

const encoder = new TextEncoder();
function out(line: string): void {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
}
function err(line: string): void {
  Deno.stderr.writeSync(encoder.encode(line + "\n"));
}

function show(cfg: ClientConfig, a: Answer, ms: number): void {
  if (cfg.json) {
    out(JSON.stringify({
      code: a.code,
      result: a.text,
      worker_host: a.worker.host,
      worker_port: a.worker.port,
      queued: a.queued,
      ms: Math.round(ms * 1000) / 1000,
    }));
  } else out(a.text);
}

/** A failed request: on stderr for people, and as JSON on stdout with `--json`. */
function showError(cfg: ClientConfig, e: Error): void {
  if (cfg.json) out(JSON.stringify({ code: e instanceof ProtocolError ? e.status : 0, error: e.message }));
  err(`osps client: ${e.message}`);
}

/**
 * Keeps one dispatcher session and retries once where the request cannot have
 * run: the dispatcher connection dropped before an answer, or the assigned
 * worker could not be reached.
 */
class Requester {
  #session: Session | undefined;
  readonly #cfg: ClientConfig;
  constructor(cfg: ClientConfig) {
    this.#cfg = cfg;
  }

  async open(): Promise<Session> {
    this.#session ??= await Session.open(this.#cfg.host, this.#cfg.port, { timeoutMs: this.#cfg.timeoutMs });
    return this.#session;
  }

  async request(type: string, arg: string): Promise<Answer> {
    try {
      return await (await this.open()).request(type, arg);
    } catch (e) {
      const nothingRan = e instanceof DispatcherLost || e instanceof WorkerUnreachable ||
        (e instanceof WorkerLost && e.nothingRan);
      if (!this.#cfg.retry || !nothingRan) throw e;
      if (e instanceof DispatcherLost) {
        this.#session?.abort();
        this.#session = undefined;
      }
      err(`osps client: ${e.message}; retrying once`);
      return await (await this.open()).request(type, arg);
    }
  }

  async close(): Promise<void> {
    await this.#session?.close();
  }
}

/** Runs the client. Returns the exit code (0 when every request succeeded). */
export async function runClient(cfg: ClientConfig, positionals: string[]): Promise<number> {
  const rerun = await runScoped(cfg.host, cfg.port);
  if (rerun !== null) return rerun;
  const [type, ...rest] = positionals;
  const requester = new Requester(cfg);
  try {
    if (type === undefined) return await interactive(cfg, requester);
    if (!Object.hasOwn(SERVICES, type)) {
      throw new UsageError(`unknown request type "${type}"; known: ${serviceNames().join(", ")}`);
    }
    const arg = rest.join(" ");
    for (let i = 0; i < cfg.repeat; i++) {
      const t0 = performance.now();
      try {
        show(cfg, await requester.request(type, arg), performance.now() - t0);
      } catch (e) {
        if (e instanceof OutOfScope && i === 0) {
          // Nothing ran yet: run again, scoped to the dispatcher's worker hosts too.
          await requester.close().catch(() => {});
          const code = await runScoped(cfg.host, cfg.port, true);
          if (code !== null) return code;
        }
        if (!(e instanceof ServiceError) && !(e instanceof ProtocolError)) throw e;
        showError(cfg, e);
        return 3;
      }
    }
    return 0;
  } finally {
    await requester.close().catch(() => {});
  }
}

async function interactive(cfg: ClientConfig, requester: Requester): Promise<number> {
  const tty = Deno.stdin.isTerminal();
  const prompt = () => tty && Deno.stdout.writeSync(encoder.encode("osps> "));
  if (tty) {
    try {
      const version = await (await requester.open()).hello();
      out(
        `connected to ${cfg.host}:${cfg.port} (${version}); type "help" for request types, "quit" to leave`,
      );
    } catch (e) {
      if (!(e instanceof DispatcherUnreachable) && !(e instanceof ServiceError)) throw e;
      showError(cfg, e);
      return 3;
    }
  }
  prompt();
  let failures = 0;
  for await (const raw of readLines(Deno.stdin.readable)) {
    const line = raw.trim();
    if (line === "quit" || line === "exit") break;
    if (line === "help") {
      for (const n of serviceNames()) out(`  ${n} ${SERVICES[n]!.usage}`.padEnd(20) + ` ${SERVICES[n]!.doc}`);
    } else if (line !== "") {
      const sp = line.indexOf(" ");
      const [type, arg] = sp < 0 ? [line, ""] : [line.slice(0, sp), line.slice(sp + 1)];
      const t0 = performance.now();
      try {
        show(cfg, await requester.request(type, arg), performance.now() - t0);
      } catch (e) {
        if (!(e instanceof ServiceError) && !(e instanceof ProtocolError)) throw e;
        failures++;
        showError(cfg, e);
      }
    }
    prompt();
  }
  return failures > 0 ? 3 : 0;
}
