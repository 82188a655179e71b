/**
 * The watchdog's own channel to each child: the child's stdin and stdout pipes.
 * Not the FIFOs (those belong to the dispatcher and workers: a third writer
 * there would race with them, and a frozen server could not read an order sent
 * through them anyway). Lines:
 *
 * | direction | line | meaning |
 * | --- | --- | --- |
 * | watchdog → child | `ping <n>` | "are you alive?" |
 * | child → watchdog | `pong <n>` | answered from the child's main loop |
 * | child → watchdog | `ready <detail>` | listening and serving |
 * | child → watchdog | `retiring <detail>` | drains and exits 0 on its own (`--max-requests`) |
 * | watchdog → child | `drain` | take no new work, finish what you hold (however long), then a worker exits 0 |
 * | watchdog → child | `stop` | finish and exit 0 |
 * | watchdog → child | `secret <hex>[,<hex>]` | the link secret (and the previous one), first line, for TCP link roles |
 * | child → watchdog | `linked <detail>` / `unlinked <detail>` | its TCP link to the dispatcher is up / lost |
 * | child → watchdog | `error <text>` | the error it is about to exit with (say, why it cannot boot), one line |
 *
 * `ping`/`pong` is the heartbeat and nothing else: the watchdog counts the
 * pings it sent, and a pong answers every ping up to the number it echoes.
 * The answer comes from the child's event loop, which is also the loop that
 * serves requests: a worker blocked in a computation or SIGSTOPped cannot
 * answer, unlike the seed's side thread, which kept answering for a hung
 * server. EOF on stdin means the watchdog is gone: the child exits (a lifeline
 * besides PR_SET_PDEATHSIG).
 *
 * The child reads and writes its end with plain non-blocking `read(2)` and
 * `write(2)` from a timer of its main loop, every {@link CONTROL_POLL_MS}, not
 * through Deno's asynchronous stdin and stdout. Measured with 10,000 chat
 * clients on two workers: a worker whose loop ran every timer on time was
 * handed the watchdog's pings up to 2.6 s late — the completion of a pipe
 * read waits behind thousands of socket completions — and was killed as
 * hung while it served. A timer runs whenever the loop turns, so a ping is
 * answered within a tick of the loop being free, and only a loop that does
 * not turn is silent.
 * @module
 */

import * as libc from "../sys/libc.ts";

/** How often a child looks at its control channel (a timer of its main loop). */
export const CONTROL_POLL_MS = 50;
/** Lines a child keeps for a watchdog that does not read (past it, new lines are dropped). */
const MAX_OUT_LINES = 64;
const STDIN = 0, STDOUT = 1;

const encoder = new TextEncoder();

/** Handlers a child registers for orders from the watchdog. */
export interface ChildHandlers {
  /** Called on every ping, before the pong is written (record a heartbeat). */
  onPing(): void;
  onDrain(): void;
  onStop(): void;
  /** The watchdog is gone (stdin EOF). */
  onOrphaned(): void;
}

function isPipe(fd: number): boolean {
  const S_IFMT = 0o170000, S_IFIFO = 0o010000, S_IFSOCK = 0o140000;
  try {
    const type = libc.fstat(fd).mode & S_IFMT;
    return type === S_IFIFO || type === S_IFSOCK;
  } catch {
    return false;
  }
}

/** Child side: answers pings, reports readiness. */
export class ChildControl {
  readonly #secret = Promise.withResolvers<Uint8Array[]>();
  /**
   * Lines for the watchdog not written yet: the pipe was full (a watchdog
   * that stops reading, stopped say, must not freeze this child's loop).
   */
  readonly #out: Uint8Array<ArrayBuffer>[] = [];
  #gone = false;

  /** Starts reading orders from stdin. Resolves when stdin closes. */
  run(handlers: ChildHandlers): Promise<void> {
    // Only a pipe (or socket) is a watchdog's channel; a terminal is left as it is (its flags are the shell's too).
    const channel = [STDIN, STDOUT].every((fd) => isPipe(fd));
    if (channel) [STDIN, STDOUT].forEach((fd) => libc.setNonBlocking(fd, true));
    const decoder = new TextDecoder();
    const buf = new Uint8Array(4096);
    let pending = "";
    const { promise, resolve } = Promise.withResolvers<void>();
    const onLine = (line: string) => {
      const [verb, arg] = line.replace(/\r$/, "").split(" ");
      if (verb === "ping") {
        handlers.onPing();
        this.#send(`pong ${arg ?? ""}`);
      } else if (verb === "drain") handlers.onDrain();
      else if (verb === "stop") handlers.onStop();
      else if (verb === "secret" && arg && /^([0-9a-f]{2})+(,([0-9a-f]{2})+)?$/.test(arg)) {
        this.#secret.resolve(
          arg.split(",").map((h) => Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16))),
        );
      }
    };
    const closed = () => {
      clearInterval(timer);
      if (pending) onLine(pending);
      this.#secret.reject(
        new Error("the watchdog closed the control channel before sending the link secret"),
      );
      this.#secret.promise.catch(() => {});
      handlers.onOrphaned();
      resolve();
    };
    const look = () => {
      for (;;) {
        const n = libc.readNow(STDIN, buf);
        if (n === -libc.E.EINTR) continue;
        if (n === -libc.E.EAGAIN) break;
        if (n <= 0) return closed(); // EOF, or an error that leaves nothing to read: the watchdog is gone
        pending += decoder.decode(buf.subarray(0, n), { stream: true });
        for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          onLine(line);
        }
      }
      this.#flush();
    };
    const timer = setInterval(look, CONTROL_POLL_MS);
    if (channel) look();
    else closed(); // no watchdog at the other end: orphaned from the start
    return promise;
  }

  /**
   * The link secrets as the watchdog sends them, current first (never on a
   * command line, never in a file the child reads).
   */
  secret(): Promise<Uint8Array[]> {
    return this.#secret.promise;
  }

  /** Tells the watchdog whether this child's TCP link to the dispatcher is up. */
  linked(up: boolean, detail: string): void {
    this.#send(`${up ? "linked" : "unlinked"} ${detail}`);
  }

  /** Tells the watchdog this child is serving. */
  ready(detail: string): void {
    this.#send(`ready ${detail}`);
  }

  /** Tells the watchdog this child is draining to exit 0 on its own (recycling): replace it, it did not fail. */
  retiring(detail: string): void {
    this.#send(`retiring ${detail}`);
  }

  /** Queues a line for the watchdog and writes what the pipe takes now. */
  #send(line: string): void {
    if (this.#gone) return;
    if (this.#out.length >= MAX_OUT_LINES) this.#out.shift(); // the oldest is the stalest
    this.#out.push(encoder.encode(line + "\n"));
    this.#flush();
  }

  /** Writes queued lines, each whole (a line under PIPE_BUF goes into a pipe at once or not at all). */
  #flush(): void {
    while (this.#out.length > 0) {
      const n = libc.write(STDOUT, this.#out[0]!);
      if (n === -libc.E.EINTR) continue;
      if (n === -libc.E.EAGAIN) return; // full: the next tick tries again
      if (n < 0) {
        this.#gone = true; // EPIPE: the watchdog is gone; stdin's EOF ends the child
        this.#out.length = 0;
        return;
      }
      if (n < this.#out[0]!.length) this.#out[0] = this.#out[0]!.subarray(n);
      else this.#out.shift();
    }
  }
}

/**
 * Tells the watchdog, on the control channel, the error this process is about
 * to exit with (one line; called by `main.ts` for a supervised role). Written
 * synchronously: the process exits right after.
 */
export function reportError(text: string): void {
  try {
    Deno.stdout.writeSync(encoder.encode(`error ${oneLine(text)}\n`));
  } catch { /* the watchdog is gone: nobody to tell */ }
}

/** `text` on one line of at most 500 characters (control lines are lines). */
function oneLine(text: string): string {
  const flat = text.replace(/\s*[\r\n]+\s*/g, " ");
  return flat.length > 500 ? `${flat.slice(0, 497)}...` : flat;
}

/** A line a child sent, as the watchdog reads it. */
export type ChildLine =
  | {
    readonly kind: "pong"; /** The ping it answers (and every one before); NaN: the latest. */
    readonly seq: number;
  }
  | { readonly kind: "ready"; readonly detail: string }
  | { readonly kind: "retiring"; readonly detail: string }
  | { readonly kind: "linked"; readonly up: boolean; readonly detail: string }
  | { readonly kind: "error"; readonly text: string }
  | { readonly kind: "other"; readonly line: string };

/** Parses one line from a child (the table above). */
export function parseChildLine(line: string): ChildLine {
  const space = line.indexOf(" ");
  const verb = space < 0 ? line : line.slice(0, space);
  const rest = space < 0 ? "" : line.slice(space + 1);
  switch (verb) {
    case "pong":
      return { kind: "pong", seq: rest === "" ? NaN : Number(rest) };
    case "ready":
      return { kind: "ready", detail: rest };
    case "retiring":
      return { kind: "retiring", detail: rest };
    case "linked":
    case "unlinked":
      return { kind: "linked", up: verb === "linked", detail: rest };
    case "error":
      return { kind: "error", text: rest };
  }
  return { kind: "other", line };
}

/** Splits a byte stream into lines (LF, CR dropped). */
export async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, nl).replace(/\r$/, "");
      pending = pending.slice(nl + 1);
    }
  }
  if (pending) yield pending;
}

/** Watchdog side of one child's channel. */
export class ParentControl {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #closed = false;

  constructor(stdin: WritableStream<Uint8Array>) {
    this.#writer = stdin.getWriter();
    this.#writer.closed.catch(() => {
      this.#closed = true;
    });
  }

  /** False once the child's stdin is closed (it exited, or never read it): nothing sent arrives. */
  get open(): boolean {
    return !this.#closed;
  }

  /** Sends one order; false when the child's stdin is closed. */
  async send(line: "drain" | "stop" | `ping ${number}` | `secret ${string}`): Promise<boolean> {
    if (this.#closed) return false;
    try {
      await this.#writer.write(encoder.encode(line + "\n"));
      return true;
    } catch {
      this.#closed = true;
      return false;
    }
  }

  /** Closes the child's stdin (its lifeline). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#writer.close();
    } catch { /* child already gone */ }
  }
}
