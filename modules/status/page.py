"""The status page: one HTML file with its style, script and an SVG chart, nothing loaded from
elsewhere. The first data is written into the page (it shows without a second request); the
page then fetches ``<path>.json`` every ``refresh`` seconds and draws it again."""

from __future__ import annotations

import json
from typing import Any

# the chart's line colours (the browser test looks for them in a screenshot)
COLORS = {"requests": "#1f77b4", "replies_out": "#2ca02c", "replies_in": "#ff7f0e"}

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ksr status</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f3f4f7;color:#1d2330}
header{background:#23395d;color:#fff;padding:10px 20px;display:flex;justify-content:space-between;align-items:baseline}
header b{font-size:18px}
main{padding:14px 20px;display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:14px}
section{background:#fff;border-radius:6px;padding:10px 14px;box-shadow:0 1px 2px rgba(0,0,0,.12)}
.wide{grid-column:1/-1}
h2{font-size:14px;margin:0 0 8px;color:#23395d}
h3{font-size:13px;margin:10px 0 4px;color:#555}
.cards{display:flex;gap:10px;flex-wrap:wrap}
.card{flex:1;min-width:120px;background:#eef2f8;border-radius:6px;padding:6px 10px;color:#555}
.card b{display:block;font-size:24px;color:#1d2330}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{padding:3px 6px;border-bottom:1px solid #e4e6eb;text-align:left;white-space:nowrap}
td.long{white-space:normal;overflow-wrap:anywhere}
th{color:#555;font-weight:600}
.legend span{margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:4px}
.muted{color:#888}
</style></head>
<body>
<header><b>ksr status</b><span id="hdr"></span></header>
<main>
<section class="wide"><div class="cards">
<div class="card">Registered users<b id="registered_users">-</b></div>
<div class="card">Active calls<b id="active_calls">-</b></div>
<div class="card">Ringing calls<b id="ringing_calls">-</b></div>
<div class="card">Transactions<b id="transactions">-</b></div>
<div class="card">Requests received<b id="requests">-</b></div>
<div class="card">Workers<b id="workers">-</b></div>
</div></section>
<section class="wide"><h2>Requests and replies per second, last <span id="minutes"></span> min</h2>
<svg id="chart" viewBox="0 0 900 220" width="100%" height="220" role="img" aria-label="rates"></svg>
<div class="legend">
<span><i style="background:#1f77b4"></i>requests received</span>
<span><i style="background:#2ca02c"></i>replies sent</span>
<span><i style="background:#ff7f0e"></i>replies received</span></div></section>
<section><h2>Listeners</h2><table id="listeners"></table></section>
<section><h2>Script</h2><table id="script"></table>
<h3>Loads and reloads</h3><table id="reloads"></table></section>
<section class="wide"><h2>Last calls (CDRs)</h2><table id="cdrs"></table></section>
</main>
<script>
"use strict";
const PATH = __PATH__;
const REFRESH = __REFRESH__;
const COLORS = __COLORS__;
const NS = "http://www.w3.org/2000/svg";

function fmtTime(t) { return new Date(t * 1000).toISOString().substring(11, 19); }
function fmtUptime(s) {
  s = Math.floor(s); const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600),
    m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + h + "h " + m + "m " + (s % 60) + "s";
}
function table(id, head, rows) {
  const t = document.getElementById(id);
  t.textContent = "";
  const tr = t.insertRow();
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); }
  if (!rows.length) {
    const c = t.insertRow().insertCell(); c.colSpan = head.length; c.className = "muted";
    c.textContent = "none";
  }
  for (const r of rows) {
    const row = t.insertRow();
    for (const v of r) {
      const c = row.insertCell(); c.textContent = v;
      if (String(v).length > 24) c.className = "long";  // file names wrap, figures do not
    }
  }
}
function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function chart(rates) {
  const svg = document.getElementById("chart");
  svg.textContent = "";
  const W = 900, H = 220, L = 48, R = 10, T = 10, B = 26;
  const pts = rates.points;
  let max = 1;
  for (const p of pts) for (let i = 1; i < p.length; i++) max = Math.max(max, p[i]);
  const mag = Math.pow(10, Math.floor(Math.log10(max)));
  const nice = [1, 2, 2.5, 5, 10].map(f => f * mag).find(v => v >= max) || max;
  const x = i => L + (W - L - R) * (pts.length > 1 ? i / (pts.length - 1) : 0);
  const y = v => T + (H - T - B) * (1 - v / nice);
  svg.appendChild(el("rect", {x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fbfcfe", stroke: "#d5d9e0"}));
  for (let k = 0; k <= 4; k++) {
    const v = nice * k / 4, yy = y(v);
    svg.appendChild(el("line", {x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#e4e6eb"}));
    svg.appendChild(el("text", {x: L - 6, y: yy + 4, "text-anchor": "end", "font-size": 11, fill: "#666"},
      String(Math.round(v * 100) / 100)));
  }
  const every = Math.max(1, Math.round(pts.length / 6));
  for (let i = 0; i < pts.length; i += every) {
    svg.appendChild(el("text", {x: x(i), y: H - 8, "text-anchor": "middle", "font-size": 11, fill: "#666"},
      fmtTime(pts[i][0])));
  }
  // requests last: on top where the lines meet (a proxy answers about every request)
  const order = rates.series.map((name, s) => [name, s]).sort((a, b) =>
    (a[0] === "requests") - (b[0] === "requests"));
  for (const [name, s] of order) {
    const line = pts.map((p, i) => x(i).toFixed(1) + "," + y(p[s + 1]).toFixed(1)).join(" ");
    svg.appendChild(el("polyline", {points: line, fill: "none", stroke: COLORS[name],
      "stroke-width": name === "requests" ? 2 : 3, "stroke-linejoin": "round", "data-series": name}));
  }
}
function render(d) {
  const f = d.figures;
  for (const k in f) { const e = document.getElementById(k); if (e) e.textContent = f[k]; }
  document.getElementById("hdr").textContent =
    d.server.version + " | up " + fmtUptime(d.server.uptime) + " | " + fmtTime(d.now) + " UTC";
  document.getElementById("minutes").textContent = Math.round(d.rates.points.length * d.rates.step / 60);
  chart(d.rates);
  table("listeners", ["listener", "advertised"], d.listeners.map(l => [l.socket, l.advertised]));
  table("script", ["worker", "file", "language", "version", "loaded"],
    d.script.map(s => [s.worker, s.file, s.language, s.version, fmtTime(s.loaded_at)]));
  table("reloads", ["time", "worker", "version", "file"],
    d.reloads.map(r => [fmtTime(r.at), r.worker, r.version, r.file]));
  table("cdrs", ["end", "caller", "callee", "status", "duration s", "reason"],
    d.cdrs.map(c => [c.end_time || "", c.caller, c.callee, c.status, c.duration, c.end_reason]));
}
render(__DATA__);
setInterval(() => {
  fetch(PATH + ".json", {cache: "no-store"}).then(r => r.json()).then(render).catch(() => {});
}, REFRESH * 1000);
</script>
</body></html>
"""


def _js(value: Any) -> str:
    """JSON that is safe inside a <script> element."""
    return json.dumps(value).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_page(path: str, refresh: int, data: dict[str, Any]) -> str:
    return (
        _HTML.replace("__PATH__", _js(path))
        .replace("__REFRESH__", str(int(refresh)))
        .replace("__COLORS__", _js(COLORS))
        .replace("__DATA__", _js(data))
    )
