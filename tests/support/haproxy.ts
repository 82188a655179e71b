/**
 * Debian's HAProxy as a real proxy in front of an instance's ports, sending
 * the PROXY protocol: a config written to a temp dir, `haproxy -db` in the
 * foreground (no daemon, nothing of the system's touched), stopped by
 * `stop()`. Returns a string saying why when HAProxy is not installed.
 */

/** One frontend: HAProxy listens on 127.0.0.1:`listen` and relays to 127.0.0.1:`to`. */
export interface Relay {
  readonly listen: number;
  readonly to: number;
  /** PROXY protocol version HAProxy sends to `to`. */
  readonly version: 1 | 2;
}

/** A running HAProxy. */
export interface Haproxy {
  stop(): Promise<void>;
  /** What it printed so far (errors, warnings). */
  output(): string;
}

/** Where HAProxy is, or null. */
function haproxyPath(): string | null {
  for (const p of ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not there */ }
  }
  return null;
}

/**
 * Starts HAProxy relaying each of `relays`, its connections to the instance
 * coming from `source` (an address of the loopback network), and waits until
 * every frontend accepts connections.
 */
export async function startHaproxy(relays: readonly Relay[], source: string): Promise<Haproxy | string> {
  const bin = haproxyPath();
  if (!bin) return "haproxy is not installed (apt-get install haproxy; .ci/run installs it)";
  const dir = Deno.makeTempDirSync({ prefix: "osps-haproxy-" });
  const config = [
    "global",
    "  maxconn 256",
    "defaults",
    "  mode tcp",
    "  timeout connect 5s",
    "  timeout client 60s",
    "  timeout server 60s",
    ...relays.flatMap((r, i) => [
      `frontend f${i}`,
      `  bind 127.0.0.1:${r.listen}`,
      `  default_backend b${i}`,
      `backend b${i}`,
      `  server s${i} 127.0.0.1:${r.to} ${r.version === 1 ? "send-proxy" : "send-proxy-v2"} source ${source}`,
    ]),
    "",
  ].join("\n");
  Deno.writeTextFileSync(`${dir}/haproxy.cfg`, config);
  const child = new Deno.Command(bin, {
    args: ["-db", "-f", `${dir}/haproxy.cfg`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const collect = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) text += chunk;
  };
  const collected = Promise.all([collect(child.stdout), collect(child.stderr)]);
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await collected;
    Deno.removeSync(dir, { recursive: true });
  };
  for (const r of relays) {
    for (let tries = 0;; tries++) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: r.listen })).close();
        break;
      } catch {
        if (tries > 200) {
          await stop();
          throw new Error(`haproxy did not listen on ${r.listen}:\n${text}`);
        }
        await new Promise((res) => setTimeout(res, 25));
      }
    }
  }
  return { stop, output: () => text };
}
