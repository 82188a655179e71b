/**
 * The instance secret the TCP worker link authenticates with: a file, mode
 * 0600 (no access for group or others), owned by the user, holding at least
 * 32 random bytes (`osps secret > FILE` makes one). During a rotation the
 * file may hold a second line, the previous secret: a dispatcher accepts
 * workers proving either, a worker proves the first (docs/DEPLOY.md). It is read through libc on
 * an fd opened without following links and checked on that very fd (no
 * window between check and read), and is never put on a command line: the
 * watchdog hands it to its children over their private control channel.
 * @module
 */
import * as libc from "../sys/libc.ts";
import { UsageError } from "../errors.ts";

/** Fewest bytes a secret may have. */
export const MIN_SECRET_BYTES = 32;

/** A new secret: 32 random bytes as 64 hex digits. */
export function newSecret(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

/**
 * Reads and checks a secret file; throws {@link UsageError} saying what is
 * wrong and how to mend it. Returns the current secret, then the previous one
 * when the file holds two lines (a rotation in progress).
 */
export function readSecret(path: string): Uint8Array[] {
  const fd = libc.tryOpen(path, libc.O.RDONLY | libc.O.NOFOLLOW);
  if (fd < 0) {
    throw new UsageError(
      `cannot open the secret file "${path}": errno ${-fd} (it must be a regular file, not a link)`,
    );
  }
  try {
    const st = libc.fstat(fd);
    if ((st.mode & 0o170000) !== 0o100000) {
      throw new UsageError(`the secret file "${path}" is not a regular file`);
    }
    if (st.uid !== libc.getuid()) {
      throw new UsageError(
        `the secret file "${path}" belongs to uid ${st.uid}, not to this user (uid ${libc.getuid()})`,
      );
    }
    if ((st.mode & 0o077) !== 0) {
      throw new UsageError(
        `the secret file "${path}" is mode ${
          (st.mode & 0o777).toString(8)
        }: others may read it; run chmod 600 "${path}"`,
      );
    }
    const buf = new Uint8Array(4096);
    let n = 0;
    for (;;) {
      const got = libc.readNow(fd, buf.subarray(n) as Uint8Array<ArrayBuffer>);
      if (got === -libc.E.EINTR) continue;
      if (got <= 0 || (n += got) === buf.length) break;
    }
    const lines = new TextDecoder().decode(buf.subarray(0, n)).split("\n").map((l) => l.trim()).filter((l) =>
      l
    );
    if (lines.length === 0 || lines.length > 2) {
      throw new UsageError(
        `the secret file "${path}" must hold one secret, or two during a rotation (new, then old)`,
      );
    }
    return lines.map((line) => {
      const secret = new TextEncoder().encode(line);
      if (secret.length < MIN_SECRET_BYTES) {
        throw new UsageError(
          `the secret file "${path}" holds ${secret.length} bytes; it needs at least ${MIN_SECRET_BYTES} random ones ` +
            `(osps secret > "${path}")`,
        );
      }
      return secret;
    });
  } finally {
    libc.close(fd);
  }
}
