// pulselake dashboard: what the pages share. The token kept in this browser, the API and the
// live feed, and charts drawn on canvas with robust axes and a table as their text
// alternative. No dependencies.
(function () {
  "use strict";
  const key = "pulselake-token";

  // Okabe–Ito: distinguishable with every common colour-vision deficiency.
  const okabeIto = { orange: "#E69F00", sky: "#56B4E9", green: "#009E73", yellow: "#F0E442", blue: "#0072B2", vermillion: "#D55E00", purple: "#CC79A7", grey: "#999999" };
  const palette = [okabeIto.sky, okabeIto.orange, okabeIto.green, okabeIto.purple, okabeIto.yellow, okabeIto.vermillion, okabeIto.blue, okabeIto.grey];

  const $ = (id) => document.getElementById(id);

  // The browser's paint timings go on the root element (data-first-paint,
  // data-first-contentful-paint, in ms from navigation start), where a look at the page's
  // DOM finds them: the speed of a page as its users get it.
  if (window.PerformanceObserver) {
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) document.documentElement.dataset[e.name === "first-paint" ? "firstPaint" : "firstContentfulPaint"] = e.startTime.toFixed(0);
      }).observe({ type: "paint", buffered: true });
    } catch (e) { /* paint timing not supported */ }
  }

  // keepToken stores a token given in the URL fragment (#token=…) and removes it from the URL.
  function keepToken() {
    if (!location.hash.includes("token=")) return;
    const t = new URLSearchParams(location.hash.slice(1)).get("token");
    if (t) localStorage.setItem(key, t);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = () => localStorage.getItem(key);
  const forget = () => localStorage.removeItem(key);

  function setStatus(text, cls) { const s = $("status"); if (s) { s.textContent = text; s.className = "status " + (cls || ""); } }

  // api GETs a JSON path with the token; it throws an Error carrying the status.
  async function api(path) {
    const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
    let body = null;
    try { body = await resp.json(); } catch (e) { /* no JSON body */ }
    if (!resp.ok) {
      const err = new Error((body && body.error && body.error.message) || "HTTP " + resp.status);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  // follow reads the live feed at path (server-sent events) and calls on(type, data) per
  // event, reconnecting after failures; onRefused(status) ends it when the token is refused,
  // and aborting signal (an AbortSignal, optional) ends it too.
  async function follow(path, on, onRefused, signal) {
    while (!(signal && signal.aborted)) {
      try {
        const resp = await fetch(path, { headers: { Authorization: "Bearer " + token() }, signal });
        if (resp.status === 401 || resp.status === 403) { onRefused(resp.status); return; }
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
            if (data) on(type, JSON.parse(data));
          }
        }
        throw new Error("feed closed");
      } catch (e) {
        if (signal && signal.aborted) return;
        setStatus("reconnecting… (" + e.message + ")", "err");
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  // quantile of sorted numbers (linear interpolation, as numpy's default).
  function quantile(sorted, q) {
    if (!sorted.length) return NaN;
    const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }

  // niceStep is a round step near span/n.
  function niceStep(span, n) {
    const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }
  const timeSteps = [1e3, 5e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3, 172800e3, 604800e3];

  // clearCanvas sizes a canvas for the screen's pixel ratio and clears it.
  function clearCanvas(canvas) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    return { g, w, h };
  }

  function fmtTime(t, span) {
    const d = new Date(t);
    if (span > 2 * 86400e3) return d.toLocaleDateString([], { month: "short", day: "numeric" }) + (d.getHours() || d.getMinutes() ? " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
    if (span > 600e3) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // timeAxis labels the time axis of a chart spanning [t0, t1] between the margins L and R at
  // round local times; with days set, each day (bars of a value per day) at its noon.
  function timeAxis(g, t0, t1, L, R, w, h, days) {
    const span = Math.max(1, t1 - t0), x = (t) => L + (t - t0) / span * (w - L - R);
    g.fillStyle = "#9aa7b4"; g.font = "11px system-ui";
    const sample = g.measureText(fmtTime(t0, span)).width + 24;
    const maxTicks = Math.max(2, Math.floor((w - L - R) / sample));
    const tstep = days ? Math.max(1, Math.ceil(span / 86400e3 / maxTicks)) * 86400e3 : timeSteps.find((s) => span / s <= maxTicks) || 604800e3;
    const tz = new Date().getTimezoneOffset() * 60e3;
    for (let t = Math.ceil((t0 - tz) / tstep) * tstep + tz + (days ? 43200e3 : 0); t <= t1; t += tstep) {
      const label = days ? new Date(t).toLocaleDateString([], { month: "short", day: "numeric" }) : fmtTime(t, span);
      const xx = x(t), lw = g.measureText(label).width;
      if (xx - lw / 2 < L - 4 || xx + lw / 2 > w) continue;
      g.fillText(label, xx - lw / 2, h - 5);
    }
  }

  // chart draws a time chart. spec: {t0, t1, series, hlines, min, max, robust, empty, unit,
  // days (label days, for a value per day)}
  // series: {name, color, type: "line"|"band"|"dots"|"bars", points: [{t, v}] or, for bands,
  //   [{t, lo, hi}], width (bars, ms), hollow, dash}
  // hlines: [{v, color, label}] (thresholds). Axes: with robust set, the 1st–99th percentile
  // of the values (outliers drawn as triangles at the edge); min/max are hard bounds (0 for
  // counts). Sets data-points on the canvas to the number of values drawn.
  function chart(canvas, spec) {
    const { g, w, h } = clearCanvas(canvas);
    const t0 = spec.t0, t1 = spec.t1, span = Math.max(1, t1 - t0);
    const vals = [];
    for (const s of spec.series) for (const p of s.points) {
      if (p.t < t0 || p.t > t1) continue;
      if (s.type === "band") { if (isFinite(p.lo)) vals.push(p.lo); if (isFinite(p.hi)) vals.push(p.hi); }
      else if (isFinite(p.v)) vals.push(p.v);
    }
    canvas.dataset.points = String(vals.length);
    g.font = "11px system-ui";
    if (!vals.length) {
      g.fillStyle = "#9aa7b4"; g.font = "12px system-ui"; g.fillText(spec.empty || "no data in this range", 12, 20);
      canvas.setAttribute("aria-label", (canvas.dataset.title || "chart") + ": no data");
      return;
    }
    vals.sort((a, b) => a - b);
    let lo = vals[0], hi = vals[vals.length - 1];
    if (spec.robust && vals.length >= 20) { lo = quantile(vals, 0.01); hi = quantile(vals, 0.99); }
    for (const l of spec.hlines || []) { lo = Math.min(lo, l.v); hi = Math.max(hi, l.v); }
    const pad = (hi - lo) * 0.08 || Math.max(1, Math.abs(hi) * 0.1);
    lo -= pad; hi += pad;
    if (spec.min !== undefined) lo = Math.max(lo, spec.min);
    if (spec.min !== undefined && vals[0] >= spec.min && lo > spec.min && lo - spec.min < (hi - lo) * 0.5) lo = spec.min;
    if (spec.max !== undefined) hi = Math.min(hi, spec.max);
    if (hi <= lo) hi = lo + 1;
    // Legend items, in as many rows as the width needs (a phone wraps them).
    const L = 44, R = 10, B = 20, legend = [];
    let lx = L + 2, ly = 13;
    for (const s of spec.series) {
      if (!s.name) continue;
      const iw = 13 + g.measureText(s.name).width + 12;
      if (lx + iw > w - R && lx > L + 2) { lx = L + 2; ly += 14; }
      legend.push({ s, x: lx, y: ly }); lx += iw;
    }
    const T = ly + 5;
    const x = (t) => L + (t - t0) / span * (w - L - R);
    const yRaw = (v) => T + (1 - (v - lo) / (hi - lo)) * (h - T - B);
    const y = (v) => Math.min(h - B, Math.max(T, yRaw(v)));
    // Grid and axes.
    g.strokeStyle = "#2a3642"; g.fillStyle = "#9aa7b4"; g.lineWidth = 1;
    const step = niceStep(hi - lo, 4);
    for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) {
      const yy = yRaw(v);
      g.beginPath(); g.moveTo(L, yy); g.lineTo(w - R, yy); g.stroke();
      g.fillText(Math.abs(v) >= 1000 ? (v / 1000).toFixed(v % 1000 ? 1 : 0) + "k" : +v.toFixed(step < 1 ? 2 : 0), 4, yy + 4);
    }
    timeAxis(g, t0, t1, L, R, w, h, spec.days);
    // Threshold lines.
    for (const l of spec.hlines || []) {
      g.strokeStyle = l.color; g.setLineDash([5, 4]); g.beginPath(); g.moveTo(L, yRaw(l.v)); g.lineTo(w - R, yRaw(l.v)); g.stroke(); g.setLineDash([]);
      if (l.label) { g.fillStyle = l.color; const lw = g.measureText(l.label).width; g.fillText(l.label, w - R - lw - 2, yRaw(l.v) - 3); }
    }
    // Series.
    for (const s of spec.series) {
      const pts = s.points.filter((p) => p.t >= t0 && p.t <= t1);
      g.strokeStyle = s.color; g.fillStyle = s.color; g.lineWidth = s.width || 1.6;
      if (s.dash) g.setLineDash(s.dash);
      if (s.type === "band") {
        g.globalAlpha = 0.25; g.beginPath();
        pts.forEach((p, i) => (i ? g.lineTo(x(p.t), y(p.hi)) : g.moveTo(x(p.t), y(p.hi))));
        for (let i = pts.length - 1; i >= 0; i--) g.lineTo(x(pts[i].t), y(pts[i].lo));
        g.closePath(); g.fill(); g.globalAlpha = 1;
      } else if (s.type === "bars") {
        const bw = Math.max(2, (x(t0 + (s.barMs || 86400e3)) - x(t0)) * 0.7);
        for (const p of pts) { const y0 = y(Math.max(lo, 0)); g.fillRect(x(p.t) + ((x(t0 + (s.barMs || 86400e3)) - x(t0)) - bw) / 2, y(p.v), bw, y0 - y(p.v)); }
      } else if (s.type === "dots") {
        for (const p of pts) { g.beginPath(); g.arc(x(p.t), y(p.v), 2.5, 0, 7); s.hollow ? g.stroke() : g.fill(); }
      } else {
        g.beginPath();
        let prev = null;
        for (const p of pts) {
          if (!isFinite(p.v)) { prev = null; continue; }
          // A gap of more than gapMs breaks the line (no reading then).
          if (prev && (!s.gapMs || p.t - prev.t <= s.gapMs)) g.lineTo(x(p.t), y(p.v)); else g.moveTo(x(p.t), y(p.v));
          prev = p;
        }
        g.stroke();
        if (pts.length === 1) { g.beginPath(); g.arc(x(pts[0].t), y(pts[0].v), 2.5, 0, 7); g.fill(); }
      }
      g.setLineDash([]);
      // Outliers beyond the axis: a triangle at the edge.
      if (s.type !== "band") for (const p of pts) {
        if (!(p.v > hi || p.v < lo)) continue;
        const xx = x(p.t), up = p.v > hi, yy = up ? T : h - B;
        g.fillStyle = okabeIto.vermillion; g.beginPath();
        g.moveTo(xx, up ? yy - 6 : yy + 6); g.lineTo(xx - 4, up ? yy + 1 : yy - 1); g.lineTo(xx + 4, up ? yy + 1 : yy - 1); g.closePath(); g.fill();
      }
    }
    // Legend.
    g.font = "11px system-ui";
    for (const { s, x: ix, y: iy } of legend) {
      g.fillStyle = s.color; g.fillRect(ix, iy - 8, 10, 8);
      g.fillStyle = "#c9d1d9"; g.fillText(s.name, ix + 13, iy);
    }
    canvas.setAttribute("aria-label", (canvas.dataset.title || "chart") + ": " + vals.length + " values from " + +vals[0].toFixed(2) + " to " + +vals[vals.length - 1].toFixed(2) + (spec.unit ? " " + spec.unit : ""));
  }

  // fillTable writes rows (arrays of cells) under columns into a table element.
  function fillTable(table, columns, rows, max) {
    table.innerHTML = "";
    const head = table.createTHead().insertRow();
    for (const c of columns) { const th = document.createElement("th"); th.scope = "col"; th.textContent = c; head.appendChild(th); }
    const body = table.createTBody();
    const shown = max && rows.length > max ? rows.slice(rows.length - max) : rows;
    for (const r of shown) {
      const tr = body.insertRow();
      for (const c of r) tr.insertCell().textContent = c == null ? "" : typeof c === "number" ? +c.toFixed(2) : c;
    }
    if (shown.length < rows.length) { const tr = body.insertRow(); const td = tr.insertCell(); td.colSpan = columns.length; td.className = "muted"; td.textContent = "latest " + shown.length + " of " + rows.length + " rows"; }
  }

  // tableToggles wires every button.table-toggle: it shows the chart's data as a table
  // (render(table) fills it) instead of the chart, and back.
  function tableToggle(button, render) {
    const fig = button.closest("figure"), table = fig.querySelector("table.alt"), canvas = fig.querySelector("canvas");
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", () => {
      const on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? "chart" : "table";
      table.hidden = !on; canvas.hidden = on;
      if (on) render(table);
    });
    return () => { if (!table.hidden) render(table); };
  }

  function fmtClock(t) { return new Date(t).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" }); }

  window.PL = { $, okabeIto, palette, keepToken, token, forget, setStatus, api, follow, quantile, chart, timeAxis, fillTable, tableToggle, fmtClock };
})();
