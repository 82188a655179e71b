/**
 * The first step of `deno task test`: the Debian packages some tests drive
 * for real (a browser, a terminal, an IRC server, a database, network
 * namespaces, the container image tools). Whatever `dpkg-query` says is
 * missing is installed with apt-get when this runs as root on Debian; where it
 * cannot be (not root, no apt-get, apt failed) it says so, and the tests that
 * need it say they are skipped and why. Never fails the run by itself.
 *
 * `deno task test` runs it as
 * `deno run --allow-run=dpkg-query,apt-get,systemctl --allow-sys=uid scripts/test_deps.ts`.
 * @module
 */

/** A Debian package and the tests that need it. */
export interface TestDep {
  readonly pkg: string;
  readonly for: string;
}

/** What the tests need beyond Deno, by package. */
export const TEST_DEPS: readonly TestDep[] = [
  { pkg: "chromium", for: "tests/status_page_test.ts (the status page in a browser)" },
  { pkg: "fonts-dejavu-core", for: "tests/status_page_test.ts (text in the browser)" },
  { pkg: "tmux", for: "tests/status_watch_test.ts (a real terminal)" },
  { pkg: "irssi", for: "tests/http_page_test.ts (the web page chatting with irssi, in tmux)" },
  { pkg: "ngircd", for: "tests/bench_quick_test.ts (the chat benchmark's reference server)" },
  { pkg: "postgresql", for: "tests/chat_postgres_test.ts (the chat on PostgreSQL)" },
  { pkg: "gcc", for: "tests/bench_quick_test.ts (the benchmark's C FIFO reference)" },
  { pkg: "libc6-dev", for: "tests/bench_quick_test.ts (the C reference's headers)" },
  { pkg: "haproxy", for: "tests/proxy_protocol_test.ts (the PROXY protocol through a real HAProxy)" },
  { pkg: "iproute2", for: "tests/multihost*_test.ts (hosts as network namespaces)" },
  { pkg: "util-linux", for: "tests/multihost*_test.ts, tests/image_test.ts (unshare, nsenter)" },
  { pkg: "podman", for: "tests/image_test.ts (builds the container image)" },
  { pkg: "debootstrap", for: "tests/image_test.ts (the image's local Debian base)" },
  { pkg: "podman-compose", for: "tests/deploy_files_test.ts (checks the compose file)" },
  { pkg: "curl", for: "tests/http_doc_test.ts (docs/HTTP.md's curl lines, run as typed)" },
  { pkg: "wrk", for: "tests/bench_quick_test.ts (the HTTP benchmark's keep-alive load)" },
];

const dec = new TextDecoder();

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  try {
    const o = await new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" })
      .output();
    return { ok: o.success, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
  } catch (err) {
    return { ok: false, out: "", err: (err as Error).message };
  }
}

/** The packages of `deps` that `dpkg-query` does not show as installed (all of them without dpkg). */
export async function missing(deps: readonly TestDep[]): Promise<{ missing: TestDep[]; dpkg: boolean }> {
  const q = await run("dpkg-query", [
    "-W",
    "-f=${Package} ${db:Status-Status}\\n",
    ...deps.map((d) => d.pkg),
  ]);
  if (!q.out && !/no packages found/.test(q.err)) return { missing: [...deps], dpkg: false };
  const installed = new Set(
    q.out.split("\n").filter((l) => l.endsWith(" installed")).map((l) => l.split(" ")[0]),
  );
  return { missing: deps.filter((d) => !installed.has(d.pkg)), dpkg: true };
}

function say(line: string): void {
  console.log(`test deps: ${line}`);
}

function skipped(deps: readonly TestDep[], why: string): void {
  say(`${deps.map((d) => d.pkg).join(", ")} not installed (${why}); these tests will say they are skipped:`);
  for (const d of deps) say(`  ${d.pkg}: ${d.for}`);
}

if (import.meta.main) {
  const { missing: lacking, dpkg } = await missing(TEST_DEPS);
  if (lacking.length === 0) Deno.exit(0);
  const names = lacking.map((d) => d.pkg);
  if (!dpkg) skipped(lacking, "this is not Debian: no dpkg-query");
  else if (Deno.uid() !== 0) skipped(lacking, `not root; as root: apt-get install ${names.join(" ")}`);
  else {
    say(`installing ${names.join(", ")} from Debian (apt-get; once per machine)`);
    const apt = { DEBIAN_FRONTEND: "noninteractive" };
    const update = await run("apt-get", ["update", "-q"], apt);
    const install = update.ok
      ? await run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...names], apt)
      : update;
    if (!install.ok) {
      skipped(lacking, `apt-get failed: ${install.err.trim().split("\n").slice(-2).join(" ")}`);
    }
    // These packages start their own daemons (IRC on port 6667, a proxy); the tests start theirs.
    for (const daemon of ["ngircd", "haproxy"]) {
      if (names.includes(daemon)) await run("systemctl", ["disable", "--now", daemon]);
    }
    const still = (await missing(lacking)).missing;
    if (install.ok && still.length) skipped(still, "apt-get did not install them");
  }
}
