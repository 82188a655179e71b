/**
 * Posting to a channel over HTTP as a chat account (the accounts IRC's
 * NickServ and SASL use): HTTP Basic or a bearer token from /v1/tokens, the
 * channel's modes as for an IRC user, the message reaching IRC users and
 * event streams with the account, tokens revoked. Every answer is checked
 * against the OpenAPI document.
 */
import assert from "node:assert/strict";
import { freePorts } from "./harness.ts";
import { withChat } from "./support/chat_instance.ts";
import { LibClient } from "./support/irc.ts";
import { ApiContract } from "./support/openapi_contract.ts";
import { SseReader } from "./support/http_clients.ts";

/** The chat's account service is there (it came with the chat's accounts work, issue 17). */
const ACCOUNTS = (() => {
  try {
    return Deno.statSync(new URL("../mod/chat/accounts.ts", import.meta.url)).isFile;
  } catch {
    return false;
  }
})();

async function register(port: number, nick: string, password: string): Promise<LibClient> {
  const c = await LibClient.connect(port, nick);
  c.raw(`PRIVMSG NickServ :REGISTER ${password}`);
  await c.waitLine(
    "Account created",
    (m) => m.command === "NOTICE" && /Account created/.test(m.params[1] ?? ""),
  );
  return c;
}

Deno.test({
  name:
    "an account posts over HTTP with Basic or a bearer token; IRC users and event streams get it; +n holds",
  ignore: !ACCOUNTS,
}, async () => {
  const httpPort = freePorts(1);
  const base = `http://127.0.0.1:${httpPort}`;
  await withChat(
    { workers: 2, flags: [`--http-port=${httpPort}`, "--irc-flood-rate=0"] },
    async (_inst, place) => {
      const api = await ApiContract.load(base);
      const call = async (method: string, path: string, init: RequestInit = {}) => {
        const res = await fetch(`${base}${path}`, { method, ...init });
        const headers = res.headers;
        return {
          status: res.status,
          headers,
          body: await api.check(method, path, res) as Record<string, unknown>,
        };
      };
      const alice = await register(place.ircPort, "alice", "alice-password-1");
      await alice.join("#room");
      const bob = await LibClient.connect(place.ircPort, "bob");
      await bob.join("#room");
      const carol = await register(place.ircPort, "carol", "carol-password-1");
      const reader = await SseReader.open(`${base}/v1/channels/room/events`);
      const basic = (who: string, pw: string) => ({ authorization: `Basic ${btoa(`${who}:${pw}`)}` });

      const none = await call("POST", "/v1/tokens");
      assert.equal(none.status, 401);
      assert.match(none.headers.get("www-authenticate")!, /Basic realm="osps".*Bearer/);
      const wrong = await call("POST", "/v1/tokens", { headers: basic("alice", "not-her-password") });
      assert.equal(wrong.status, 401);
      const nobody = await call("POST", "/v1/tokens", { headers: basic("nobody", "whatever-1") });
      assert.equal(nobody.status, 401);
      assert.equal(nobody.body["detail"], wrong.body["detail"], "no answer says whether an account exists");
      const issued = await call("POST", "/v1/tokens", {
        headers: { ...basic("alice", "alice-password-1"), "content-type": "application/json" },
        body: JSON.stringify({ label: "test", ttl_seconds: 3600 }),
      });
      assert.equal(issued.status, 201);
      assert.equal(issued.body["account"], "alice");
      const token = issued.body["token"] as string;
      const bearer = { authorization: `Bearer ${token}` };

      const posted = await call("POST", "/v1/channels/room/messages", {
        headers: { ...bearer, "content-type": "text/plain" },
        body: "hello from HTTP",
      });
      assert.equal(posted.status, 201, JSON.stringify(posted.body));
      assert.equal(posted.body["nick"], "alice");
      assert.equal(posted.body["account"], "alice");
      await bob.waitLine(
        "alice's HTTP post",
        (m) => m.command === "PRIVMSG" && m.nick === "alice" && m.params[1] === "hello from HTTP",
      );
      const seen = await reader.waitEvent("the post", (e) => e.data["text"] === "hello from HTTP");
      assert.equal(seen.id, String(posted.body["seq"]));
      const byBasic = await call("POST", "/v1/channels/%23room/messages", {
        headers: { ...basic("alice", "alice-password-1"), "content-type": "application/json" },
        body: JSON.stringify({ text: "a notice", notice: true }),
      });
      assert.equal(byBasic.status, 201);
      await bob.waitLine("the notice", (m) => m.command === "NOTICE" && m.params[1] === "a notice");

      // The channel's modes, as for an IRC user: carol is not in +n #room; one line only; no such channel.
      const outsider = await call("POST", "/v1/channels/room/messages", {
        headers: { ...basic("carol", "carol-password-1"), "content-type": "text/plain" },
        body: "let me in",
      });
      assert.equal(outsider.status, 403);
      assert.match(outsider.body["detail"] as string, /\+n/);
      const twoLines = await call("POST", "/v1/channels/room/messages", {
        headers: { ...bearer, "content-type": "text/plain" },
        body: "one\r\nPRIVMSG #room :two",
      });
      assert.equal(twoLines.status, 400);
      const nowhere = await call("POST", "/v1/channels/nowhere/messages", {
        headers: { ...bearer, "content-type": "text/plain" },
        body: "x",
      });
      assert.equal(nowhere.status, 404);

      // Revoked: the token no longer works.
      const revoked = await call("DELETE", "/v1/tokens/current", { headers: bearer });
      assert.equal(revoked.status, 204);
      const after = await call("POST", "/v1/channels/room/messages", {
        headers: { ...bearer, "content-type": "text/plain" },
        body: "too late",
      });
      assert.equal(after.status, 401);
      await reader.close();
      await Promise.all([alice.quit(), bob.quit(), carol.quit()]);
    },
  );
});
