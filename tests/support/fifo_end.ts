/**
 * One end of a worker's local link in a process of its own, for the FIFO
 * tests that kill an end with SIGKILL in the middle of a message: `dispatcher`
 * runs the dispatcher's side of slot 1 (`LocalWorkerLink`), `worker` the
 * worker's (`LocalDispatcherLink`), over the segment and FIFOs the test made.
 *
 * Usage: `fifo_end.ts dispatcher|worker <shm> <run-dir>`. It prints what it
 * sees, one line each: `linked` (the peer can take work / the dispatcher is
 * there), `unlinked`, `echo` (a probe came back), `message <n> ok|bad` (a
 * data-channel message, checked against the pattern `send` writes), `error
 * <why>` (its poller gave up on a pipe). It reads orders on stdin, one a line:
 * `probe`, `send <bytes>`, `flood <count> <bytes>` (prints `flooded <taken>`).
 * @module
 */
import { instancePaths } from "../../mod/cli/config.ts";
import { FifoPoller } from "../../mod/ipc/fifo.ts";
import { Segment } from "../../mod/ipc/shm.ts";
import { LocalDispatcherLink, LocalWorkerLink } from "../../mod/link/local_link.ts";
import { systemClock } from "../../mod/sys/clock.ts";

const [role, shm, runDir] = Deno.args;
const out = (line: string) => Deno.stdout.writeSync(new TextEncoder().encode(line + "\n"));

/**
 * `<n>:` then "hm" repeated, `n` bytes in all: every byte an "h" or an "m", the
 * two bytes a reader that mistakes text for doorbells trips on.
 */
function pattern(n: number): Uint8Array {
  const head = `${n}:`;
  let body = head;
  while (body.length < n) body += body.length % 2 ? "m" : "h";
  return new TextEncoder().encode(body.slice(0, n));
}

function check(m: Uint8Array): string {
  const text = new TextDecoder().decode(m);
  const n = Number(text.slice(0, text.indexOf(":")));
  return `message ${m.length} ${n === m.length && pattern(n).every((b, i) => b === m[i]) ? "ok" : "bad"}`;
}

using segment = Segment.open(shm!);
const slot = segment.slot(1);
const poller = new FifoPoller();
poller.onError = (_r, err) => out(`error ${String(err).replaceAll("\n", " ")}`);
const paths = instancePaths(runDir!);
let send: (m: Uint8Array) => boolean;
let probe = () => false;
let close: () => void;
if (role === "dispatcher") {
  const link = new LocalWorkerLink(slot, paths, "127.0.0.1", poller, systemClock);
  link.start({
    onReady: () => out("linked"),
    onDone() {},
    onClosed: () => out("unlinked"),
    onLost() {},
    onProbe: () => out("echo"),
    onMessage: (_l, m) => out(check(m)),
  });
  send = (m) => link.send(m);
  probe = () => link.probe();
  close = () => link.close();
} else {
  const link = new LocalDispatcherLink(slot, paths, poller, systemClock);
  link.start({
    onAssigned() {},
    onConnected: () => out("linked"),
    onDisconnected: () => out("unlinked"),
    onMessage: (m) => out(check(m)),
  });
  link.ready();
  send = (m) => link.send(m);
  close = () => link.close();
}
poller.start();
out("started");
for await (const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  for (const order of line.split("\n").filter(Boolean)) {
    const [verb, a = "0", b = "0"] = order.split(" ");
    if (verb === "probe") out(probe() ? "probing" : "probe not sent");
    else if (verb === "send") out(send(pattern(Number(a))) ? "sent" : "not sent");
    else if (verb === "flood") {
      let taken = 0;
      for (let i = 0; i < Number(a); i++) if (send(pattern(Number(b)))) taken++;
      out(`flooded ${taken}`);
    }
  }
}
close();
await poller.stop();
