// pulselake sources page: wearable cloud connections (GET /v1/connections, POST
// /v1/connect/{provider}) and uploads of exports (POST /v1/imports, progress from GET
// /v1/imports/{id}). The token is the one the dashboard keeps in this browser's localStorage.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const key = "pulselake-token";
  if (location.hash.includes("token=")) {
    localStorage.setItem(key, new URLSearchParams(location.hash.slice(1)).get("token"));
    history.replaceState(null, "", "/sources");
  }
  const token = () => localStorage.getItem(key);
  const setStatus = (text, cls) => { const s = $("status"); s.textContent = text; s.className = "status " + (cls || ""); };

  async function api(method, path, body, headers) {
    const resp = await fetch(path, { method, body, headers: Object.assign({ Authorization: "Bearer " + token() }, headers || {}) });
    let data = null;
    try { data = await resp.json(); } catch (e) { /* no JSON body */ }
    return { status: resp.status, data };
  }
  const errText = (r) => (r.data && r.data.error ? r.data.error.message : "HTTP " + r.status);

  function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text == null ? "" : text; if (cls) td.className = cls; tr.appendChild(td); }

  async function loadConnections() {
    const note = $("connectionsNote"), tbody = $("connections").querySelector("tbody");
    const r = await api("GET", "/v1/connections");
    tbody.textContent = "";
    if (r.status === 404) {
      note.hidden = false;
      note.textContent = "Wearable cloud connections are not available on this server (GET /v1/connections answered 404): this version has no connectors. Exports can still be imported here.";
      return;
    }
    if (r.status !== 200) { note.hidden = false; note.textContent = "Could not list connections: " + errText(r); return; }
    const list = (r.data && r.data.connections) || [];
    note.hidden = list.length > 0;
    note.textContent = "No connections yet.";
    for (const c of list) {
      const tr = document.createElement("tr");
      cell(tr, c.provider); cell(tr, c.subject); cell(tr, c.status, c.status === "ok" ? "" : "sev-warning");
      cell(tr, (c.data_types || []).join(", ")); cell(tr, c.last_sync ? new Date(c.last_sync).toLocaleString() : "never");
      cell(tr, c.last_error || "", c.last_error ? "sev-critical" : "");
      tbody.appendChild(tr);
    }
  }

  $("connectForm").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const provider = ev.submitter ? ev.submitter.dataset.provider : "google-health";
    const subject = $("connectSubject").value.trim();
    const r = await api("POST", "/v1/connect/" + encodeURIComponent(provider) + "?subject=" + encodeURIComponent(subject));
    if (r.status === 404) { setStatus("connecting " + provider + " is not available on this server", "err"); return; }
    if (r.status !== 200 || !r.data || !r.data.url) { setStatus("connect failed: " + errText(r), "err"); return; }
    location.assign(r.data.url);
  });

  function showImport(li, s) {
    const pct = s.bytes_total ? Math.floor(100 * s.bytes / s.bytes_total) : 0;
    li.dataset.state = s.state;
    li.textContent = s.format + " for " + s.subject + ": " + s.state + " — " + pct + "% of " + (s.bytes_total / 1048576).toFixed(1) + " MiB, " +
      s.accepted + " accepted, " + s.duplicates + " duplicates, " + s.rejected + " rejected" + (s.error ? " — " + s.error : "");
    li.className = s.state === "failed" ? "sev-critical" : "";
  }

  async function follow(id, li) {
    for (;;) {
      const r = await api("GET", "/v1/imports/" + encodeURIComponent(id));
      if (r.status !== 200) { li.textContent = "import " + id + ": " + errText(r); return; }
      showImport(li, r.data);
      if (r.data.state === "done" || r.data.state === "failed") return;
      await new Promise((res) => setTimeout(res, 1000));
    }
  }

  $("uploadForm").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const file = $("uploadFile").files[0];
    if (!file) return;
    const q = new URLSearchParams();
    if ($("uploadSubject").value.trim()) q.set("subject", $("uploadSubject").value.trim());
    if ($("uploadFormat").value) q.set("format", $("uploadFormat").value);
    const li = document.createElement("li");
    li.textContent = "uploading " + file.name + " (" + (file.size / 1048576).toFixed(1) + " MiB)…";
    $("imports").prepend(li);
    const r = await api("POST", "/v1/imports?" + q.toString(), file, { "Content-Type": "application/octet-stream" });
    if (r.status === 404) { li.textContent = "this server does not take uploads (POST /v1/imports answered 404)"; return; }
    if (r.status !== 202) { li.className = "sev-critical"; li.textContent = file.name + ": " + errText(r); return; }
    li.id = "import-" + r.data.id;
    follow(r.data.id, li);
  });

  $("tokenForm").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem(key, $("tokenInput").value.trim());
    location.reload();
  });
  $("forget").addEventListener("click", () => { localStorage.removeItem(key); location.reload(); });

  if (!token()) { $("tokenForm").hidden = false; setStatus("a token is needed", "err"); return; }
  $("forget").hidden = false;
  loadConnections().catch((e) => setStatus("could not reach the server: " + e, "err"));
})();
