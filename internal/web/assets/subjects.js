// pulselake subject list (/subjects): GET /v1/subjects with a search, each subject's latest
// reading and firing alerts; a token bound to one subject goes straight to its view.
(function () {
  "use strict";
  const { $ } = PL;
  let timer = null, seq = 0;

  function ago(t) {
    const s = Math.max(0, (Date.now() - Date.parse(t)) / 1000);
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  async function load() {
    const my = ++seq;
    const q = $("search").value.trim();
    let body;
    try {
      body = await PL.api("/v1/subjects?limit=200" + (q ? "&q=" + encodeURIComponent(q) : ""));
    } catch (e) {
      if (e.status === 401 || e.status === 403) { PL.forget(); $("tokenForm").hidden = false; }
      PL.setStatus(e.message, "err");
      return;
    }
    if (my !== seq) return;
    if (body.bound_subject) { location.replace("/subjects/" + encodeURIComponent(body.bound_subject)); return; }
    PL.setStatus(body.subjects.length + " subjects", "");
    const tb = $("subjects").tBodies[0];
    tb.innerHTML = "";
    if (!body.subjects.length) { const td = tb.insertRow().insertCell(); td.colSpan = 5; td.className = "muted"; td.textContent = q ? "no subject matches" : "no readings in the lake yet"; }
    for (const s of body.subjects) {
      const tr = tb.insertRow();
      const a = document.createElement("a");
      a.href = "/subjects/" + encodeURIComponent(s.subject); a.textContent = s.subject;
      tr.insertCell().appendChild(a);
      const c = tr.insertCell(); c.textContent = ago(s.last_reading); c.title = new Date(s.last_reading).toLocaleString();
      tr.insertCell().textContent = s.kinds.join(", ");
      tr.insertCell().textContent = s.readings.toLocaleString();
      const f = tr.insertCell();
      if (s.firing_alerts) { const b = document.createElement("span"); b.className = "badge"; b.textContent = s.firing_alerts; f.appendChild(b); } else f.textContent = "0";
    }
    $("more").hidden = !body.truncated;
  }

  $("search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 250); });
  $("tokenForm").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem("pulselake-token", $("tokenInput").value.trim());
    $("tokenForm").hidden = true;
    load();
  });
  PL.keepToken();
  if (!PL.token()) { $("tokenForm").hidden = false; PL.setStatus("a read token is needed", "err"); } else load();
})();
