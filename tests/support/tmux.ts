/**
 * A program in a real terminal: a detached tmux session on a socket of its
 * own, driven with keys and read from the screen, for tests that play a
 * person at a terminal (`osps status --watch`, irssi).
 * @module
 */

async function tmux(socket: string, ...args: string[]): Promise<string> {
  const o = await new Deno.Command("tmux", {
    args: ["-S", socket, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!o.success) throw new Error(`tmux ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  return new TextDecoder().decode(o.stdout);
}

/** One shell word. */
export function shellQuote(a: string): string {
  return `'${a.replace(/'/g, `'\\''`)}'`;
}

/** A terminal running one command. Dispose to end it and remove its socket. */
export class Terminal implements AsyncDisposable {
  readonly #dir: string;
  readonly #socket: string;
  readonly #session: string;

  private constructor(dir: string, session: string) {
    this.#dir = dir;
    this.#socket = `${dir}/sock`;
    this.#session = session;
  }

  /** Starts `command` (a shell command line) in a `cols`×`rows` terminal. */
  static async start(command: string, cols = 160, rows = 20): Promise<Terminal> {
    const dir = Deno.makeTempDirSync({ prefix: "osps-tmux-" });
    const t = new Terminal(dir, `osps-${Deno.pid}`);
    await tmux(
      t.#socket,
      "new-session",
      "-d",
      "-s",
      t.#session,
      "-x",
      String(cols),
      "-y",
      String(rows),
      command,
    );
    return t;
  }

  /** Types `keys` (tmux key names: "Enter", "C-c", or literal text). */
  async keys(...keys: string[]): Promise<void> {
    await tmux(this.#socket, "send-keys", "-t", this.#session, ...keys);
  }

  /** Types a line of text literally, then Enter. */
  async type(line: string): Promise<void> {
    await tmux(this.#socket, "send-keys", "-t", this.#session, "-l", line);
    await this.keys("Enter");
  }

  /** What the screen shows now. */
  screen(): Promise<string> {
    return tmux(this.#socket, "capture-pane", "-p", "-t", this.#session);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await tmux(this.#socket, "kill-server").catch(() => "");
    Deno.removeSync(this.#dir, { recursive: true });
  }
}
