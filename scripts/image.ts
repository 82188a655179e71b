/**
 * `deno task image`: builds the osps container image from the Containerfile
 * with podman.
 *
 *   deno task image [--base IMAGE] [--tag NAME]
 *
 * The image's base is a build argument. By default it is a Debian made here
 * with Debian's debootstrap and imported into podman
 * (`localhost/osps-debian:bookworm`, with tini): no image registry is needed,
 * and it is made once per machine and kept (podman's image store is the
 * cache; `podman rmi` it to make it again). Any public Debian-like image works
 * too: `--base docker.io/library/debian:bookworm-slim`.
 *
 * Deno inside the image is the pinned Deno this runs on, with a module cache
 * holding every npm package deno.lock pins (scripts/deno_dir.ts), staged in
 * `dist/image/`: the build and the container never reach npm. Prints the
 * build time and the image's size.
 * @module
 */
import { parseArgs } from "node:util";
import { fillDenoDir } from "./deno_dir.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** The base `deno task image` makes with debootstrap when no other is given. */
export const LOCAL_BASE = "localhost/osps-debian:bookworm";
/** The Debian release of {@link LOCAL_BASE}. */
const SUITE = "bookworm";
const dec = new TextDecoder();

/** Runs a command; throws with its stderr when it fails. */
async function must(cmd: string, args: string[], what: string): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
  if (!o.success) {
    const said = (dec.decode(o.stdout) + dec.decode(o.stderr)).trim().split("\n").slice(-30).join("\n");
    throw new Error(`${what} failed (${cmd} exited ${o.code}):\n${said}`);
  }
  return dec.decode(o.stdout);
}

async function imageExists(name: string): Promise<boolean> {
  return (await new Deno.Command("podman", {
    args: ["image", "exists", name],
    stdout: "null",
    stderr: "null",
  })
    .output()).success;
}

/** The Debian mirror apt uses here (debootstrap's default otherwise). */
function mirror(): string {
  try {
    const sources = Deno.readTextFileSync("/etc/apt/sources.list.d/debian.sources");
    const uri = /^URIs:\s*(\S+\/debian)\s*$/m.exec(sources)?.[1];
    if (uri) return uri;
  } catch { /* not deb822 */ }
  return "http://deb.debian.org/debian";
}

/**
 * Makes {@link LOCAL_BASE} unless podman has it: debootstrap (minbase, with
 * tini and bash's /dev/tcp for the HEALTHCHECK), apt's caches and the
 * documentation removed, imported as one layer.
 */
export async function ensureLocalBase(): Promise<"kept" | "made"> {
  if (await imageExists(LOCAL_BASE)) return "kept";
  if (Deno.uid() !== 0) {
    throw new Error(
      `making the Debian base ${LOCAL_BASE} needs root (debootstrap); or give a public one: ` +
        `deno task image --base docker.io/library/debian:${SUITE}-slim`,
    );
  }
  const dir = Deno.makeTempDirSync({ dir: "/var/tmp", prefix: "osps-debootstrap-" });
  try {
    const target = `${dir}/root`;
    console.log(`making the Debian base ${LOCAL_BASE} with debootstrap (${SUITE}, ${mirror()}; once)`);
    await must(
      "debootstrap",
      ["--variant=minbase", "--include=tini", SUITE, target, mirror()],
      "debootstrap",
    );
    for (const junk of ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"]) {
      await must("find", [`${target}/${junk}`, "-mindepth", "1", "-delete"], `cleaning ${junk}`);
    }
    await must("tar", ["-C", target, "-cf", `${dir}/root.tar`, "."], "tar");
    await must(
      "podman",
      ["import", "--change", 'CMD ["/bin/bash"]', `${dir}/root.tar`, LOCAL_BASE],
      "podman import",
    );
    return "made";
  } finally {
    await must("rm", ["-rf", "--one-file-system", dir], "removing the debootstrap tree");
  }
}

/** Stages what the Containerfile copies from `dist/image/`: the pinned Deno and the module cache. */
export async function stage(): Promise<void> {
  const dir = `${ROOT}/dist/image`;
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* not there */ }
  Deno.mkdirSync(dir, { recursive: true });
  try {
    Deno.linkSync(Deno.realPathSync(Deno.execPath()), `${dir}/deno`);
  } catch {
    Deno.copyFileSync(Deno.execPath(), `${dir}/deno`);
  }
  await fillDenoDir(`${dir}/deno_dir`);
}

/** Builds the image `tag` on `base` (the image it replaces is removed); resolves to its size in bytes. */
export async function build(base: string, tag: string): Promise<number> {
  const idOf = (name: string) => must("podman", ["image", "inspect", "--format", "{{.Id}}", name], "inspect");
  const before = (await imageExists(tag)) ? (await idOf(tag)).trim() : "";
  await must(
    "podman",
    [
      "build",
      "--isolation",
      "chroot",
      "--format",
      "docker", // OCI images have no HEALTHCHECK
      "--build-arg",
      `BASE=${base}`,
      "--pull=never",
      "--layers=false", // no intermediate images: each build would leave ~250 MB of them
      "-f",
      `${ROOT}/Containerfile`,
      "-t",
      tag,
      ROOT,
    ],
    "podman build",
  );
  if (before && before !== (await idOf(tag)).trim()) {
    await new Deno.Command("podman", { args: ["rmi", before], stdout: "null", stderr: "null" }).output();
  }
  return Number((await must("podman", ["image", "inspect", "--format", "{{.Size}}", tag], "inspect")).trim());
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      base: { type: "string", default: LOCAL_BASE },
      tag: { type: "string", default: "localhost/osps:latest" },
    },
  });
  try {
    const t0 = performance.now();
    if (values.base === LOCAL_BASE) {
      const base = await ensureLocalBase();
      console.log(`base ${LOCAL_BASE}: ${base} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }
    const t1 = performance.now();
    await stage();
    const size = await build(values.base, values.tag);
    console.log(
      `built ${values.tag} on ${values.base} in ${((performance.now() - t1) / 1000).toFixed(1)} s: ` +
        `${(size / 2 ** 20).toFixed(0)} MiB`,
    );
  } catch (err) {
    console.error(`osps image: ${(err as Error).message}`);
    Deno.exit(1);
  }
}
