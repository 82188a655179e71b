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
import { EXIT_CANNOT_BOOT, EXIT_USAGE, exitCodeOf, UsageError } from "./mod/errors.ts";
import { flushLogs } from "./mod/log.ts";
import { withPermissionHints } from "./mod/cli/permission_hint.ts";

/**
 * Runs one subcommand. Each role's modules are loaded only by the role that
 * uses them (a worker never loads the watchdog's HTTP endpoint, the config
 * file parser or the link server): less to compile at start, less resident
 * memory in every process. `deno compile` bundles them all the same.
 */
async function main(argv: string[]): Promise<number> {
  const cmd = parseCommandLine(argv);
  if (cmd.help) {
    console.log(helpText(cmd.command));
    return 0;
  }
  const f = cmd.flags;
  switch (cmd.command) {
    case "watchdog": {
      const { loadWatchdogConfig } = await import("./mod/ops/config_file.ts");
      const { runWatchdog } = await import("./roles/watchdog.ts");
      return await runWatchdog(loadWatchdogConfig({ flags: f, given: cmd.given }));
    }
    case "dispatcher":
      return await (await import("./roles/dispatcher.ts")).runDispatcher(dispatcherConfig(f));
    case "worker":
      return await (await import("./roles/worker.ts")).runWorker(workerConfig(f));
    case "chat-prepare": {
      const { chatConfig } = await import("./mod/chat/chat_config.ts");
      const { prepareChatStoreHere } = await import("./mod/chat/chat_boot.ts");
      return await prepareChatStoreHere(chatConfig(f), Number(f["port"]));
    }
    case "client":
      return await (await import("./roles/client.ts")).runClient(clientConfig(f), cmd.positionals);
    case "chat":
      return await (await import("./roles/chat.ts")).runChat(chatClientConfig(f), cmd.positionals);
    case "status": {
      const { readStatus, watchStatus } = await import("./roles/status.ts");
      if (f["watch"]) {
        if (f["json"]) throw new UsageError("status: --watch draws a table for people; drop --json");
        return await watchStatus(resolveRunDir(f));
      }
      const s = readStatus(resolveRunDir(f));
      const { statusTable } = await import("./mod/ops/instance_status.ts");
      console.log(f["json"] ? JSON.stringify(s) : statusTable(s));
      return 0;
    }
    case "hosts": {
      const { dispatcherHosts } = await import("./mod/client/scope.ts");
      console.log((await dispatcherHosts(String(f["host"]), Number(f["port"]))).join(" "));
      return 0;
    }
    case "secret":
      console.log((await import("./mod/link/secret.ts")).newSecret());
      return 0;
    case "stop":
      return await (await import("./roles/stop.ts")).runStop(resolveRunDir(f), Number(f["timeout-ms"]));
    case "reload":
      return await (await import("./roles/reload.ts")).runReload(resolveRunDir(f), Number(f["timeout-ms"]));
    case "bench":
      return await (await import("./roles/bench.ts")).runBench(f, cmd.positionals);
  }
  return 2;
}

function describe(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err; e instanceof Error && parts.length < 4; e = e.cause) {
    const said = withPermissionHints(e.message); // never Deno's "run again with --allow-…"
    if (!parts.some((p) => p.includes(said))) parts.push(said);
  }
  return parts.length ? parts.join(": ") : String(err);
}

/** Roles a watchdog runs: their stdout is its control channel, where they also say why they exit. */
const SUPERVISED = new Set(["dispatcher", "worker"]);

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (err) {
    const cmd = Deno.args[0] ?? "";
    console.error(`osps${cmd && !cmd.startsWith("-") ? ` ${cmd}` : ""}: error: ${describe(err)}`);
    code = exitCodeOf(err);
    // A watchdog with bad flags or a bad config file cannot boot: 100 tells its own supervisor
    // (systemd's RestartPreventExitStatus=100, s6) not to restart it in a loop.
    if (cmd === "watchdog" && code === EXIT_USAGE) code = EXIT_CANNOT_BOOT;
    if (SUPERVISED.has(cmd)) (await import("./mod/ipc/control.ts")).reportError(describe(err));
  }
  await flushLogs();
  Deno.exit(code);
}
