/**
 * systemd's notify protocol (`sd_notify(3)`), for `Type=notify` units: one
 * datagram per message to the unix socket named by `$NOTIFY_SOCKET`
 * (`READY=1`, `STATUS=…`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1`). With
 * `WatchdogSec=`, systemd sets `$WATCHDOG_USEC` and expects `WATCHDOG=1` at
 * least that often; osps sends it every half of it from the watchdog's event
 * loop, so a hung watchdog stops sending and systemd restarts it.
 *
 * Sending never blocks and never throws: a notify socket that is gone or full
 * costs a message, not the watchdog.
 * @module
 */
import { close, monotonicMs, sendToUnix, unixDatagramSocket } from "../sys/libc.ts";

/** Reads an environment variable; undefined when unset or not permitted. */
export type EnvReader = (name: string) => string | undefined;

/** `Deno.env.get`, treating a variable the process may not read as unset. */
export const denoEnv: EnvReader = (name) => {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env for it: this process is not run by systemd's notify
  }
};

const encoder = new TextEncoder();

/**
 * A connection to systemd's notify socket.
 * @example
 * ```ts
 * using n = SdNotifier.fromEnv();
 * n?.ready("serving on 127.0.0.1:2222");
 * ```
 */
export class SdNotifier implements Disposable {
  readonly #path: string;
  #fd: number;
  /** How often to send `WATCHDOG=1` (half of `$WATCHDOG_USEC`), or null when systemd does not watch. */
  readonly keepaliveMs: number | null;
  #lastKeepalive = -Infinity;
  #lastStatus = "";

  private constructor(path: string, keepaliveMs: number | null) {
    this.#path = path;
    this.#fd = unixDatagramSocket();
    this.keepaliveMs = keepaliveMs;
  }

  /**
   * The notifier systemd asked for, or null when `$NOTIFY_SOCKET` is unset.
   * `$WATCHDOG_USEC` applies only when `$WATCHDOG_PID` is unset or this process.
   */
  static fromEnv(env: EnvReader = denoEnv): SdNotifier | null {
    const path = env("NOTIFY_SOCKET");
    if (!path || !(path.startsWith("/") || path.startsWith("@"))) return null;
    const usec = Number(env("WATCHDOG_USEC") ?? 0);
    const forPid = env("WATCHDOG_PID");
    const watched = usec > 0 && (!forPid || Number(forPid) === Deno.pid);
    return new SdNotifier(path, watched ? Math.max(1, Math.floor(usec / 2000)) : null);
  }

  /** Sends one message (lines `KEY=value`); false when it could not be delivered. */
  send(...lines: string[]): boolean {
    if (this.#fd < 0) return false;
    const n = sendToUnix(this.#fd, this.#path, encoder.encode(lines.join("\n")));
    return n >= 0;
  }

  /** `READY=1`, with a status text. */
  ready(status: string): boolean {
    this.#lastStatus = status;
    return this.send("READY=1", `STATUS=${status}`);
  }

  /** `STATUS=…`, only when it differs from the last one sent. */
  status(text: string): boolean {
    if (text === this.#lastStatus) return false;
    this.#lastStatus = text;
    return this.send(`STATUS=${text}`);
  }

  /** `RELOADING=1` with the monotonic time systemd (`Type=notify-reload`) wants; follow with {@link ready}. */
  reloading(status = "reloading"): boolean {
    this.#lastStatus = status;
    return this.send("RELOADING=1", `MONOTONIC_USEC=${Math.round(monotonicMs() * 1000)}`, `STATUS=${status}`);
  }

  /** `STOPPING=1`, with the reason. */
  stopping(status: string): boolean {
    this.#lastStatus = status;
    return this.send("STOPPING=1", `STATUS=${status}`);
  }

  /** `WATCHDOG=1` when half of `$WATCHDOG_USEC` has passed since the last one (`now`: monotonic ms). */
  keepalive(now: number): boolean {
    if (this.keepaliveMs === null || now - this.#lastKeepalive < this.keepaliveMs) return false;
    this.#lastKeepalive = now;
    return this.send("WATCHDOG=1");
  }

  /** Closes the socket. */
  [Symbol.dispose](): void {
    if (this.#fd >= 0) close(this.#fd);
    this.#fd = -1;
  }
}
