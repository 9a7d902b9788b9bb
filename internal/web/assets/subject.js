// pulselake subject view (/subjects/<id>): one subject's readings over a time range from the
// lake (GET /v1/subjects/{id}/series, downsampled by the server to ≤ 1,000 buckets per series)
// and, in the live range, the subject's readings appended from GET /v1/events?subject=<id>.
(function () {
  "use strict";
  const { $, okabeIto: C } = PL;
  const subject = decodeURIComponent(location.pathname.replace(/^\/subjects\//, ""));
  const liveMs = 15 * 60 * 1000;
  const ranges = { live: liveMs, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
  const stageLevel = { wake: 0, restless: 0.5, rem: 1, light: 2, asleep: 2, deep: 3 };
  const stageColor = { wake: C.vermillion, restless: C.orange, rem: C.sky, light: C.blue, asleep: C.blue, deep: C.purple };
  const classColor = { N: C.green, S: C.orange, V: C.vermillion, F: C.purple, Q: C.grey };
  const fields = { heart_rate: ["bpm"], blood_pressure: ["systolic", "diastolic", "pulse"], spo2: ["percent"], steps: ["count"] };

  let range = new URLSearchParams(location.search).get("range") || "24h";
  let view = { t0: 0, t1: 0, data: null };
  let feed = null; // the live feed's AbortController while the range is live

  $("subject").textContent = subject;
  document.title = "pulselake · " + subject;

  function setRange(r) {
    range = r;
    for (const b of $("ranges").querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.range === r));
    $("custom").hidden = r !== "custom";
    const u = new URL(location.href); u.searchParams.set("range", r); history.replaceState(null, "", u.pathname + u.search);
    if (r !== "custom") load();
  }

  async function load() {
    let from, to;
    if (range === "custom") {
      from = new Date($("from").value).getTime(); to = new Date($("to").value).getTime();
      if (!(from < to)) { PL.setStatus("the custom range needs from before to", "err"); return; }
    } else {
      to = Date.now(); from = to - (ranges[range] || ranges["24h"]);
    }
    PL.setStatus("loading…", "");
    const points = Math.min(1000, Math.max(100, Math.round($("hrChart").clientWidth || 1000)));
    let body;
    try {
      body = await PL.api("/v1/subjects/" + encodeURIComponent(subject) + "/series?from=" + Math.round(from) + "&to=" + Math.round(to) +
        "&points=" + (range === "live" ? 900 : points) + "&tz_offset=" + -new Date().getTimezoneOffset());
    } catch (e) {
      if (e.status === 401) { PL.forget(); $("tokenForm").hidden = false; }
      PL.setStatus(e.status === 403 ? "this token may not see " + subject + " (403)" : e.message, "err");
      view = { t0: from, t1: to, data: null, denied: true };
      render();
      return;
    }
    view = { t0: from, t1: to, data: body.series, bucket: body.bucket_seconds };
    $("rangeText").textContent = PL.fmtClock(from) + " – " + PL.fmtClock(to) + (body.bucket_seconds > 1 ? " · " + bucketText(body.bucket_seconds) + " buckets" : "");
    PL.setStatus(range === "live" ? "live" : "from the lake", range === "live" ? "live" : "");
    render();
    if (range === "live") startFeed(); else stopFeed();
  }

  function bucketText(s) { return s >= 86400 ? s / 86400 + " d" : s >= 3600 ? s / 3600 + " h" : s >= 60 ? s / 60 + " min" : s + " s"; }

  // Live: the subject's readings from the feed are appended as buckets of one reading.
  function startFeed() {
    if (feed) return;
    feed = new AbortController();
    PL.follow("/v1/events?subject=" + encodeURIComponent(subject), (type, d) => {
      if (!view.data) return;
      if (type === "reading") append(d);
      else if (type === "alert") addEvent({ t: Date.parse(d.fired_at || d.resolved_at || d.active_at || Date.now()), type: "alert", name: d.rule, kind: d.kind, state: d.state, severity: d.severity });
      else if (type === "anomaly") addEvent({ t: Date.parse(d.time), type: "anomaly", name: d.detector, kind: d.kind, score: d.score });
      else if (type === "prediction") { const c = view.data.ecg && view.data.ecg.counts; if (c) c[d.class] = (c[d.class] || 0) + 1; }
    }, (status) => { PL.setStatus("live feed refused (" + status + ")", "err"); }, feed.signal);
  }
  function stopFeed() { if (feed) feed.abort(); feed = null; }

  function append(r) {
    const s = view.data[r.kind], t = Date.parse(r.time);
    if (!s || !s.fields || !isFinite(t)) return;
    s.t.push(t); s.n.push(1);
    for (const [f, agg] of Object.entries(s.fields)) {
      const v = r.values && r.values[f];
      for (const a of ["min", "avg", "max"]) agg[a].push(v === undefined ? null : v);
    }
    if (r.kind === "sleep" && s.segments && r.values) { s.segments.t.push(t); s.segments.stage.push(r.values.stage); s.segments.duration_s.push(r.values.duration_s); }
  }

  function addEvent(e) {
    if (!view.data.events) return;
    view.data.events.events.push(e);
  }

  function points(s, field, agg) {
    const out = [];
    if (!s || !s.fields || !s.fields[field]) return out;
    const a = s.fields[field][agg];
    for (let i = 0; i < s.t.length; i++) out.push({ t: s.t[i], v: a[i] == null ? NaN : a[i] });
    return out;
  }
  function band(s, field) {
    const out = [];
    if (!s || !s.fields || !s.fields[field]) return out;
    const f = s.fields[field];
    for (let i = 0; i < s.t.length; i++) if (f.min[i] != null) out.push({ t: s.t[i], lo: f.min[i], hi: f.max[i] });
    return out;
  }
  const gap = () => Math.max(5 * 60e3, (view.bucket || 1) * 3000);

  function render() {
    if (range === "live") { view.t1 = Date.now(); view.t0 = view.t1 - liveMs; }
    const d = view.data || {}, t0 = view.t0, t1 = view.t1;
    const empty = view.denied ? "not available to this token" : "no readings in this range";
    // Heart rate.
    const hr = d.heart_rate, hrSeries = [{ type: "band", color: C.sky, points: band(hr, "bpm") }, { name: "mean", color: C.sky, points: points(hr, "bpm", "avg"), gapMs: gap() }];
    if (hr && hr.days && hr.days.day.length) {
      // One flat line per day at its resting heart rate.
      hr.days.day.forEach((day, i) => {
        const t = localDay(day), v = hr.days.resting_bpm[i];
        hrSeries.push({ name: i ? "" : "resting", color: C.green, points: [{ t: Math.max(t, t0), v }, { t: Math.min(t + 86400e3 - 1, t1), v }], dash: [6, 3], width: 2 });
      });
    }
    PL.chart($("hrChart"), { t0, t1, series: hrSeries, hlines: hlines(hr), robust: true, unit: "bpm", empty });
    // Blood pressure.
    const bp = d.blood_pressure;
    const few = bp && bp.t.length < 200;
    PL.chart($("bpChart"), { t0, t1, robust: true, unit: "mmHg", empty, hlines: hlines(bp), series: [
      { type: "band", color: C.orange, points: band(bp, "systolic") }, { name: "systolic", color: C.orange, points: points(bp, "systolic", "avg"), type: few ? "dots" : "line", gapMs: gap() },
      { type: "band", color: C.sky, points: band(bp, "diastolic") }, { name: "diastolic", color: C.sky, points: points(bp, "diastolic", "avg"), type: few ? "dots" : "line", gapMs: gap() }] });
    // SpO2.
    const sp = d.spo2;
    PL.chart($("spo2Chart"), { t0, t1, robust: true, max: 100, unit: "%", empty, hlines: hlines(sp), series: [
      { type: "band", color: C.green, points: band(sp, "percent") }, { name: "SpO₂", color: C.green, points: points(sp, "percent", "avg"), gapMs: gap() }] });
    // Steps per day.
    const st = d.steps, steps = [];
    if (st && st.days) st.days.day.forEach((day, i) => steps.push({ t: localDay(day), v: st.days.count[i] }));
    const dayT0 = new Date(t0), dayT1 = new Date(t1 - 1);
    dayT0.setHours(0, 0, 0, 0); dayT1.setHours(24, 0, 0, 0);
    PL.chart($("stepsChart"), { t0: dayT0.getTime(), t1: dayT1.getTime(), min: 0, unit: "steps", empty, days: true,
      series: [{ name: "steps", color: C.blue, type: "bars", barMs: 86400e3, points: steps }] });
    drawSleep($("sleepChart"), d.sleep, t0, t1, empty);
    drawEvents($("eventsChart"), d.events, t0, t1, empty);
    drawECG($("ecgChart"), d.ecg, empty);
    for (const r of refreshTables) r();
  }

  // localDay is the start of a day the server names as a date (UTC midnight) in local time.
  function localDay(day) { return day + new Date(day).getTimezoneOffset() * 60e3; }

  // hlines are the thresholds of the loaded alert rules on a kind's fields.
  function hlines(s) {
    if (!s || !s.thresholds) return [];
    return s.thresholds.map((th) => ({ v: th.value, color: th.severity === "critical" ? C.vermillion : C.orange, label: th.expr + " " + th.op + " " + th.value }));
  }

  function frame(canvas) {
    const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0); g.clearRect(0, 0, w, h); g.font = "11px system-ui";
    return { g, w, h };
  }
  function emptyText(g, text) { g.fillStyle = "#9aa7b4"; g.font = "12px system-ui"; g.fillText(text, 12, 20); }
  function drawSleep(canvas, s, t0, t1, empty) {
    const { g, w, h } = frame(canvas);
    const seg = s && s.segments;
    const n = seg ? seg.t.filter((t, i) => t + seg.duration_s[i] * 1000 >= t0 && t <= t1).length : 0;
    canvas.dataset.points = String(n);
    if (!n) { emptyText(g, empty); canvas.setAttribute("aria-label", "Sleep stages: none"); return; }
    const L = 44, R = 10, T = 6, B = 18, rows = 4, rh = (h - T - B) / rows;
    const x = (t) => L + (Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0) * (w - L - R);
    ["wake", "REM", "light", "deep"].forEach((name, i) => { g.fillStyle = "#9aa7b4"; g.fillText(name, 4, T + i * rh + rh / 2 + 4); });
    const mins = {}, level = (st) => (stageLevel[st] !== undefined ? stageLevel[st] : 2);
    // A thin step line joins consecutive stages, as hypnograms draw them.
    g.strokeStyle = "#5b6b7a"; g.lineWidth = 1; g.beginPath();
    let end = null;
    for (let i = 0; i < seg.t.length; i++) {
      const a = seg.t[i], b = a + seg.duration_s[i] * 1000, yy = T + level(seg.stage[i]) * rh + rh / 2;
      if (b < t0 || a > t1) continue;
      if (end !== null && a - end < 60e3) g.lineTo(x(a), yy); else g.moveTo(x(a), yy);
      g.lineTo(x(b), yy); end = b;
    }
    g.stroke();
    for (let i = 0; i < seg.t.length; i++) {
      const a = seg.t[i], b = a + seg.duration_s[i] * 1000, st = seg.stage[i];
      mins[st] = (mins[st] || 0) + seg.duration_s[i] / 60;
      if (b < t0 || a > t1) continue;
      g.fillStyle = stageColor[st] || C.grey;
      g.fillRect(x(a), T + level(st) * rh + 3, Math.max(1, x(b) - x(a)), rh - 6);
    }
    PL.timeAxis(g, t0, t1, L, R, w, h);
    canvas.setAttribute("aria-label", "Sleep stages: " + Object.entries(mins).map(([k, v]) => k + " " + Math.round(v) + " min").join(", "));
  }

  function drawEvents(canvas, ev, t0, t1, empty) {
    const { g, w, h } = frame(canvas);
    const list = ((ev && ev.events) || []).filter((e) => e.t >= t0 && e.t <= t1);
    canvas.dataset.points = String(list.length);
    const L = 44, R = 10, B = 18;
    const x = (t) => L + (t - t0) / (t1 - t0) * (w - L - R);
    g.fillStyle = "#9aa7b4"; g.fillText("alerts", 4, 30); g.fillText("anomaly", 4, 70);
    g.strokeStyle = "#2a3642"; g.beginPath(); g.moveTo(L, 26); g.lineTo(w - R, 26); g.moveTo(L, 66); g.lineTo(w - R, 66); g.stroke();
    PL.timeAxis(g, t0, t1, L, R, w, h);
    if (!list.length) { g.fillStyle = "#9aa7b4"; g.fillText(empty.replace("readings", "alerts or anomalies"), L + 8, h - B - 10); canvas.setAttribute("aria-label", "Alerts and anomalies: none"); return; }
    for (const e of list) {
      const xx = x(e.t);
      if (e.type === "alert") {
        g.fillStyle = g.strokeStyle = e.severity === "critical" ? C.vermillion : C.orange;
        g.beginPath(); g.moveTo(xx, 18); g.lineTo(xx - 5, 30); g.lineTo(xx + 5, 30); g.closePath();
        e.state === "resolved" ? g.stroke() : g.fill();
      } else {
        g.fillStyle = C.sky; g.beginPath(); g.arc(xx, 66, 4, 0, 7); g.fill();
      }
    }
    const na = list.filter((e) => e.type === "alert").length;
    canvas.setAttribute("aria-label", "Alerts and anomalies: " + na + " alert changes, " + (list.length - na) + " anomalies");
  }

  function drawECG(canvas, s, empty) {
    const { g, w, h } = frame(canvas);
    const beats = (s && s.beats) || [];
    const counts = s && s.counts ? Object.entries(s.counts).sort().map(([k, v]) => k + " " + v.toLocaleString()).join(" · ") : "";
    $("ecgCounts").textContent = counts ? "· beats in range: " + counts : "";
    const L = 8, R = 8, T = 22, B = 16;
    let trace = [], marks = [];
    if (s && s.samples && s.samples.length) {
      trace = s.samples;
      for (const b of beats) marks.push({ i: (b.t - s.start) / 1000 * s.fs, b });
    } else {
      for (const b of beats) { marks.push({ i: trace.length + 8, b }); /* the beat's R peak is at its start */ trace = trace.concat(b.samples || []); }
    }
    canvas.dataset.points = String(trace.length);
    if (!trace.length) { emptyText(g, empty.replace("readings", "ECG")); canvas.setAttribute("aria-label", "ECG strip: none"); return; }
    let lo = Infinity, hi = -Infinity;
    for (const v of trace) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (hi <= lo) hi = lo + 1;
    const x = (i) => L + i / Math.max(1, trace.length - 1) * (w - L - R), y = (v) => T + (1 - (v - lo) / (hi - lo)) * (h - T - B);
    g.strokeStyle = C.green; g.lineWidth = 1.2; g.beginPath();
    trace.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v)))); g.stroke();
    g.font = "bold 12px system-ui";
    for (const m of marks) {
      const label = (m.b.class || "?") + (m.b.label && m.b.label !== m.b.class ? "/" + m.b.label : "");
      g.fillStyle = classColor[m.b.class] || C.grey;
      g.fillText(label, x(m.i) - g.measureText(label).width / 2, 14);
    }
    g.font = "11px system-ui"; g.fillStyle = "#9aa7b4";
    const first = beats.length ? beats[0].t : s.start;
    g.fillText((s.device || "") + " · " + PL.fmtClock(first), L, h - 3);
    canvas.setAttribute("aria-label", "ECG strip: " + beats.length + " beats, classes " + marks.map((m) => m.b.class || "?").join(" "));
  }

  // Text alternatives.
  const seriesRows = (kind, cols) => (table) => {
    const s = view.data && view.data[kind];
    const rows = [];
    if (s && s.t) for (let i = 0; i < s.t.length; i++) rows.push([PL.fmtClock(s.t[i]), s.n[i], ...cols.flatMap((f) => ["min", "avg", "max"].map((a) => s.fields[f] ? s.fields[f][a][i] : null))]);
    PL.fillTable(table, ["time", "readings", ...cols.flatMap((f) => [f + " min", f + " mean", f + " max"])], rows, 200);
  };
  const refreshTables = [
    PL.tableToggle($("hrTable"), seriesRows("heart_rate", fields.heart_rate)),
    PL.tableToggle($("bpTable"), seriesRows("blood_pressure", ["systolic", "diastolic"])),
    PL.tableToggle($("spo2Table"), seriesRows("spo2", fields.spo2)),
    PL.tableToggle($("stepsTable"), (table) => {
      const st = view.data && view.data.steps;
      PL.fillTable(table, ["day", "steps"], st && st.days ? st.days.day.map((d, i) => [new Date(d).toISOString().slice(0, 10), st.days.count[i]]) : []);
    }),
    PL.tableToggle($("sleepTable"), (table) => {
      const seg = view.data && view.data.sleep && view.data.sleep.segments;
      PL.fillTable(table, ["start", "stage", "minutes"], seg ? seg.t.map((t, i) => [PL.fmtClock(t), seg.stage[i], seg.duration_s[i] / 60]) : [], 300);
    }),
    PL.tableToggle($("eventsTable"), (table) => {
      const ev = (view.data && view.data.events && view.data.events.events) || [];
      PL.fillTable(table, ["time", "type", "name", "kind", "state / score"], ev.map((e) => [PL.fmtClock(e.t), e.type, e.name, e.kind, e.state || (e.score != null ? e.score.toFixed(2) : "")]), 300);
    }),
    PL.tableToggle($("ecgTable"), (table) => {
      const beats = (view.data && view.data.ecg && view.data.ecg.beats) || [];
      PL.fillTable(table, ["time", "class", "score", "reference label"], beats.map((b) => [PL.fmtClock(b.t), b.class, b.score, b.label]));
    }),
  ];

  $("ranges").addEventListener("click", (ev) => { const b = ev.target.closest("button"); if (b) setRange(b.dataset.range); });
  $("custom").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  $("tokenForm").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem("pulselake-token", $("tokenInput").value.trim());
    $("tokenForm").hidden = true; $("forget").hidden = false;
    setRange(range);
  });
  $("forget").addEventListener("click", () => { PL.forget(); location.href = "/"; });
  const local = (t) => { const d = new Date(t - new Date(t).getTimezoneOffset() * 60e3); return d.toISOString().slice(0, 16); };
  $("from").value = local(Date.now() - 86400e3); $("to").value = local(Date.now());
  PL.keepToken();
  if (!PL.token()) { $("tokenForm").hidden = false; PL.setStatus("a read token is needed", "err"); }
  else { $("forget").hidden = false; setRange(ranges[range] || range === "custom" ? range : "24h"); }
  (function loop() { if (range === "live" && view.data) render(); setTimeout(() => requestAnimationFrame(loop), 1000); })();
  let resized = null;
  window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(render, 200); });
})();
