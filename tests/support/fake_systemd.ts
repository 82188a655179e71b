/**
 * A datagram socket the test owns, standing in for systemd's notify socket
 * (`$NOTIFY_SOCKET`): what a watchdog sends arrives here, one message each.
 */
import { bindUnix, close, readNow, unixDatagramSocket } from "../../mod/sys/libc.ts";

/** A bound datagram socket collecting what is sent to it. */
export class FakeSystemd implements Disposable {
  readonly path: string;
  readonly #dir: string;
  readonly #fd: number;
  readonly messages: string[] = [];

  constructor() {
    this.#dir = Deno.makeTempDirSync({ prefix: "osps-notify-" });
    this.path = `${this.#dir}/notify`;
    this.#fd = unixDatagramSocket();
    bindUnix(this.#fd, this.path);
  }

  /** Reads every datagram waiting (one read is one datagram). */
  drain(): string[] {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = readNow(this.#fd, buf);
      if (n <= 0) break;
      this.messages.push(new TextDecoder().decode(buf.subarray(0, n)));
    }
    return this.messages;
  }

  [Symbol.dispose](): void {
    close(this.#fd);
    Deno.removeSync(this.#dir, { recursive: true });
  }
}
