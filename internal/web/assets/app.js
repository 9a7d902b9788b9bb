// pulselake dashboard: follows GET /v1/events (server-sent events) with the token kept in this
// browser's localStorage, and draws live charts on canvases. No external libraries.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const palette = ["#4fb3ff", "#ffb454", "#5ad17a", "#ff6b6b", "#c792ea", "#f78c6c", "#89ddff", "#ffd580", "#a3be8c", "#ff9cac"];
  const windowMs = 5 * 60 * 1000;

  const state = {
    rates: {},            // kind -> [{t, v}]
    hr: new Map(),        // device -> [{t, v}]
    bp: new Map(),        // device -> [{t, s, d}]
    acc: new Map(),       // device -> [{t, v}]
    total: 0, rejected: 0, alerts: new Map(),
    beats: [],            // [{t, cls}] heartbeat predictions of the last window
  };
  const beatClasses = ["N", "S", "V", "F", "Q"];
  const beatNames = { N: "normal", S: "supraventricular", V: "ventricular", F: "fusion", Q: "unknown" };

  function token() { return localStorage.getItem("pulselake-token") || new URLSearchParams(location.hash.slice(1)).get("token"); }

  function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = "status " + (cls || ""); }

  function push(map, key, point, max) {
    let a = map.get(key);
    if (!a) { a = []; map.set(key, a); }
    a.push(point);
    const cut = point.t - windowMs;
    while (a.length && (a[0].t < cut || a.length > max)) a.shift();
    if (map.size > 8) { // keep the 8 most recently active devices
      let oldest = null, when = Infinity;
      for (const [k, v] of map) { const last = v[v.length - 1].t; if (last < when) { when = last; oldest = k; } }
      map.delete(oldest);
    }
  }

  function onReading(r) {
    state.total++;
    const t = Date.parse(r.time), v = r.values || {};
    if (r.kind === "heart_rate") push(state.hr, r.device, { t, v: v.bpm }, 600);
    else if (r.kind === "blood_pressure") push(state.bp, r.device, { t, s: v.systolic, d: v.diastolic }, 300);
    else if (r.kind === "accelerometer") push(state.acc, r.device, { t, v: Math.hypot(v.x, v.y, v.z) }, 600);
    const tb = $("latest");
    const tr = document.createElement("tr");
    const vals = Object.entries(v).filter(([k]) => k !== "samples").map(([k, x]) => k + " " + x).join(", ");
    for (const c of [new Date(t).toLocaleTimeString(), r.subject, r.device, r.kind, vals]) {
      const td = document.createElement("td"); td.textContent = c; tr.appendChild(td);
    }
    tb.insertBefore(tr, tb.firstChild);
    while (tb.children.length > 12) tb.removeChild(tb.lastChild);
  }

  function onSummary(s) {
    const t = Date.parse(s.time);
    let sum = 0;
    for (const [kind, n] of Object.entries(s.readings || {})) {
      sum += n;
      (state.rates[kind] = state.rates[kind] || []).push({ t, v: n });
    }
    for (const a of Object.values(state.rates)) while (a.length && a[0].t < t - windowMs) a.shift();
    state.rejected += s.rejected || 0;
    $("rate").textContent = sum.toLocaleString();
    $("rejected").textContent = state.rejected.toLocaleString();
    $("total").textContent = state.total.toLocaleString();
  }

  function onRejected(r) {
    const e = (r.errors || [])[0] || {};
    listItem("rejects", e.code || "?", (e.path || "") + " via " + r.source + (r.origin ? " " + r.origin : ""), e.message || "");
  }

  function onPrediction(p) {
    const now = Date.now();
    state.beats.push({ t: now, cls: p.class });
    while (state.beats.length && (state.beats[0].t < now - windowMs || state.beats.length > 20000)) state.beats.shift();
    if (p.class !== "N") {
      listItem("beats", p.class + " beat", p.device + " · p=" + (p.score || 0).toFixed(2) + (p.run > 1 ? " · run of " + p.run : ""), new Date(p.time).toLocaleTimeString());
    }
  }

  function onAnomaly(a) {
    const vals = Object.entries(a.values || {}).map(([k, x]) => k + " " + x).join(", ");
    listItem("anomalies", a.detector, a.subject + " · " + vals + " · score " + (a.score || 0).toFixed(2), new Date(a.time).toLocaleTimeString());
  }

  // listItem prepends "<code>code</code> detail text" to the list with the given id.
  function listItem(id, code, detail, text) {
    const ul = $(id);
    if (ul.firstChild && ul.firstChild.classList && ul.firstChild.classList.contains("muted")) ul.innerHTML = "";
    const li = document.createElement("li");
    li.innerHTML = "<span class=code></span> <span class=muted></span> ";
    li.children[0].textContent = code;
    li.children[1].textContent = detail;
    li.appendChild(document.createTextNode(text));
    ul.insertBefore(li, ul.firstChild);
    while (ul.children.length > 30) ul.removeChild(ul.lastChild);
  }

  // clearCanvas sizes a canvas for the screen's pixel ratio and clears it.
  function clearCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    return { g, w, h };
  }

  // Horizontal bars: heartbeat classes of the last five minutes (AAMI classes).
  function drawBeats(canvas) {
    const { g, w, h } = clearCanvas(canvas);
    g.font = "11px system-ui";
    if (!state.beats.length) { g.fillStyle = "#8b98a5"; g.fillText("waiting for ECG beats…", 12, 20); return; }
    const n = {}; for (const c of beatClasses) n[c] = 0;
    for (const b of state.beats) n[b.cls] = (n[b.cls] || 0) + 1;
    const max = Math.max(1, ...Object.values(n)), L = 150, R = 100, rowH = (h - 8) / beatClasses.length;
    beatClasses.forEach((c, i) => {
      const y = 4 + i * rowH, bw = (w - L - R) * n[c] / max;
      g.fillStyle = "#8b98a5"; g.fillText(c + " " + beatNames[c], 6, y + rowH / 2 + 4);
      g.fillStyle = c === "N" ? "#5ad17a" : c === "V" ? "#ff6b6b" : "#ffb454";
      g.fillRect(L, y + 3, Math.max(bw, n[c] ? 1 : 0), rowH - 6);
      g.fillStyle = "#c9d1d9"; g.fillText(n[c].toLocaleString() + " (" + (100 * n[c] / state.beats.length).toFixed(1) + "%)", L + bw + 6, y + rowH / 2 + 4);
    });
  }

  function onAlert(a) {
    const key = a.fingerprint || [a.rule, a.subject, a.device].join("/");
    if (a.state === "resolved") state.alerts.delete(key); else state.alerts.set(key, a);
    $("alerts").textContent = state.alerts.size;
    const ul = $("alertList");
    ul.innerHTML = "";
    if (!state.alerts.size) { ul.innerHTML = "<li class=muted>none</li>"; return; }
    for (const al of state.alerts.values()) {
      const li = document.createElement("li");
      const sev = document.createElement("span");
      sev.className = "sev-" + (al.severity || (al.labels && al.labels.severity) || "warning");
      sev.textContent = (al.rule || (al.labels && al.labels.alertname) || "alert") + " ";
      li.appendChild(sev);
      li.appendChild(document.createTextNode((al.summary || (al.annotations && al.annotations.summary) || "") + " — " + (al.state || "firing")));
      ul.appendChild(li);
    }
  }

  // Line chart of several series on a canvas; series: [{name, color, points:[{t, v}], dots}]
  function draw(canvas, series, opts) {
    const { g, w, h } = clearCanvas(canvas);
    const now = Date.now(), t0 = now - windowMs;
    let lo = Infinity, hi = -Infinity;
    for (const s of series) for (const p of s.points) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); }
    if (!isFinite(lo)) { g.fillStyle = "#8b98a5"; g.font = "12px system-ui"; g.fillText("waiting for data…", 12, 20); return; }
    if (opts && opts.min !== undefined) lo = Math.min(lo, opts.min);
    if (opts && opts.max !== undefined) hi = Math.max(hi, opts.max);
    const pad = (hi - lo) * 0.08 || 1; lo -= pad; hi += pad;
    const L = 40, R = 8, T = 8, B = 18;
    const x = (t) => L + (t - t0) / windowMs * (w - L - R);
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (h - T - B);
    g.strokeStyle = "#26313d"; g.fillStyle = "#8b98a5"; g.font = "11px system-ui"; g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + (hi - lo) * i / 4, yy = y(v);
      g.beginPath(); g.moveTo(L, yy); g.lineTo(w - R, yy); g.stroke();
      g.fillText(v.toFixed(hi - lo < 10 ? 1 : 0), 4, yy + 4);
    }
    for (let m = 0; m <= 5; m++) { const t = t0 + m * 60000; g.fillText(m === 5 ? "now" : "-" + (5 - m) + "m", x(t) - 10, h - 4); }
    if (opts && opts.bands) for (const b of opts.bands) {
      g.strokeStyle = b.color; g.setLineDash([4, 4]); g.beginPath(); g.moveTo(L, y(b.v)); g.lineTo(w - R, y(b.v)); g.stroke(); g.setLineDash([]);
    }
    series.forEach((s) => {
      g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = 1.5;
      if (s.dots) {
        for (const p of s.points) { g.beginPath(); g.arc(x(p.t), y(p.v), 2.5, 0, 7); s.hollow ? g.stroke() : g.fill(); }
      } else {
        g.beginPath();
        s.points.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.v)) : g.moveTo(x(p.t), y(p.v))));
        g.stroke();
      }
    });
    let lx = L + 4;
    g.font = "11px system-ui";
    series.filter((s) => s.name).forEach((s) => { g.fillStyle = s.color; g.fillText(s.name, lx, T + 10); lx += g.measureText(s.name).width + 12; });
  }

  function render() {
    const kinds = Object.keys(state.rates).sort();
    draw($("rateChart"), kinds.map((k, i) => ({ name: k, color: palette[i % palette.length], points: state.rates[k] })), { min: 0 });
    draw($("hrChart"), [...state.hr].map(([d, p], i) => ({ name: d, color: palette[i % palette.length], points: p })),
      { bands: [{ v: 120, color: "#ffb454" }, { v: 40, color: "#ffb454" }] });
    const bp = [];
    [...state.bp].forEach(([d, p], i) => {
      bp.push({ name: d, color: palette[i % palette.length], dots: true, points: p.map((q) => ({ t: q.t, v: q.s })) });
      bp.push({ color: palette[i % palette.length], dots: true, hollow: true, points: p.map((q) => ({ t: q.t, v: q.d })) });
    });
    draw($("bpChart"), bp, { bands: [{ v: 180, color: "#ff6b6b" }, { v: 120, color: "#ff6b6b" }] });
    draw($("accChart"), [...state.acc].map(([d, p], i) => ({ name: d, color: palette[i % palette.length], points: p })), { min: 0 });
    drawBeats($("beatChart"));
    $("beatTotal").textContent = state.beats.length.toLocaleString();
    requestAnimationFrame(() => setTimeout(render, 500));
  }

  async function loadAlerts(tok) {
    const resp = await fetch("/v1/alerts?state=firing", { headers: { Authorization: "Bearer " + tok } });
    if (!resp.ok) return;
    const body = await resp.json();
    for (const a of (Array.isArray(body) ? body : body.alerts || [])) onAlert(a);
  }

  async function follow() {
    const tok = token();
    if (!tok) { $("tokenForm").hidden = false; setStatus("a read token is needed", "err"); return; }
    $("forget").hidden = false;
    try {
      loadAlerts(tok).catch(() => {});
      const resp = await fetch("/v1/events", { headers: { Authorization: "Bearer " + tok } });
      if (resp.status === 401 || resp.status === 403) {
        localStorage.removeItem("pulselake-token");
        $("tokenForm").hidden = false; setStatus("token refused (" + resp.status + ")", "err"); return;
      }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      setStatus("live", "live");
      const reader = resp.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
          let type = "message", data = "";
          for (const line of chunk.split("\n")) {
            if (line.startsWith("event: ")) type = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          const d = JSON.parse(data);
          if (type === "reading") onReading(d);
          else if (type === "summary") onSummary(d);
          else if (type === "rejected") onRejected(d);
          else if (type === "alert") onAlert(d);
          else if (type === "prediction") onPrediction(d);
          else if (type === "anomaly") onAnomaly(d);
        }
      }
      throw new Error("feed closed");
    } catch (e) {
      setStatus("reconnecting… (" + e.message + ")", "err");
      setTimeout(follow, 2000);
    }
  }

  $("tokenForm").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem("pulselake-token", $("tokenInput").value.trim());
    $("tokenForm").hidden = true;
    follow();
  });
  $("forget").addEventListener("click", () => { localStorage.removeItem("pulselake-token"); location.reload(); });
  if (location.hash.includes("token=")) { localStorage.setItem("pulselake-token", token()); history.replaceState(null, "", "/"); }
  render();
  follow();
})();
