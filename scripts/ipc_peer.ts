/**
 * Helper process of the benchmark suite (`deno task bench`), the far end of
 * the IPC round trips:
 * - `fifo <shm> <run-dir>`: the worker side of worker 1's local link
 *   (`LocalDispatcherLink`): echoes every probe byte from its event loop,
 *   exactly as a worker does;
 * - `tcp`: a TCP server on 127.0.0.1 echoing every byte on a kept connection
 *   (prints `port <n>` once listening).
 *
 * Runs until its stdin closes.
 * @module
 */
import { instancePaths } from "../mod/cli/config.ts";
import { LocalDispatcherLink } from "../mod/link/local_link.ts";
import { Segment } from "../mod/ipc/shm.ts";
import { FifoPoller } from "../mod/ipc/fifo.ts";
import { systemClock } from "../mod/sys/clock.ts";

async function untilStdinCloses(): Promise<void> {
  for await (const _ of Deno.stdin.readable) { /* nothing is sent */ }
}

async function fifoPeer(shm: string, runDir: string): Promise<void> {
  using segment = Segment.open(shm);
  const poller = new FifoPoller();
  const link = new LocalDispatcherLink(segment.slot(1), instancePaths(runDir), poller, systemClock);
  link.start({ onAssigned() {}, onConnected() {}, onDisconnected() {} });
  poller.start();
  link.ready();
  console.log("ready");
  await untilStdinCloses();
  link.close();
  await poller.stop();
}

async function tcpPeer(): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(`port ${(listener.addr as Deno.NetAddr).port}`);
  const serving = (async () => {
    for await (const conn of listener) {
      conn.setNoDelay(true);
      void (async () => {
        const buf = new Uint8Array(4096);
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            await conn.write(buf.subarray(0, n));
          }
        } catch { /* client went away */ }
        try {
          conn.close();
        } catch { /* closed */ }
      })();
    }
  })();
  await untilStdinCloses();
  listener.close();
  await serving.catch(() => {});
}

if (import.meta.main) {
  const [mode, ...args] = Deno.args;
  if (mode === "fifo" && args.length === 2) await fifoPeer(args[0]!, args[1]!);
  else if (mode === "tcp") await tcpPeer();
  else {
    console.error("usage: ipc_peer.ts fifo <shm> <run-dir> | ipc_peer.ts tcp");
    Deno.exitCode = 2;
  }
}
