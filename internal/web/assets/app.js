// pulselake dashboard overview: follows GET /v1/events. Charts aggregate each kind across all
// devices (median and 5–95 % band per 5-second bucket) so they stay full with any number of
// devices, and name the devices whose recent readings are furthest from everyone else's.
(function () {
  "use strict";
  const { $, okabeIto: C, palette } = PL;
  const windowMs = 5 * 60 * 1000, bucketMs = 5000, recentMs = 60 * 1000, topN = 5, maxPerBucket = 4000;

  // The values the overview aggregates, by metric: a kind's reading gives one or more.
  const metrics = {
    heart_rate: (v) => [["bpm", v.bpm]],
    blood_pressure: (v) => [["systolic", v.systolic], ["diastolic", v.diastolic]],
    accelerometer: (v) => [["magnitude", Math.hypot(v.x, v.y, v.z)]],
    spo2: (v) => [["spo2", v.percent]],
  };

  const state = {
    rates: {},            // kind -> [{t, v}] readings per second
    buckets: new Map(),   // metric -> Map(bucket start -> values[])
    devices: new Map(),   // device -> {subject, kind, metric -> [{t, v}] of the last minute}
    total: 0, rejected: 0, alerts: new Map(),
    beats: [],            // [{t, cls}] heartbeat predictions of the last window
  };
  const beatClasses = ["N", "S", "V", "F", "Q"];
  const beatNames = { N: "normal", S: "supraventricular", V: "ventricular", F: "fusion", Q: "unknown" };

  // backfill fills the aggregate charts and the readings/s chart with the lake's last five
  // minutes, so a page opened on a running system starts full; the live feed carries on.
  async function backfill() {
    const since = "now() - INTERVAL 5 MINUTE";
    const sql = (metric, expr, table) => "SELECT epoch_ms(time_bucket(INTERVAL 5 SECOND, time)) AS t, quantile_cont(" + expr + ", 0.05), quantile_cont(" + expr + ", 0.5), quantile_cont(" + expr + ", 0.95) FROM " + table + " WHERE time >= " + since + " GROUP BY 1 ORDER BY 1";
    const asks = [["bpm", sql("bpm", "bpm", "heart_rate")], ["systolic", sql("systolic", "systolic", "blood_pressure")], ["diastolic", sql("diastolic", "diastolic", "blood_pressure")],
      ["magnitude", sql("magnitude", "sqrt(x*x + y*y + z*z)", "accelerometer")], ["spo2", sql("spo2", "percent", "spo2")]];
    await Promise.all([backfillRates(since), ...asks.map(async ([metric, q]) => {
      const rows = await query(q);
      let m = state.buckets.get(metric);
      if (!m) { m = new Map(); state.buckets.set(metric, m); }
      for (const [t, p5, p50, p95] of rows) if (!m.has(t)) { const a = []; a.pre = [p5, p50, p95]; m.set(t, a); }
    })]);
  }

  async function backfillRates(since) {
    // Only the kinds with a table: a missing one would fail the whole query.
    const kinds = (await query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'trusted'")).map((r) => r[0]).filter((k) => /^[a-z0-9_]+$/.test(k));
    if (!kinds.length) return;
    const rates = await query("SELECT kind, epoch_ms(date_trunc('second', received)) AS t, count(*) FROM (" +
      kinds.map((k) => "SELECT '" + k + "' AS kind, ingest_time AS received FROM trusted." + k + " WHERE ingest_time >= " + since).join(" UNION ALL ") +
      ") GROUP BY 1, 2 ORDER BY 2");
    for (const [kind, t, n] of rates) {
      const a = (state.rates[kind] = state.rates[kind] || []);
      if (!a.length || a[0].t > t) a.push({ t, v: n });
    }
    for (const a of Object.values(state.rates)) a.sort((x, y) => x.t - y.t);
  }

  // query runs SQL through POST /v1/query and returns its rows; [] when it fails (a table
  // not written yet).
  async function query(sql) {
    try {
      const resp = await fetch("/v1/query", { method: "POST", headers: { Authorization: "Bearer " + PL.token(), "Content-Type": "application/json" }, body: JSON.stringify({ sql }) });
      if (!resp.ok) return [];
      return (await resp.json()).rows || [];
    } catch (e) { return []; }
  }

  function addValue(metric, t, v) {
    if (!isFinite(v)) return;
    let m = state.buckets.get(metric);
    if (!m) { m = new Map(); state.buckets.set(metric, m); }
    const b = Math.floor(t / bucketMs) * bucketMs;
    let a = m.get(b);
    if (!a) { a = []; m.set(b, a); }
    if (a.length < maxPerBucket) { a.push(v); a.sorted = false; }
  }

  function onReading(r) {
    state.total++;
    const t = Date.parse(r.time), v = r.values || {};
    const f = metrics[r.kind];
    if (f && isFinite(t)) {
      let d = state.devices.get(r.device);
      if (!d) { d = { subject: r.subject, kind: r.kind, series: {} }; state.devices.set(r.device, d); }
      d.subject = r.subject; d.kind = r.kind; d.last = t;
      for (const [metric, x] of f(v)) {
        addValue(metric, t, x);
        const s = (d.series[metric] = d.series[metric] || []);
        s.push({ t, v: x });
        while (s.length && (s[0].t < t - recentMs || s.length > 120)) s.shift();
      }
    }
    const vals = Object.entries(v).filter(([k]) => k !== "samples" && k !== "source_id").map(([k, x]) => k + " " + (typeof x === "number" ? +x.toPrecision(4) : x)).join(", ");
    const tb = $("latest"), tr = document.createElement("tr");
    [new Date(t).toLocaleTimeString(), r.subject, r.device, r.kind, vals].forEach((c, i) => {
      const td = document.createElement("td"); td.textContent = c; if (i === 4) td.className = "wrap"; tr.appendChild(td);
    });
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
      listItem("beats", p.class + " beat", p.device + " · p=" + (p.score || 0).toFixed(2) + (p.run > 1 ? " · run of " + p.run : ""), new Date(p.time).toLocaleTimeString(), p.subject);
    }
  }

  function onAnomaly(a) {
    const vals = Object.entries(a.values || {}).map(([k, x]) => k + " " + x).join(", ");
    listItem("anomalies", a.detector, a.subject + " · " + vals + " · score " + (a.score || 0).toFixed(2), new Date(a.time).toLocaleTimeString(), a.subject);
  }

  function subjectLink(subject) {
    const a = document.createElement("a");
    a.href = "/subjects/" + encodeURIComponent(subject); a.textContent = subject;
    return a;
  }

  // listItem prepends "<code>code</code> detail text" to the list with the given id.
  function listItem(id, code, detail, text, subject) {
    const ul = $(id);
    if (ul.firstChild && ul.firstChild.classList && ul.firstChild.classList.contains("muted")) ul.innerHTML = "";
    const li = document.createElement("li");
    li.innerHTML = "<span class=code></span> <span class=muted></span> ";
    li.children[0].textContent = code;
    li.children[1].textContent = detail;
    li.appendChild(document.createTextNode(text + " "));
    if (subject) li.appendChild(subjectLink(subject));
    ul.insertBefore(li, ul.firstChild);
    while (ul.children.length > 30) ul.removeChild(ul.lastChild);
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
      li.appendChild(document.createTextNode((al.summary || (al.annotations && al.annotations.summary) || "") + " — " + (al.state || "firing") + " "));
      if (al.subject) li.appendChild(subjectLink(al.subject));
      ul.appendChild(li);
    }
  }

  // aggregate returns the median line and 5–95 % band of a metric per bucket, and the
  // population's median and robust spread (MAD scaled to a standard deviation) over the last
  // minute, for scoring devices.
  function aggregate(metric, now) {
    const m = state.buckets.get(metric) || new Map();
    const median = [], band = [], recent = [];
    for (const [b, a] of [...m].sort((x, y) => x[0] - y[0])) {
      if (b < now - windowMs - bucketMs) { m.delete(b); continue; }
      const t = b + bucketMs / 2;
      if (a.pre && a.length < 3) { // from the lake, until the feed brings enough of its own
        median.push({ t, v: a.pre[1] });
        band.push({ t, lo: a.pre[0], hi: a.pre[2] });
        continue;
      }
      if (!a.sorted) { a.sort((x, y) => x - y); a.sorted = true; }
      median.push({ t, v: PL.quantile(a, 0.5) });
      band.push({ t, lo: PL.quantile(a, 0.05), hi: PL.quantile(a, 0.95) });
      if (b >= now - recentMs) for (const v of a) recent.push(v);
    }
    recent.sort((x, y) => x - y);
    const mid = PL.quantile(recent, 0.5);
    const dev = recent.map((v) => Math.abs(v - mid)).sort((x, y) => x - y);
    const spread = Math.max(1.4826 * PL.quantile(dev, 0.5), 1e-6);
    return { median, band, mid, spread };
  }

  // topDevices ranks devices by abnormality: the largest robust z-score (distance from the
  // population median in MADs) of their readings of the last minute, over their metrics.
  function topDevices(stats, now) {
    const ranked = [];
    for (const [id, d] of state.devices) {
      if (d.last < now - recentMs) { state.devices.delete(id); continue; }
      let score = 0, worst = null;
      for (const [metric, pts] of Object.entries(d.series)) {
        const st = stats[metric];
        if (!st || !isFinite(st.mid)) continue;
        for (const p of pts) {
          const z = Math.abs(p.v - st.mid) / st.spread;
          if (z > score) { score = z; worst = metric + " " + +p.v.toFixed(2); }
        }
      }
      ranked.push({ id, subject: d.subject, kind: d.kind, score, worst, series: d.series });
    }
    ranked.sort((a, b) => b.score - a.score);
    return ranked.slice(0, topN);
  }

  const charts = {
    hr: { metrics: [["bpm", C.sky]], unit: "bpm", hlines: [{ v: 100, color: C.orange, label: "100" }, { v: 50, color: C.orange, label: "50" }] },
    bp: { metrics: [["systolic", C.orange], ["diastolic", C.sky]], unit: "mmHg", hlines: [{ v: 180, color: C.vermillion, label: "180" }, { v: 120, color: C.vermillion, label: "120" }] },
    acc: { metrics: [["magnitude", C.green]], unit: "g", min: 0 },
  };
  const topColors = [C.purple, C.yellow, C.vermillion];
  let lastStats = {}, lastTop = [];

  function smoothRates(pts) {
    // Mean of the last 5 seconds: one late summary does not draw a spike and a dip.
    const out = [];
    for (let i = 0; i < pts.length; i++) {
      let s = 0, n = 0;
      for (let j = Math.max(0, i - 4); j <= i; j++) { s += pts[j].v; n++; }
      out.push({ t: pts[i].t, v: Math.max(0, s / n) });
    }
    return out;
  }

  function renderCharts() {
    const now = Date.now(), t0 = now - windowMs;
    const stats = {};
    for (const metric of state.buckets.keys()) stats[metric] = aggregate(metric, now);
    lastStats = stats;
    lastTop = topDevices(stats, now);
    const kinds = Object.keys(state.rates).sort();
    PL.chart($("rateChart"), { t0, t1: now, min: 0, unit: "readings/s", empty: "waiting for data…",
      series: kinds.map((k, i) => ({ name: k, color: palette[i % palette.length], points: smoothRates(state.rates[k]) })) });
    for (const [id, c] of Object.entries(charts)) {
      const series = [];
      for (const [metric, color] of c.metrics) {
        const st = stats[metric];
        if (!st) continue;
        series.push({ type: "band", color, points: st.band });
        series.push({ name: c.metrics.length > 1 ? metric + " median" : "median", color, points: st.median, width: 2 });
      }
      // The top devices of this chart's kind, drawn over the band.
      let i = 0;
      for (const d of lastTop) {
        for (const [metric] of c.metrics) {
          if (d.series[metric] && i < topColors.length) series.push({ name: c.metrics.length > 1 && metric !== c.metrics[0][0] ? "" : d.id, color: topColors[i], points: d.series[metric], width: 1.2, dash: metric === c.metrics[0][0] ? null : [3, 3] });
        }
        if (c.metrics.some(([m]) => d.series[m])) i++;
      }
      PL.chart($(id + "Chart"), { t0, t1: now, series, hlines: c.hlines, min: c.min, robust: true, unit: c.unit, empty: "waiting for data…" });
    }
    drawBeats($("beatChart"));
    $("beatTotal").textContent = state.beats.length.toLocaleString();
    renderTop();
    for (const r of refreshTables) r();
  }

  function renderTop() {
    const tb = $("top");
    tb.innerHTML = "";
    if (!lastTop.length) { const tr = tb.insertRow(); const td = tr.insertCell(); td.colSpan = 5; td.className = "muted"; td.textContent = "waiting for data…"; return; }
    for (const d of lastTop) {
      const tr = tb.insertRow();
      tr.insertCell().textContent = d.id;
      tr.insertCell().appendChild(subjectLink(d.subject));
      tr.insertCell().textContent = d.kind;
      tr.insertCell().textContent = d.worst || "";
      tr.insertCell().textContent = d.score.toFixed(1);
    }
  }

  // Horizontal bars: heartbeat classes of the last five minutes (AAMI classes).
  function drawBeats(canvas) {
    const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0); g.clearRect(0, 0, w, h);
    g.font = "11px system-ui";
    canvas.dataset.points = String(state.beats.length);
    if (!state.beats.length) { g.fillStyle = "#9aa7b4"; g.fillText("waiting for ECG beats…", 12, 20); return; }
    const n = {}; for (const c of beatClasses) n[c] = 0;
    for (const b of state.beats) n[b.cls] = (n[b.cls] || 0) + 1;
    const max = Math.max(1, ...Object.values(n)), L = 150, R = 100, rowH = (h - 8) / beatClasses.length;
    beatClasses.forEach((c, i) => {
      const y = 4 + i * rowH, bw = (w - L - R) * n[c] / max;
      g.fillStyle = "#9aa7b4"; g.fillText(c + " " + beatNames[c], 6, y + rowH / 2 + 4);
      g.fillStyle = c === "N" ? C.green : c === "V" ? C.vermillion : C.orange;
      g.fillRect(L, y + 3, Math.max(bw, n[c] ? 1 : 0), rowH - 6);
      g.fillStyle = "#c9d1d9"; g.fillText(n[c].toLocaleString() + " (" + (100 * n[c] / state.beats.length).toFixed(1) + "%)", L + bw + 6, y + rowH / 2 + 4);
    });
    canvas.setAttribute("aria-label", "Heartbeat classes: " + beatClasses.map((c) => c + " " + n[c]).join(", "));
  }

  // Text alternatives: each chart's data as a table.
  const bucketRows = (metrics) => (table) => {
    const cols = ["time"], byT = new Map();
    for (const [metric] of metrics) {
      const st = lastStats[metric];
      if (!st) continue;
      cols.push(metric + " p5", metric + " median", metric + " p95");
      st.median.forEach((p, i) => { const r = byT.get(p.t) || [new Date(p.t).toLocaleTimeString()]; r.push(st.band[i].lo, p.v, st.band[i].hi); byT.set(p.t, r); });
    }
    PL.fillTable(table, cols, [...byT.values()], 60);
  };
  const refreshTables = [
    PL.tableToggle($("rateTable"), (table) => {
      const kinds = Object.keys(state.rates).sort(), byT = new Map();
      kinds.forEach((k, i) => smoothRates(state.rates[k]).forEach((p) => { const r = byT.get(p.t) || [new Date(p.t).toLocaleTimeString(), ...kinds.map(() => 0)]; r[i + 1] = p.v; byT.set(p.t, r); }));
      PL.fillTable(table, ["time", ...kinds], [...byT.values()], 60);
    }),
    PL.tableToggle($("hrTable"), bucketRows(charts.hr.metrics)),
    PL.tableToggle($("bpTable"), bucketRows(charts.bp.metrics)),
    PL.tableToggle($("accTable"), bucketRows(charts.acc.metrics)),
    PL.tableToggle($("beatTable"), (table) => {
      const n = {}; for (const b of state.beats) n[b.cls] = (n[b.cls] || 0) + 1;
      PL.fillTable(table, ["class", "beats"], beatClasses.map((c) => [c + " " + beatNames[c], n[c] || 0]));
    }),
  ];

  async function loadAlerts() {
    try {
      const body = await PL.api("/v1/alerts?state=firing");
      for (const a of (Array.isArray(body) ? body : body.alerts || [])) onAlert(a);
    } catch (e) { /* the feed shows alerts as they change */ }
  }

  // A token bound to one subject opens that subject's view.
  async function openBoundSubject() {
    try {
      const body = await PL.api("/v1/subjects?limit=1");
      if (body.bound_subject) location.replace("/subjects/" + encodeURIComponent(body.bound_subject));
    } catch (e) { /* the overview stays */ }
  }

  function refused(status) {
    PL.forget();
    $("tokenForm").hidden = false; PL.setStatus("token refused (" + status + ")", "err");
  }

  function start() {
    if (!PL.token()) { $("tokenForm").hidden = false; PL.setStatus("a read token is needed", "err"); return; }
    $("forget").hidden = false;
    openBoundSubject();
    loadAlerts();
    backfill();
    PL.follow("/v1/events", (type, d) => {
      if (type === "reading") onReading(d);
      else if (type === "summary") onSummary(d);
      else if (type === "rejected") onRejected(d);
      else if (type === "alert") onAlert(d);
      else if (type === "prediction") onPrediction(d);
      else if (type === "anomaly") onAnomaly(d);
    }, refused);
  }

  $("tokenForm").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem("pulselake-token", $("tokenInput").value.trim());
    $("tokenForm").hidden = true;
    start();
  });
  $("forget").addEventListener("click", () => { PL.forget(); location.reload(); });
  PL.keepToken();
  (function loop() { renderCharts(); setTimeout(() => requestAnimationFrame(loop), 1000); })();
  start();
})();
