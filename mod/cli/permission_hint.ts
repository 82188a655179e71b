/**
 * What to tell a user when Deno denies osps a permission. Deno's own message
 * ends "run again with the --allow-… flag", which the user of the `osps`
 * command or of a compiled binary cannot do: the permissions are fixed by the
 * command (deno.json's `osps` task, baked into the binary), scoped to what
 * each documented command needs. This says what osps may use instead, so the
 * user can pick a path or address that works.
 * @module
 */

const WHERE: Record<string, (what: string) => string> = {
  read: (what) =>
    `osps may not read ${what}: it reads run dirs under /tmp, /run/osps and /run/user (the files --config and ` +
    `--secret-file name are read wherever they are); choose a path there`,
  write: (what) =>
    `osps may not write ${what}: it writes run dirs under /tmp, /run/osps and /run/user, and log files ` +
    `under /var/log/osps (the chat's --data-dir may be anywhere); choose a path there`,
  net: (what) =>
    `osps may not use the address ${what}: the watchdog itself listens on loopback or 0.0.0.0 only ` +
    `(--metrics-host), its dispatcher and workers on exactly their --host, and a client reaches its ` +
    `dispatcher and that dispatcher's worker hosts`,
};

const DENO_SAYS = /Requires (\w+) access to ("[^"]*"|[^,\s]+)(?:, run again with the --allow-\w+ flag)?/g;

/**
 * `message` with each of Deno's "Requires … access to X, run again with the
 * --allow-… flag" replaced by what the user of osps can do instead.
 */
export function withPermissionHints(message: string): string {
  return message.replace(DENO_SAYS, (_all, kind: string, what: string) =>
    WHERE[kind]?.(what) ??
      `osps lacks the ${kind} permission for ${what}, which no documented command needs: please report it`);
}
