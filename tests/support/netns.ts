/**
 * Simulated hosts for tests: Linux network namespaces this test makes itself,
 * joined by a bridge in the root namespace (which the test's own clients use),
 * each with a private address in a subnet of its own. A host can also get a
 * private /dev/shm (a mount namespace with a tmpfs), so it shares nothing with
 * the others but the network. Needs root and iproute2; everything made is
 * removed by `dispose`.
 */
import { getuid } from "../../mod/sys/libc.ts";

const run = async (cmd: string[]): Promise<{ ok: boolean; err: string }> => {
  const o = await new Deno.Command(cmd[0]!, { args: cmd.slice(1), stdout: "null", stderr: "piped" }).output();
  return { ok: o.success, err: new TextDecoder().decode(o.stderr).trim() };
};

async function must(cmd: string[]): Promise<void> {
  const r = await run(cmd);
  if (!r.ok) throw new Error(`${cmd.join(" ")}: ${r.err}`);
}

/** Whether this process can make namespaces, and if not, why (the tests say so when they skip). */
export async function namespacesUsable(): Promise<{ ok: boolean; why: string }> {
  if (getuid() !== 0) return { ok: false, why: "not root: network namespaces need root (CI runs as root)" };
  const probe = `osps-probe-${crypto.randomUUID().slice(0, 6)}`;
  const r = await run(["ip", "netns", "add", probe]).catch((e) => ({ ok: false, err: String(e) }));
  if (!r.ok) return { ok: false, why: `cannot make a network namespace: ${r.err}` };
  await run(["ip", "netns", "del", probe]);
  return { ok: true, why: "" };
}

/** One simulated host. */
export interface Host {
  /** Its network namespace. */
  readonly ns: string;
  /** Its address. */
  readonly addr: string;
  /** The root-side end of its cable (set it down to cut the host off). */
  readonly cable: string;
  /** Prefix that runs a command on this host (in its namespace, and with `privateShm` its own /dev/shm). */
  readonly wrap: string[];
}

/** A bridge and some hosts on it. */
export interface Net extends AsyncDisposable {
  readonly hosts: Host[];
  /** Cuts a host's cable (`up` false) or plugs it back. */
  cable(host: Host, up: boolean): Promise<void>;
}

/** Makes `count` hosts on a fresh bridge; `privateShm` lists the hosts (by index) that get a /dev/shm of their own. */
export async function makeNet(count: number, privateShm: number[] = []): Promise<Net> {
  const tag = crypto.randomUUID().replaceAll("-", "").slice(0, 6);
  const subnet = `10.${77 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250) + 1}`;
  const bridge = `ob${tag}`;
  const hosts: Host[] = [];
  const made: Array<() => Promise<unknown>> = [];
  try {
    await must(["ip", "link", "add", bridge, "type", "bridge"]);
    made.push(() => run(["ip", "link", "del", bridge]));
    await must(["ip", "addr", "add", `${subnet}.1/24`, "dev", bridge]);
    await must(["ip", "link", "set", bridge, "up"]);
    for (let i = 0; i < count; i++) {
      const ns = `osps-${tag}-${i}`,
        cable = `oc${tag}${i}`,
        inner = `oi${tag}${i}`,
        addr = `${subnet}.${i + 2}`;
      await must(["ip", "netns", "add", ns]);
      made.push(() => run(["ip", "netns", "del", ns]));
      await must(["ip", "link", "add", cable, "type", "veth", "peer", "name", inner]);
      made.push(() => run(["ip", "link", "del", cable]));
      await must(["ip", "link", "set", inner, "netns", ns]);
      await must(["ip", "link", "set", cable, "master", bridge, "up"]);
      await must(["ip", "-n", ns, "addr", "add", `${addr}/24`, "dev", inner]);
      await must(["ip", "-n", ns, "link", "set", inner, "up"]);
      await must(["ip", "-n", ns, "link", "set", "lo", "up"]);
      const shm = privateShm.includes(i)
        ? [
          "unshare",
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          'mount -t tmpfs -o mode=1777 osps-shm /dev/shm && exec "$@"',
          "sh",
        ]
        : [];
      hosts.push({ ns, addr, cable, wrap: ["ip", "netns", "exec", ns, ...shm] });
    }
  } catch (err) {
    for (const undo of made.reverse()) await undo();
    throw err;
  }
  return {
    hosts,
    cable: (host, up) => must(["ip", "link", "set", host.cable, up ? "up" : "down"]),
    async [Symbol.asyncDispose]() {
      for (const undo of made.reverse()) await undo();
    },
  };
}

/** Runs a command in the namespaces (network and mount) of a running process, e.g. a host's watchdog. */
export function inNamespacesOf(pid: number): string[] {
  return ["nsenter", `--mount=/proc/${pid}/ns/mnt`, `--net=/proc/${pid}/ns/net`];
}
