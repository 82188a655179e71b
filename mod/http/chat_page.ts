/**
 * The web chat page (`/`, also `/chat`): one small HTML page with its
 * script inline, no build step. It speaks IRC over the WebSocket at
 * `/v1/irc` (as gamja or Kiwi IRC do with ergo), so a person in a browser is
 * a user of the same chat as irssi users: a nickname, a channel joined, its
 * history (CHATHISTORY), messages both ways, and others arriving and
 * leaving, live. Everything shown is set as text, never as markup; a
 * Content-Security-Policy allows only this page's own script and style, and
 * connections to its own server.
 * @module
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { ApiEnv } from "./api_schemas.ts";

const STYLE = `
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; display: flex; flex-direction: column; height: 100vh; }
header { padding: .5em 1em; background: #234; color: #fff; display: flex; gap: 1em; align-items: center; }
header a { color: #9cf; }
form#join { display: flex; gap: .5em; }
main { flex: 1; display: flex; min-height: 0; }
#log { flex: 1; overflow-y: auto; margin: 0; padding: .5em 1em; list-style: none; }
#log li { white-space: pre-wrap; word-break: break-word; }
#log li.event { color: #666; font-style: italic; }
#log li.history { opacity: .75; }
#log li.error { color: #b00; }
#log .nick { font-weight: bold; }
#log time { color: #999; font-size: 85%; margin-right: .5em; }
aside { width: 12em; border-left: 1px solid #ccc; padding: .5em; overflow-y: auto; }
aside ul { list-style: none; padding: 0; margin: 0; }
form#say { display: flex; border-top: 1px solid #ccc; }
form#say input { flex: 1; font: inherit; padding: .6em; border: 0; }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
const log = $("log"), members = new Map();
let ws = null, nick = "", channel = "", joined = false;

function time(at) {
  const t = document.createElement("time");
  const d = at ? new Date(at) : new Date();
  t.textContent = d.toTimeString().slice(0, 5);
  return t;
}
function show(kind, who, text, at, extra) {
  const li = document.createElement("li");
  li.className = kind + (extra ? " " + extra : "");
  li.dataset.kind = kind;
  li.append(time(at));
  if (who !== null) {
    const n = document.createElement("span");
    n.className = "nick";
    n.textContent = kind === "message" ? "<" + who + "> " : who + " ";
    li.append(n);
    li.dataset.nick = who;
  }
  li.append(document.createTextNode(text));
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(li);
  if (atBottom) log.scrollTop = log.scrollHeight;
}
function drawMembers() {
  const ul = $("members");
  ul.replaceChildren(...[...members.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([n, p]) => {
    const li = document.createElement("li");
    li.textContent = p + n;
    li.dataset.nick = n;
    return li;
  }));
}
// One IRC line: [@tags] [:prefix] COMMAND params… [:trailing]
function parse(line) {
  let rest = line, tags = {}, prefix = "";
  if (rest.startsWith("@")) {
    const sp = rest.indexOf(" ");
    for (const kv of rest.slice(1, sp).split(";")) {
      const i = kv.indexOf("=");
      tags[i < 0 ? kv : kv.slice(0, i)] = i < 0 ? "" : kv.slice(i + 1);
    }
    rest = rest.slice(sp + 1);
  }
  if (rest.startsWith(":")) {
    const sp = rest.indexOf(" ");
    prefix = rest.slice(1, sp);
    rest = rest.slice(sp + 1);
  }
  const params = [];
  while (rest.length) {
    if (rest.startsWith(":")) { params.push(rest.slice(1)); break; }
    const sp = rest.indexOf(" ");
    if (sp < 0) { params.push(rest); break; }
    params.push(rest.slice(0, sp));
    rest = rest.slice(sp + 1).replace(/^ +/, "");
  }
  const command = params.shift().toUpperCase();
  return { tags, prefix, who: prefix.split("!")[0], command, params };
}
const send = (line) => ws && ws.readyState === 1 && ws.send(line);
const same = (a, b) => a.toLowerCase() === b.toLowerCase();

function onLine(line) {
  const m = parse(line);
  const [a = "", b = "", c = ""] = m.params;
  const at = m.tags.time;
  const history = m.tags.batch !== undefined;
  switch (m.command) {
    case "PING": return send("PONG :" + a);
    case "CAP":
      if (b === "LS") send("CAP REQ :server-time batch draft/chathistory");
      else if (b === "ACK" || b === "NAK") send("CAP END");
      return;
    case "001": nick = a; $("state").textContent = "connected as " + nick; send("JOIN " + channel); return;
    case "433": show("error", null, "nickname " + b + " is taken: pick another", at, "error"); ws.close(); return;
    case "353": for (const n of (m.params[3] || "").split(" ").filter(Boolean)) {
      const p = /^[@+]/.test(n) ? n[0] : "";
      members.set(p ? n.slice(1) : n, p);
    } drawMembers(); return;
    case "366":
      if (!joined) { joined = true; send("CHATHISTORY LATEST " + channel + " * 50"); $("text").focus(); }
      return;
    case "332": show("event", null, "topic: " + c, at); return;
    case "JOIN":
      if (same(m.who, nick)) { show("event", null, "you joined " + a, at); members.clear(); return; }
      members.set(m.who, ""); drawMembers(); show("event", m.who, "joined " + a, at, "arrival"); return;
    case "PART": members.delete(m.who); drawMembers(); show("event", m.who, "left " + a + (b ? " (" + b + ")" : ""), at, "departure"); return;
    case "QUIT": if (members.delete(m.who)) { drawMembers(); show("event", m.who, "quit (" + a + ")", at, "departure"); } return;
    case "KICK": members.delete(b); drawMembers(); show("event", m.who, "kicked " + b + " (" + c + ")", at, "departure"); return;
    case "NICK": if (members.has(m.who)) { const p = members.get(m.who); members.delete(m.who); members.set(a, p); drawMembers(); }
      if (same(m.who, nick)) nick = a; show("event", m.who, "is now " + a, at); return;
    case "TOPIC": show("event", m.who, "set the topic: " + b, at); return;
    case "PRIVMSG": case "NOTICE":
      if (same(a, channel)) show("message", m.who, b, at, history ? "history" : "");
      else if (same(a, nick)) show("message", m.who, "(private) " + b, at);
      return;
    case "ERROR": show("error", null, a, at, "error"); return;
    case "FAIL": show("error", null, m.params.slice(2).join(" "), at, "error"); return;
  }
  if (/^[45][0-9][0-9]$/.test(m.command) && m.command !== "422") show("error", null, m.params.slice(1).join(" "), at, "error");
}

$("join").addEventListener("submit", (e) => {
  e.preventDefault();
  if (ws) ws.close();
  nick = $("nick").value.trim();
  channel = $("channel").value.trim();
  if (!channel.startsWith("#")) channel = "#" + channel;
  joined = false;
  members.clear();
  drawMembers();
  log.replaceChildren();
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/irc";
  ws = new WebSocket(url, ["text.ircv3.net"]);
  $("state").textContent = "connecting…";
  ws.onopen = () => { send("CAP LS 302"); send("NICK " + nick); send("USER " + nick.slice(0, 10) + " 0 * :web chat"); };
  ws.onmessage = (e) => onLine(String(e.data));
  ws.onclose = () => { $("state").textContent = "disconnected"; ws = null; };
});
// Leaving the page leaves the chat at once (a page kept in the back/forward cache would keep its socket).
addEventListener("pagehide", () => { if (ws) ws.close(1000, "page closed"); });
$("say").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!text || !joined) return;
  send("PRIVMSG " + channel + " :" + text.replace(/[\\r\\n]+/g, " "));
  show("message", nick, text, null, "mine");
  $("text").value = "";
});
`;

async function sha256(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(d)));
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>osps chat</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <strong>osps chat</strong>
  <form id="join">
    <input id="nick" placeholder="nickname" required maxlength="30" pattern="[A-Za-z\\[\\]\\\\\`_^{|}][A-Za-z0-9\\[\\]\\\\\`_^{|}-]*">
    <input id="channel" value="#osps" required maxlength="50">
    <button>join</button>
  </form>
  <span id="state">not connected</span>
  <a href="/v1/openapi.json">API</a>
</header>
<main>
  <ul id="log" aria-live="polite"></ul>
  <aside><strong>here</strong><ul id="members"></ul></aside>
</main>
<form id="say"><input id="text" placeholder="say something" autocomplete="off" maxlength="400"></form>
<script>${SCRIPT}</script>
</body>
</html>
`;

const CSP = Promise.all([sha256(SCRIPT), sha256(STYLE)]).then(([script, style]) =>
  `default-src 'none'; script-src 'sha256-${script}'; style-src 'sha256-${style}'; connect-src 'self'; ` +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
);

/** The page's routes (outside `/v1`: it is not part of the API). */
export function pageRoutes(): OpenAPIHono<ApiEnv> {
  const app = new OpenAPIHono<ApiEnv>();
  const page = async () =>
    new Response(PAGE, {
      headers: {
        "content-type": "text/html; charset=utf-8",
        "content-security-policy": await CSP,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
      },
    });
  app.get("/", page);
  app.get("/chat", page);
  return app;
}
