/** Secret files for link tests and the hosts benchmark. */

/** Writes `text` (default: 72 random characters) to a new temporary file of mode `mode`; returns its path. */
export function secretFile(text = crypto.randomUUID().repeat(2) + "\n", mode = 0o600): string {
  const path = Deno.makeTempFileSync({ prefix: "osps-secret-" });
  Deno.writeTextFileSync(path, text, { mode });
  Deno.chmodSync(path, mode); // the umask may have taken bits off
  return path;
}
