/**
 * A peer on the link port that is not one of the instance's workers, run on a
 * host of its own (a network namespace) by the multi-host tests:
 *
 * - `flood <addr> <port> <per-second>`: opens that many connections a second
 *   and never sends a byte, holding each until the dispatcher closes it;
 *   prints `opened <n> closed <n>` every second, until its stdin closes;
 * - `claim <addr> <port> <secret-file> <identity JSON>`: completes the
 *   handshake with the secret while claiming that identity, and prints what
 *   the dispatcher answered (`WELCOME`, or `REFUSED <reason>`), then a second
 *   line `kept` or `closed` saying whether the link stayed up for a second.
 * @module
 */
import { readSecret } from "../../mod/link/secret.ts";
import { Frame, hmac, jsonPayload, LinkChannel, parseJson } from "../../mod/link/link_wire.ts";

const [mode, addr, portText, ...rest] = Deno.args;
const port = Number(portText);
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => Uint8Array.from(s.match(/../g)!, (h) => parseInt(h, 16));

async function flood(perSecond: number): Promise<void> {
  let opened = 0, closed = 0, stop = false;
  const hold = async () => {
    try {
      const c = await Deno.connect({ hostname: addr!, port });
      opened++;
      const buf = new Uint8Array(4096);
      while ((await c.read(buf).catch(() => null)) !== null) { /* read what it says, send nothing */ }
      c.close();
    } catch { /* refused at the TCP level: counts as closed */ }
    closed++;
  };
  const timer = setInterval(() => {
    for (let i = 0; i < perSecond / 10; i++) void hold();
  }, 100);
  const report = setInterval(() => console.log(`opened ${opened} closed ${closed}`), 1_000);
  void (async () => {
    for await (const _ of Deno.stdin.readable) { /* until closed */ }
    stop = true;
  })();
  while (!stop) await new Promise((r) => setTimeout(r, 100));
  clearInterval(timer);
  clearInterval(report);
  Deno.exit(0);
}

async function claim(secretFile: string, who: string): Promise<void> {
  const [secret] = readSecret(secretFile);
  const ch = new LinkChannel(await Deno.connect({ hostname: addr!, port }));
  const hello = parseJson((await ch.read(5_000))!);
  const nonceW = crypto.getRandomValues(new Uint8Array(32));
  const mac = hmac(secret!, "osps-link/2 worker proof", unhex(String(hello.nonce)), nonceW, who);
  ch.send(Frame.AUTH, jsonPayload({ v: "osps-link/2", nonce: hex(nonceW), who, mac: hex(mac) }));
  const answer = (await ch.read(5_000))!;
  const welcome = answer.type === Frame.WELCOME;
  console.log(welcome ? "WELCOME" : `REFUSED ${String(parseJson(answer).reason ?? "")}`);
  if (welcome) ch.key(hmac(secret!, "osps-link/2 session", unhex(String(hello.nonce)), nonceW), "worker");
  // Refused after the handshake (a keyed REFUSED) or closed: "closed"; still up a second later: "kept".
  const next = await ch.read(1_000).then(
    (f) => f === null || f.type === Frame.REFUSED ? "closed" : "kept",
    (err) => /silent/.test(String(err)) ? "kept" : "closed",
  );
  console.log(welcome ? next : "closed");
  ch.close();
  Deno.exit(0);
}

if (mode === "flood") await flood(Number(rest[0]));
else if (mode === "claim") await claim(rest[0]!, rest[1]!);
else throw new Error(`unknown mode ${mode}`);
