/**
 * Runs a built container image the way a container runtime would, without
 * one (these machines cannot start containers: `crun: cgroups in hybrid mode
 * not supported`): the image's filesystem (`podman image mount`, read-only)
 * as the root (`chroot`), in a pid namespace of its own where the image's
 * entrypoint is PID 1 (`unshare --pid --fork`), a mount namespace with what
 * a runtime provides (proc, a small /dev, /dev/shm, a writable /tmp and /run,
 * an empty volume), a network namespace the test made, and the image's user,
 * environment, working directory, entrypoint and command from its config.
 * @module
 */

/** What `podman image inspect` says about running the image. */
export interface ImageConfig {
  readonly User: string;
  readonly Env: string[];
  readonly WorkingDir: string;
  readonly Entrypoint: string[];
  readonly Cmd: string[];
  readonly Volumes: Record<string, unknown>;
}

const dec = new TextDecoder();

async function output(cmd: string, args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!o.success) throw new Error(`${cmd} ${args.join(" ")}: ${dec.decode(o.stderr)}`);
  return dec.decode(o.stdout).trim();
}

/** The image's run config and its HEALTHCHECK command (`["CMD", …]`). */
export async function inspectImage(image: string): Promise<{ config: ImageConfig; healthcheck: string[] }> {
  const config = JSON.parse(
    await output("podman", ["image", "inspect", "--format", "{{json .Config}}", image]),
  );
  const health = JSON.parse(
    await output("podman", ["image", "inspect", "--format", "{{json .Config.Healthcheck}}", image]),
  );
  return { config, healthcheck: health?.Test ?? [] };
}

/** A mounted image: its root directory; dispose to unmount. */
export async function mountImage(image: string): Promise<{ root: string } & AsyncDisposable> {
  const root = await output("podman", ["image", "mount", image]);
  return {
    root,
    async [Symbol.asyncDispose]() {
      await output("podman", ["image", "unmount", image]).catch(() => "");
    },
  };
}

/** `sh -c` text quoting one word. */
function q(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The command that starts the image at `root` as its config says (`args`
 * replace its CMD when given), prefixed by `wrap` (e.g. `ip netns exec NS`).
 * Its process is `unshare`, whose one child is the entrypoint, PID 1 inside.
 */
export function containerCommand(
  root: string,
  config: ImageConfig,
  wrap: string[],
  args?: string[],
): string[] {
  const [uid = "0", gid = uid] = config.User.split(":");
  const volumes = Object.keys(config.Volumes ?? {});
  const mounts = [
    `mount -t proc proc ${q(`${root}/proc`)}`,
    `mount -t tmpfs -o mode=0755,size=1m dev ${q(`${root}/dev`)}`,
    ...["null", "zero", "random", "urandom", "full", "tty"].map((d) =>
      `touch ${q(`${root}/dev/${d}`)} && mount --bind /dev/${d} ${q(`${root}/dev/${d}`)}`
    ),
    `mkdir -p ${q(`${root}/dev/shm`)} && mount -t tmpfs -o mode=1777 shm ${q(`${root}/dev/shm`)}`,
    `mount -t tmpfs -o mode=1777 tmp ${q(`${root}/tmp`)}`,
    `mount -t tmpfs -o mode=0755 run ${q(`${root}/run`)}`,
    // A fresh volume, owned by the image's user as a runtime makes it from the image's directory.
    ...volumes.map((v) => `mount -t tmpfs -o mode=0700,uid=${uid},gid=${gid} volume ${q(`${root}${v}`)}`),
  ];
  const entry = [...config.Entrypoint, ...(args ?? config.Cmd)];
  const inner = `cd ${q(config.WorkingDir || "/")} && exec env -i ${config.Env.map(q).join(" ")} ${
    entry.map(q).join(" ")
  }`;
  return [
    ...wrap,
    "unshare",
    "--pid",
    "--fork",
    "--kill-child", // whatever ends unshare ends the container (its PID 1, and with it every process in it)
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    `set -e; ${mounts.join("; ")}; exec chroot --userspec=${uid}:${gid} ${q(root)} /bin/sh -c ${q(inner)}`,
  ];
}
