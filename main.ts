/**
 * osps — one program, four roles (watchdog, dispatcher, worker, client) plus
 * chat, status, stop and bench. Parses the subcommand, hands off to the role, and is
 * the only place that turns an outcome into an exit code.
 * @module
 */
import { helpText, parseCommandLine } from "./mod/cli/cli.ts";
import {
  chatClientConfig,
  clientConfig,
  dispatcherConfig,
  resolveRunDir,
  workerConfig,
} from "./mod/cli/config.ts";
import { exitCodeOf, UsageError } from "./mod/errors.ts";
import { loadWatchdogConfig } from "./mod/ops/config_file.ts";
import { flushLogs } from "./mod/log.ts";
import { runWatchdog } from "./roles/watchdog.ts";
import { runDispatcher } from "./roles/dispatcher.ts";
import { runWorker } from "./roles/worker.ts";
import { runClient } from "./roles/client.ts";
import { readStatus, watchStatus } from "./roles/status.ts";
import { statusTable } from "./mod/ops/instance_status.ts";
import { runStop } from "./roles/stop.ts";
import { runReload } from "./roles/reload.ts";
import { runBench } from "./roles/bench.ts";
import { newSecret } from "./mod/link/secret.ts";
import { runChat } from "./roles/chat.ts";

async function main(argv: string[]): Promise<number> {
  const cmd = parseCommandLine(argv);
  if (cmd.help) {
    console.log(helpText(cmd.command));
    return 0;
  }
  const f = cmd.flags;
  switch (cmd.command) {
    case "watchdog":
      return await runWatchdog(loadWatchdogConfig({ flags: f, given: cmd.given }));
    case "dispatcher":
      return await runDispatcher(dispatcherConfig(f));
    case "worker":
      return await runWorker(workerConfig(f));
    case "client":
      return await runClient(clientConfig(f), cmd.positionals);
    case "chat":
      return await runChat(chatClientConfig(f), cmd.positionals);
    case "status": {
      if (f["watch"]) {
        if (f["json"]) throw new UsageError("status: --watch draws a table for people; drop --json");
        return await watchStatus(resolveRunDir(f));
      }
      const s = readStatus(resolveRunDir(f));
      console.log(f["json"] ? JSON.stringify(s) : statusTable(s));
      return 0;
    }
    case "secret":
      console.log(newSecret());
      return 0;
    case "stop":
      return await runStop(resolveRunDir(f), Number(f["timeout-ms"]));
    case "reload":
      return await runReload(resolveRunDir(f), Number(f["timeout-ms"]));
    case "bench":
      return await runBench(f, cmd.positionals);
  }
  return 2;
}

function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 4; e = e.cause) {
    if (!parts.some((p) => p.includes(e.message))) parts.push(e.message);
  }
  return parts.length ? parts.join(": ") : String(err);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    const cmd = Deno.args[0] ?? "";
    console.error(`osps${cmd && !cmd.startsWith("-") ? ` ${cmd}` : ""}: error: ${describe(err)}`);
    code = exitCodeOf(err);
  }
  await flushLogs();
  Deno.exit(code);
}
