/**
 * A hostile TCP client for tests: raw sockets that are reset (SO_LINGER 0)
 * instead of closed, at any stage of a connection, as a client that yanks its
 * cable or is killed does.
 */
import * as libc from "../../mod/sys/libc.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A raw connection whose {@link Rst.reset} sends RST. */
export class Rst {
  readonly fd: number;
  #got = "";

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Connects (blocking connect on loopback completes at once). */
  static connect(port: number, host = "127.0.0.1"): Rst {
    return new Rst(libc.abortiveConnect(host, port));
  }

  /** Writes `text` (no LF added). */
  send(text: string): void {
    const b = enc.encode(text);
    for (let off = 0; off < b.length;) {
      const n = libc.write(this.fd, b.subarray(off) as Uint8Array<ArrayBuffer>);
      if (n <= 0) return; // the server closed: fine, we only want to be rude
      off += n;
    }
  }

  /** Waits (at most `timeoutMs`) until `lines` whole lines have arrived; returns everything read. */
  async waitLines(lines: number, timeoutMs = 5_000): Promise<string[]> {
    const until = performance.now() + timeoutMs;
    const buf = new Uint8Array(4096);
    while (this.#got.split("\n").length - 1 < lines && performance.now() < until) {
      const ready = await libc.pollWait([this.fd], Math.max(1, Math.round(until - performance.now())));
      if (ready.length === 0) continue;
      const n = libc.readNow(this.fd, buf);
      if (n <= 0) break;
      this.#got += dec.decode(buf.subarray(0, n));
    }
    return this.#got.split("\n").filter((l) => l !== "");
  }

  /** Closes with RST. */
  reset(): void {
    libc.close(this.fd);
  }
}
