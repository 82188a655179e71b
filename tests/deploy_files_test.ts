/**
 * The deployment files docs/DEPLOY.md shows (docs/deploy/): the compose file
 * and the Kubernetes example parse (npm `yaml`), say what osps needs (ports,
 * volume, probes, the store, the join address), and their osps settings load
 * as osps loads them; podman-compose turns the compose file into podman
 * commands (run against a stand-in podman that records them).
 */
import assert from "node:assert/strict";
import YAML from "yaml";
import { parseCommandLine } from "../mod/cli/cli.ts";
import { loadWatchdogConfig } from "../mod/ops/config_file.ts";
import { missingProgram } from "./support/requires.ts";

const DEPLOY = new URL("../docs/deploy/", import.meta.url).pathname;

// deno-lint-ignore no-explicit-any
type Doc = any;

/** Loads the watchdog's settings from `toml` and `args` (after `watchdog`) as `osps watchdog` does. */
function load(toml: string, args: string[]) {
  const dir = Deno.makeTempDirSync({ prefix: "osps-deploy-" });
  try {
    Deno.writeTextFileSync(`${dir}/osps.toml`, toml);
    const argv = args.map((a) => a.replace(/^--config=.*$/, `--config=${dir}/osps.toml`));
    const cmd = parseCommandLine(["watchdog", ...argv]);
    return loadWatchdogConfig({ flags: cmd.flags, given: cmd.given });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("the image's osps.toml loads: every address, metrics for probes from outside, the chat data in the volume", () => {
  const cfg = load(Deno.readTextFileSync(`${DEPLOY}osps.toml`), ["--config=x"]);
  assert.equal(cfg.host, "0.0.0.0");
  assert.equal(cfg.workers, 2);
  assert.ok(cfg.chat.dataDir.startsWith("/var/lib/osps/"));
  const container = Deno.readTextFileSync(new URL("../Containerfile", import.meta.url));
  assert.match(container, /^VOLUME \["\/var\/lib\/osps"\]$/m);
  assert.match(
    container,
    /^EXPOSE 2222 2223 2224 2225 6667 9464$/m,
    "dispatcher, 2 workers, spare, IRC, metrics",
  );
});

Deno.test("compose.yaml: osps with PostgreSQL as its chat store, its ports, volume and healthy database first", () => {
  const doc: Doc = YAML.parse(Deno.readTextFileSync(`${DEPLOY}compose.yaml`));
  const { osps, postgres } = doc.services;
  assert.deepEqual(osps.depends_on, { postgres: { condition: "service_healthy" } });
  assert.equal(postgres.healthcheck.test[1], "pg_isready");
  assert.deepEqual(osps.volumes, ["osps-data:/var/lib/osps"]);
  assert.ok(osps.ports.includes("2222-2225:2222-2225"), "the dispatcher, its workers and the spare slot");
  const [verb, ...args] = osps.command as string[];
  assert.equal(verb, "watchdog");
  const cfg = load(Deno.readTextFileSync(`${DEPLOY}osps.toml`), args);
  const store = new URL(cfg.chat.store.replace(/^postgres:/, "http:"));
  assert.equal(store.hostname, "postgres", "the database service's name");
  assert.equal(store.password, postgres.environment.POSTGRES_PASSWORD);
  assert.equal(store.username, postgres.environment.POSTGRES_USER);
  assert.equal(store.pathname, `/${postgres.environment.POSTGRES_DB}`);
});

const noCompose = await missingProgram("podman-compose", "version");
if (noCompose) console.log(`compose file check by podman-compose skipped: ${noCompose}`);

Deno.test({
  name: "podman-compose turns compose.yaml into the podman commands that run osps and PostgreSQL",
  ignore: noCompose !== "",
  async fn() {
    const dir = Deno.makeTempDirSync({ prefix: "osps-compose-" });
    try {
      // A stand-in podman: records each call (nothing is created), answers the version check.
      Deno.writeTextFileSync(
        `${dir}/podman`,
        `#!/bin/sh\nprintf '%s\\n' "$*" >> ${dir}/calls\ncase "$1" in version|--version) echo "podman version 4.3.1";; esac\n`,
        { mode: 0o755 },
      );
      const o = await new Deno.Command("podman-compose", {
        args: ["--podman-path", `${dir}/podman`, "-f", `${DEPLOY}compose.yaml`, "up", "-d"],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
      assert.equal(o.code, 0, said);
      const runs = Deno.readTextFileSync(`${dir}/calls`).split("\n").filter((l) => l.startsWith("run "));
      assert.equal(runs.length, 2, said);
      const osps = runs.find((r) => r.includes("localhost/osps:latest"))!;
      assert.match(osps, / -p 2222-2225:2222-2225 .* -p 127\.0\.0\.1:9464:9464 /);
      assert.match(osps, / -v [\w-]*osps-data:\/var\/lib\/osps /);
      assert.match(
        osps,
        /localhost\/osps:latest watchdog --config=\/etc\/osps\/osps\.toml --irc-port=6667 --store=/,
      );
      assert.ok(runs.some((r) => /postgres:16-bookworm$/.test(r)));
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("kubernetes.yaml: the dispatcher's Deployment and Service, workers-only pods joining it, probes on /readyz and /healthz", () => {
  const docs: Doc[] = YAML.parseAllDocuments(Deno.readTextFileSync(`${DEPLOY}kubernetes.yaml`)).map((d) => {
    assert.deepEqual(d.errors, []);
    return d.toJS();
  });
  const byName = (kind: string, name: string) =>
    docs.find((d) => d.kind === kind && d.metadata.name === name);
  const config = byName("ConfigMap", "osps-config");
  const main = byName("Deployment", "osps");
  const workers = byName("Deployment", "osps-workers");
  const service = byName("Service", "osps");
  assert.ok(config && main && workers && service);
  assert.equal(main.spec.replicas, 1, "one dispatcher");
  assert.equal(main.spec.strategy.type, "Recreate", "never two dispatchers at once");

  for (const d of [main, workers]) {
    const pod = d.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, 10001, "the image's user");
    const c = pod.containers[0];
    const metrics = c.ports.find((p: Doc) => p.name === "metrics");
    assert.equal(metrics.containerPort, 9464);
    assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
    assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
    assert.deepEqual(d.spec.selector.matchLabels, d.spec.template.metadata.labels);
    // The settings each pod runs with load as osps loads them.
    const [verb, ...args] = c.args as string[];
    assert.equal(verb, "watchdog");
    const file = args.find((a) => a.startsWith("--config="))!.split("/").pop()!;
    const cfg = load(
      config.data[file],
      args.map((a) => a.replace("$(POD_IP)", "10.1.2.3")),
    );
    assert.equal(cfg.secretFile, "/run/osps/secret");
    const copy = pod.initContainers[0].command.join(" ");
    assert.match(copy, /install -m 0600 \S+ \/run\/osps\/secret/, "a secret file of its own user, mode 0600");
    if (d === main) {
      assert.equal(cfg.linkPort, 2300);
      assert.equal(cfg.host, "0.0.0.0");
    } else {
      assert.deepEqual(cfg.join, { host: "osps", port: 2300 }, "the dispatcher's Service, link port");
      assert.equal(cfg.host, "10.1.2.3", "its workers announce the pod's address");
      assert.equal(c.env[0].valueFrom.fieldRef.fieldPath, "status.podIP");
    }
  }
  // The Service carries the dispatcher, the main pod's workers and spare slot, and the link port.
  assert.deepEqual(service.spec.selector, main.spec.template.metadata.labels);
  assert.deepEqual(
    service.spec.ports.map((p: Doc) => p.port),
    [2222, 2223, 2224, 2225, 2300, 9464],
  );
});
