/**
 * The HTTP API's request types against a live instance (`--http-port`):
 * the contract (`/v1/openapi.json`, valid OpenAPI 3.1, and every response
 * of these tests valid against it), answers and their headers, the line
 * protocol's refusals as problem+json, and the ticketed types' failures:
 * a request past its deadline is 504, one that kills its worker is 500 with
 * the dispatcher's account, and the worker holding the connection survives.
 */
import assert from "node:assert/strict";
import { freePorts, osps, waitFor, withInstance } from "./harness.ts";
import { ApiContract } from "./support/openapi_contract.ts";

/** Sends a request and checks its answer against the contract; returns status, headers and body. */
async function call(
  api: ApiContract,
  base: string,
  method: string,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; headers: Headers; body: unknown }> {
  const res = await fetch(`${base}${path}`, { method, ...init });
  const headers = res.headers;
  const body = await api.check(method, path, res);
  return { status: res.status, headers, body };
}

Deno.test("the HTTP API serves request types with the line protocol's answers, under a valid OpenAPI 3.1 contract", async () => {
  const httpPort = freePorts(1);
  const base = `http://127.0.0.1:${httpPort}`;
  await withInstance({ workers: 2, flags: [`--http-port=${httpPort}`] }, async () => {
    const api = await ApiContract.load(base);
    const paths = Object.keys(api.doc["paths"] as object);
    assert.ok(paths.includes("/v1/requests/{type}"), `paths: ${paths.join(", ")}`);

    // POST text: the result as text; headers say which worker ran it, how long, and the request's id.
    const echo = await call(api, base, "POST", "/v1/requests/echo", {
      body: "hello, world",
      headers: { "content-type": "text/plain", "x-request-id": "my-id-1" },
    });
    assert.equal(echo.status, 200);
    assert.equal(echo.body, "hello, world");
    assert.equal(echo.headers.get("x-request-id"), "my-id-1");
    assert.match(echo.headers.get("x-worker")!, /^[12]$/);
    assert.match(echo.headers.get("server-timing")!, /^queue;dur=[\d.]+, run;dur=[\d.]+$/);

    // POST JSON: JSON back; a generated request id when none (or a bad one) was sent.
    const upper = await call(api, base, "POST", "/v1/requests/upper", {
      body: JSON.stringify({ arg: "abc é" }),
      headers: { "content-type": "application/json", "x-request-id": "bad id with spaces" },
    });
    assert.deepEqual({ ...(upper.body as object), worker: "?" }, {
      result: "ABC É",
      type: "upper",
      worker: "?",
    });
    assert.match(upper.headers.get("x-request-id")!, /^[0-9a-f-]{36}$/);

    // GET for the types that change nothing; a line break travels in HTTP (it cannot in a line).
    const get = await call(api, base, "GET", `/v1/requests/sha256?arg=${encodeURIComponent("abc")}`);
    assert.equal(get.body, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const lines = await call(api, base, "POST", "/v1/requests/echo", { body: "a\nb" });
    assert.equal(lines.body, "a\nb");
    const curlDefault = await call(api, base, "POST", "/v1/requests/echo", {
      body: "a=b&c",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(curlDefault.body, "a=b&c", "curl -d's default type is taken as text, not form-decoded");

    // A ticketed type runs through the dispatcher on a worker (sleep), with the queue's time.
    const slept = await call(api, base, "POST", "/v1/requests/sleep", { body: "20" });
    assert.equal(slept.body, "slept 20");

    // Refusals: problem+json, the line protocol's own texts, the osps code beside the HTTP status.
    const unknown = await call(api, base, "POST", "/v1/requests/nope", { body: "x" });
    assert.equal(unknown.status, 404);
    assert.match(
      (unknown.body as { detail: string }).detail,
      /^unknown request type "nope"; known: chat, echo, fib, hold, sha256, sleep, stats, time, upper$/,
    );
    assert.equal(unknown.headers.get("content-type"), "application/problem+json");
    const badNumber = await call(api, base, "POST", "/v1/requests/fib", { body: "-5" });
    assert.equal(badNumber.status, 400);
    assert.deepEqual(
      { ...(badNumber.body as object) },
      {
        type: "about:blank",
        title: "Bad Request",
        status: 400,
        detail: 'fib takes a whole number from 0 to 78, got "-5"',
        osps_code: 400,
      },
    );
    const timeArg = await call(api, base, "GET", "/v1/requests/time?arg=x");
    assert.equal((timeArg.body as { detail: string }).detail, "time takes no argument");
    const holdByGet = await call(api, base, "GET", "/v1/requests/hold?arg=1");
    assert.equal(holdByGet.status, 405);
    assert.equal(holdByGet.headers.get("allow"), "POST");
    const chat = await call(api, base, "POST", "/v1/requests/chat", { body: "alice" });
    assert.equal(chat.status, 400);
    const xml = await call(api, base, "POST", "/v1/requests/echo", {
      body: "<a/>",
      headers: { "content-type": "application/xml" },
    });
    assert.equal(xml.status, 415);
    const badJson = await call(api, base, "POST", "/v1/requests/echo", {
      body: JSON.stringify({ arg: "x", extra: 1 }),
      headers: { "content-type": "application/json" },
    });
    assert.equal(badJson.status, 400);
    const badType = await call(api, base, "POST", "/v1/requests/Bad!", { body: "x" });
    assert.equal(badType.status, 400);
    assert.ok(api.checked >= 14);

    const nowhere = await fetch(`${base}/v2/requests/echo`, { method: "POST", body: "x" });
    assert.equal(nowhere.status, 404);
    assert.equal(nowhere.headers.get("content-type"), "application/problem+json");
    await nowhere.body?.cancel();
  });
});

for (const concurrency of [1, 32]) {
  Deno.test(`a ticketed request past its deadline is 504, one that blocks its worker is 500 with why; the connection's worker answers (--worker-concurrency ${concurrency})`, async () => {
    const httpPort = freePorts(1);
    const base = `http://127.0.0.1:${httpPort}`;
    await withInstance({
      workers: 2,
      flags: [
        `--http-port=${httpPort}`,
        `--worker-concurrency=${concurrency}`,
        "--request-timeout-for=sleep:300",
        "--heartbeat-ms=100",
        "--hang-timeout-ms=1000",
        "--quarantine-kills=0",
      ],
    }, async (inst) => {
      const api = await ApiContract.load(base);
      // With one place per worker the connection's worker is full while it asks again, so the request waits
      // for the other one even while it restarts. With more, it runs elsewhere when another worker has a free
      // place: here, once the one killed last serves again.
      const otherServes = () =>
        concurrency > 1 &&
        waitFor("both workers serving", async () =>
          (await inst.status()).workers.every((w) => w.state === "ready"));
      // Several times each: whichever worker accepts the HTTP connection, the request runs on the other one.
      for (let i = 0; i < 3; i++) {
        await otherServes();
        const late = await call(api, base, "POST", "/v1/requests/sleep", { body: "5000" });
        assert.equal(late.status, 504, JSON.stringify(late.body));
        assert.match(
          (late.body as { detail: string }).detail,
          /^worker \d was killed: "sleep 5000" ran past its 300 ms deadline$/,
        );
        await otherServes();
        const hung = await call(api, base, "POST", "/v1/requests/fib", { body: "60" });
        assert.equal(hung.status, 500, JSON.stringify(hung.body));
        assert.match(
          (hung.body as { detail: string }).detail,
          /^worker \d was killed: "fib 60" blocked it past the 1000 ms hang timeout$/,
        );
      }
    });
  });
}

Deno.test("the ready line, osps status and the status page show the HTTP API", async () => {
  const [httpPort, metricsPort] = [freePorts(1), freePorts(1)];
  await withInstance(
    { workers: 1, flags: [`--http-port=${httpPort}`, `--metrics-port=${metricsPort}`] },
    async (inst) => {
      assert.match(inst.readyLine, new RegExp(` http=127\\.0\\.0\\.1:${httpPort} `));
      const table = await osps(["status", `--run-dir=${inst.runDir}`]);
      assert.match(table.stdout, new RegExp(`^http: http-port=${httpPort} http-host=127\\.0\\.0\\.1 `, "m"));
      const json = JSON.parse((await osps(["status", "--json", `--run-dir=${inst.runDir}`])).stdout);
      assert.equal(json.http["http-port"], httpPort);
      const page = await (await fetch(`http://127.0.0.1:${metricsPort}/`)).text();
      assert.match(page, new RegExp(`<a href="http://127\\.0\\.0\\.1:${httpPort}/v1/openapi\\.json">`));
    },
  );
});

Deno.test("the fast path and Hono answer /v1/requests alike; CORS answers only the allowed origin", async () => {
  const httpPort = freePorts(1);
  const base = `http://127.0.0.1:${httpPort}`;
  const origin = "http://app.example";
  await withInstance(
    { workers: 1, flags: [`--http-port=${httpPort}`, `--http-cors-origin=${origin}`] },
    async () => {
      const api = await ApiContract.load(base);
      const cases: Array<[string, string, RequestInit]> = [
        ["POST", "/v1/requests/echo", { body: "same", headers: { "content-type": "text/plain" } }],
        ["POST", "/v1/requests/upper", {
          body: '{"arg":"x"}',
          headers: { "content-type": "application/json" },
        }],
        ["POST", "/v1/requests/upper", {
          body: '{"arg":1}',
          headers: { "content-type": "application/json" },
        }],
        ["POST", "/v1/requests/upper", { body: "{nope", headers: { "content-type": "application/json" } }],
        ["POST", "/v1/requests/echo", { body: "<x/>", headers: { "content-type": "application/xml" } }],
        ["POST", "/v1/requests/echo", {
          body: new Uint8Array([0xff, 0xfe]),
          headers: { "content-type": "text/plain" },
        }],
        ["POST", "/v1/requests/Nope", { body: "x", headers: { "content-type": "text/plain" } }],
        ["POST", "/v1/requests/nope", { body: "x", headers: { "content-type": "text/plain" } }],
        ["POST", "/v1/requests/fib", { body: "-1", headers: { "content-type": "text/plain" } }],
        ["GET", "/v1/requests/hold?arg=1", {}],
        ["GET", "/v1/requests/upper?arg=a&arg=b", {}],
        ["GET", "/v1/requests/time?arg=x", {}],
        ["GET", "/v1/requests/echo?arg=%C3%A9", { headers: { accept: "application/json" } }],
      ];
      for (const [method, path, init] of cases) {
        const answers = [];
        for (const viaHono of [false, true]) {
          const headers = {
            ...(init.headers as Record<string, string> ?? {}),
            ...(viaHono ? { origin } : {}),
          };
          const res = await fetch(`${base}${path}`, { method, ...init, headers });
          const h = res.headers;
          const body = await api.check(method, path, res);
          answers.push({ status: res.status, type: h.get("content-type"), allow: h.get("allow"), body });
          assert.equal(h.get("access-control-allow-origin"), viaHono ? origin : null, `${method} ${path}`);
        }
        assert.deepEqual(answers[0], answers[1], `${method} ${path}: both dispatchers answer alike`);
      }
      const preflight = await fetch(`${base}/v1/requests/echo`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type",
        },
      });
      await preflight.body?.cancel();
      assert.equal(preflight.headers.get("access-control-allow-origin"), origin);
      const other = await fetch(`${base}/v1/requests/time`, { headers: { origin: "http://evil.example" } });
      await other.body?.cancel();
      assert.equal(
        other.headers.get("access-control-allow-origin"),
        null,
        "another origin gets no CORS grant",
      );
    },
  );
});

Deno.test("osps reload under HTTP load: every worker replaced, no request lost, a slow request answered", async () => {
  const httpPort = freePorts(1);
  const base = `http://127.0.0.1:${httpPort}`;
  await withInstance({ workers: 2, flags: [`--http-port=${httpPort}`] }, async (inst) => {
    const before = (await inst.status()).workers.map((w) => w.pid);
    // A ticketed request that outlives the reload, and 8 clients on kept-alive connections throughout.
    const slow = fetch(`${base}/v1/requests/sleep`, { method: "POST", body: "3000" }).then(async (r) => ({
      status: r.status,
      body: await r.text(),
    }));
    let stop = false, ok = 0;
    const failures: string[] = [];
    const client = async (i: number) => {
      while (!stop) {
        // A kept-alive connection the server closed while idle is what any HTTP client retries once.
        for (let attempt = 0; attempt < 2; attempt++) {
          try {
            const r = await fetch(`${base}/v1/requests/echo?arg=${i}`);
            const text = await r.text();
            if (r.status === 200 && text === String(i)) ok++;
            else failures.push(`${r.status} ${text}`);
            break;
          } catch (err) {
            if (attempt === 1) failures.push(String(err));
          }
        }
      }
    };
    const clients = Array.from({ length: 8 }, (_, i) => client(i));
    await new Promise((r) => setTimeout(r, 300));
    const reload = await osps(["reload", `--run-dir=${inst.runDir}`]);
    assert.equal(reload.code, 0, reload.stderr);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(await slow, { status: 200, body: "slept 3000" });
    assert.deepEqual(failures, []);
    assert.ok(ok > 50);
    const after = (await inst.status()).workers.map((w) => w.pid);
    assert.ok(after.every((p) => !before.includes(p)), "every worker was replaced");
  });
});
