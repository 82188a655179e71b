/**
 * Signals an osps process must not react to the runtime's way.
 *
 * Deno (2.9.2 and later, as Node.js does) starts a V8 inspector on
 * 127.0.0.1:9229 when a process gets SIGUSR1, even when the program listens
 * for SIGUSR1 itself. Any local user can connect to that port and run code
 * inside the process, with its permissions and its unscoped FFI: a routine
 * `kill -USR1` (logrotate, a process-group signal) would hand the osps user
 * to everyone on the host. So every long-running osps process drops SIGUSR1
 * at the kernel level ({@link dropSignal}), and the watchdog reopens its log
 * file on SIGUSR2 instead.
 * @module
 */
import { ignoreSignal, SIG } from "./libc.ts";

/**
 * Makes the kernel drop `sig` for this process: neither the runtime's own
 * reaction (SIGUSR1's inspector) nor its default action (death) happens.
 * The runtime's handler is installed first (a listener), so that it cannot
 * be installed later over the kernel's "ignore".
 */
export function dropSignal(sig: "SIGUSR1" | "SIGUSR2"): void {
  Deno.addSignalListener(sig, () => {});
  ignoreSignal(SIG[sig]);
}
