// Admin view: uploads, jobs, documents, index and adapter versions, the glossary, evaluation.
// The admin key is asked for once per tab session and kept in sessionStorage (never in the page).
import { t } from "./i18n.js";
import { api, ApiError, clear, el, fmtBytes, fmtNumber, fmtTime } from "./util.js";
import { refreshHealth } from "./app.js";

const KEY = "kb.adminKey";
const ACTIVE = ["queued", "running"];
let section = "docs";
let watching = null;    // the job id the live panel follows
let glossary = null;    // {revision, published, entries, files, versions, dirty}

const $ = (id) => document.getElementById(id);
const key = () => sessionStorage.getItem(KEY);

function adminApi(path, options = {}) {
  return api(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${key()}` } })
    .catch((err) => {
      if (err instanceof ApiError && err.status === 401) { signOut(t("admin.sessionEnded")); }
      throw err;
    });
}

export function initAdmin() {
  $("login").addEventListener("submit", (e) => { e.preventDefault(); signIn($("admin-key").value.trim()); });
  $("logout").addEventListener("click", () => signOut());
  for (const button of document.querySelectorAll("[data-admin-section]")) {
    button.addEventListener("click", () => showSection(button.dataset.adminSection));
  }
  initUpload();
  $("job-reindex").addEventListener("click", () => startJob("/admin/reindex", { full: false }));
  $("job-full").addEventListener("click", () => startJob("/admin/reindex", { full: true }));
  $("job-retrain").addEventListener("click", () => startJob("/admin/retrain"));
  $("idx-rollback").addEventListener("click", () => publish("/admin/indexes/rollback", "idx"));
  $("ad-rollback").addEventListener("click", () => publish("/admin/adapters/rollback", "ad"));
  initGlossary();
  $("ev-open").addEventListener("click", openReport);
}

/** Called when the admin tab is shown (and when the language changes). */
export function showAdmin() {
  const signedIn = Boolean(key());
  $("login").classList.toggle("hidden", signedIn);
  $("admin").classList.toggle("hidden", !signedIn);
  if (signedIn) showSection(section);
  else $("admin-key").focus();
}

async function signIn(candidate) {
  const error = $("login-error");
  error.classList.add("hidden");
  $("admin-key").value = "";
  if (!candidate) return;
  try {
    await api("/admin/jobs?limit=1", { headers: { Authorization: `Bearer ${candidate}` } });
  } catch (err) {
    const message = err.status === 401 ? t("admin.wrongKey") : err.status === 403 ? t("admin.disabled") : t("common.error", { msg: err.message });
    clear(error, message);
    error.classList.remove("hidden");
    return;
  }
  sessionStorage.setItem(KEY, candidate);
  showAdmin();
  refreshHealth();  // the key shows the counts and the model in the header line
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  watching = null;
  glossary = null;
  const error = $("login-error");
  if (message) { clear(error, message); error.classList.remove("hidden"); } else error.classList.add("hidden");
  showAdmin();
}

function showSection(name) {
  section = name;
  for (const button of document.querySelectorAll("[data-admin-section]")) button.classList.toggle("active", button.dataset.adminSection === name);
  for (const panel of document.querySelectorAll("[data-admin-panel]")) panel.classList.toggle("hidden", panel.dataset.adminPanel !== name);
  const loaders = { docs: () => Promise.all([loadDocuments(), loadJobs()]), versions: () => Promise.all([loadIndexes(), loadAdapters()]),
                    glossary: () => loadGlossary(false), eval: loadEval };
  loaders[name]?.();
}

function status(node, message, kind = "info") {
  clear(node, message ? el("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message) : null);
}

// --- upload ----------------------------------------------------------------------------------
function initUpload() {
  const zone = $("dropzone");
  const input = $("file-input");
  $("choose-files").addEventListener("click", () => input.click());
  input.addEventListener("change", () => { upload([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    upload([...(e.dataTransfer?.files || [])]);
  });
}

async function upload(files) {
  if (!files.length) return;
  const kind = document.querySelector("input[name=upload-kind]:checked")?.value === "glossary" ? "glossary" : "documents";
  const list = $("upload-results");
  clear(list);
  let stored = 0;
  // One request per file, so one refused file does not hold back the others and each gets its own result.
  for (const file of files) {
    const row = el("li", { class: "pending", "data-testid": "upload-result", "data-name": file.name }, el("b", {}, file.name), " ", t("upload.sending"));
    list.append(row);
    const form = new FormData();
    form.append("files", file, file.name);
    try {
      const result = await adminApi(`/admin/${kind}`, { method: "POST", form });
      for (const item of result.stored) {
        const label = item.status === "unchanged" ? t("upload.unchanged") : item.status === "glossary"
          ? t("upload.glossary", { n: item.glossary_entries ?? "?" }) : t("upload.stored");
        clear(row, el("b", {}, item.name), " ", el("span", { class: `badge ${item.status === "unchanged" ? "muted-badge" : "ok"}` }, label),
          " ", el("span", { class: "muted" }, `${item.kind} · ${fmtBytes(item.bytes)}`),
          item.warnings?.length ? el("ul", { class: "warnings" }, item.warnings.map((w) => el("li", { class: "warn" }, "⚠ " + w))) : null);
        row.className = item.warnings?.length ? "warn" : "ok";
        row.dataset.status = item.status;
        if (item.status !== "unchanged") stored += 1;
      }
    } catch (err) {
      if (!key()) return;
      clear(row, el("b", {}, file.name), " ", el("span", { class: "badge bad" }, t("upload.refused", { msg: err.message })));
      row.className = "bad";
      row.dataset.status = "refused";
    }
  }
  if (stored) {
    list.append(el("li", { class: "hint" }, t("upload.publishHint"), " ",
      el("button", { type: "button", onclick: () => startJob("/admin/reindex", { full: false }) }, t("upload.reindexNow"))));
  }
  loadDocuments();
}

// --- jobs ------------------------------------------------------------------------------------
async function startJob(path, body) {
  showSection("docs");
  try {
    const job = await adminApi(path, { method: "POST", body });
    follow(job.id);
    loadJobs();
  } catch (err) {
    status($("job-live"), t("common.error", { msg: err.message }), "error");
  }
}

async function loadJobs() {
  try {
    const { jobs } = await adminApi("/admin/jobs?limit=8");
    const table = $("jobs-table");
    clear(table);
    if (!jobs.length) { table.append(el("tr", {}, el("td", { class: "muted" }, t("jobs.none")))); return; }
    table.append(el("tr", {}, ["kind", "state", "progress", "started", "result"].map((c) => el("th", {}, t(`jobs.col.${c}`)))));
    for (const job of jobs) {
      table.append(el("tr", { class: "clickable", onclick: () => follow(job.id) },
        el("td", { class: "nowrap" }, t(`jobs.kind.${job.kind}`), job.params?.full ? ` (${t("idx.full")})` : ""),
        el("td", {}, el("span", { class: `badge state-${job.state}` }, t(`state.${job.state}`))),
        el("td", {}, `${Math.round(job.progress)}%`),
        el("td", { class: "nowrap" }, fmtTime(job.started_at || job.created_at)),
        el("td", { class: "muted" }, job.error || (job.result?.version ? t("jobs.published", { v: shortVersion(job.result.version) }) : job.result?.adapter_version || ""))));
    }
    const active = jobs.find((j) => ACTIVE.includes(j.state));
    if (active && watching !== active.id) follow(active.id);
    else if (!watching && jobs.length) renderJob(jobs[0]);
  } catch (err) {
    status($("job-live"), t("common.error", { msg: err.message }), "error");
  }
}

function renderJob(job) {
  const live = $("job-live");
  clear(live,
    el("div", { class: "job-head" },
      el("b", {}, t(`jobs.kind.${job.kind}`)), " ",
      el("span", { class: `badge state-${job.state}`, "data-testid": "job-state", "data-state": job.state }, t(`state.${job.state}`)), " ",
      el("span", { class: "muted" }, `${Math.round(job.progress)}% · ${job.id}`),
      ACTIVE.includes(job.state) ? el("button", { class: "link", type: "button", onclick: () => adminApi(`/admin/jobs/${job.id}/cancel`, { method: "POST" }).then(renderJob) }, t("jobs.cancel")) : null),
    el("progress", { max: 100, value: Math.round(job.progress), "data-testid": "job-progress" }),
    job.error ? el("div", { class: "notice error" }, job.error) : null,
    el("pre", { class: "log", "data-testid": "job-log" }, (job.log_tail || []).slice(-30).join("\n")));
  const log = live.querySelector(".log");
  log.scrollTop = log.scrollHeight;
}

async function follow(id) {
  watching = id;
  for (;;) {
    if (watching !== id || !key()) return;
    let job;
    try { job = await adminApi(`/admin/jobs/${id}`); } catch { return; }
    if (watching !== id) return;
    renderJob(job);
    if (!ACTIVE.includes(job.state)) {
      loadJobs();
      loadDocuments();
      refreshHealth();
      return;
    }
    await new Promise((r) => setTimeout(r, 600));
  }
}

/** "20261201T214506Z-b5483f" -> "12-01 21:45:06" (the full name is in the cell's title). */
function shortVersion(version) {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z/.exec(version || "");
  return m ? `${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]}` : version || "–";
}

// --- documents -------------------------------------------------------------------------------
async function loadDocuments() {
  const table = $("docs-table");
  try {
    const { documents } = await adminApi("/admin/documents");
    clear(table);
    if (!documents.length) { table.append(el("tr", {}, el("td", { class: "muted" }, t("docs.none")))); return; }
    table.append(el("tr", {}, ["name", "state", "size", "since", "chunks", "facts", "notes"].map((c) => el("th", {}, t(`docs.col.${c}`))), el("th", {})));
    for (const doc of documents) {
      const notes = [...(doc.error ? [doc.error] : []), ...(doc.warnings || []), ...(doc.duplicate_of ? [t("docs.duplicateOf", { name: doc.duplicate_of })] : [])];
      table.append(el("tr", { "data-testid": "document", "data-name": doc.name, "data-state": doc.state },
        el("td", {}, doc.name, doc.title && doc.title !== doc.name ? el("div", { class: "muted small" }, doc.title) : null),
        el("td", {}, el("span", { class: `badge doc-${doc.state}` }, t(`docs.state.${doc.state}`))),
        el("td", { class: "num-cell" }, fmtBytes(doc.bytes)),
        el("td", { class: "mono small nowrap", title: doc.since || "" }, shortVersion(doc.since)),
        el("td", { class: "num-cell" }, doc.chunks ?? "–"),
        el("td", { class: "num-cell" }, doc.facts ?? "–"),
        el("td", { class: "small" }, notes.map((n) => el("div", { class: doc.error ? "bad-text" : "warn-text" }, n))),
        el("td", {}, doc.state !== "removed" ? deleteButton(doc.name) : null)));
    }
  } catch (err) {
    clear(table, el("tr", {}, el("td", { class: "bad-text" }, t("common.error", { msg: err.message }))));
  }
}

function deleteButton(name) {
  // Two clicks instead of a confirm() dialog: nothing modal, nothing a test has to dismiss.
  const button = el("button", { class: "link danger", type: "button" }, t("docs.delete"));
  button.addEventListener("click", async () => {
    if (!button.dataset.armed) { button.dataset.armed = "1"; button.textContent = t("docs.confirm"); return; }
    try {
      await adminApi(`/admin/documents/${name.split("/").map(encodeURIComponent).join("/")}`, { method: "DELETE" });
      status($("docs-status"), t("docs.deleted", { name }));
    } catch (err) { status($("docs-status"), t("common.error", { msg: err.message }), "error"); }
    loadDocuments();
  });
  return button;
}

// --- versions --------------------------------------------------------------------------------
async function publish(path, which) {
  const node = $(`${which}-status`);
  try {
    const result = await adminApi(path, { method: "POST" });
    status(node, t("idx.published", { v: result.version }));
  } catch (err) {
    status(node, t("common.error", { msg: err.message }), "error");
  }
  if (which === "idx") { loadIndexes(); refreshHealth(); } else loadAdapters();
}

async function loadIndexes() {
  const table = $("idx-table");
  try {
    const { versions } = await adminApi("/admin/indexes");
    const current = versions.find((v) => v.current);
    $("idx-rollback").disabled = !current || !versions.some((v) => v.version === current.previous);
    clear(table, el("tr", {}, ["version", "created", "docs", "chunks", "facts", "terms", "build", "errors"].map((c) => el("th", {}, t(`idx.col.${c}`))), el("th", {})));
    for (const v of versions) {
      table.append(el("tr", { class: v.current ? "current" : "", "data-testid": "index-version", "data-version": v.version, "data-current": String(v.current) },
        el("td", { class: "mono" }, v.version, v.current ? el("span", { class: "badge ok" }, t("idx.current")) : null),
        el("td", {}, fmtTime(v.created_at)),
        el("td", { class: "num-cell" }, v.documents ?? "–"), el("td", { class: "num-cell" }, v.chunks ?? "–"),
        el("td", { class: "num-cell" }, v.facts ?? "–"), el("td", { class: "num-cell" }, v.glossary_entries ?? "–"),
        el("td", { class: "small" }, `${v.full ? t("idx.full") : t("idx.incremental")} · ${fmtNumber(v.seconds, 1)} s`),
        el("td", { class: v.errors ? "bad-text num-cell" : "num-cell" }, v.errors),
        el("td", {}, v.current ? null : el("button", { type: "button", class: "small-btn", onclick: () => publish(`/admin/indexes/${encodeURIComponent(v.version)}/publish`, "idx") }, t("idx.publish")))));
    }
  } catch (err) {
    clear(table, el("tr", {}, el("td", { class: "bad-text" }, t("common.error", { msg: err.message }))));
  }
}

async function loadAdapters() {
  const table = $("ad-table");
  try {
    const { versions, serving_router: router } = await adminApi("/admin/adapters");
    clear($("ad-serving"), t("ad.serving", { r: router || "–" }));
    $("ad-rollback").disabled = versions.length < 2;
    clear(table);
    if (!versions.length) { table.append(el("tr", {}, el("td", { class: "muted" }, t("ad.none")))); return; }
    table.append(el("tr", {}, el("th", {}, t("idx.col.version")), el("th", {}, t("ad.col.status")), el("th", {}, t("idx.col.created")),
      el("th", {}, t("ad.col.metrics")), el("th", {})));
    for (const v of versions) {
      const metrics = Object.entries(v.metrics || {}).filter(([, x]) => typeof x === "number");
      table.append(el("tr", { class: v.current ? "current" : "", "data-testid": "adapter-version", "data-version": v.version },
        el("td", { class: "mono" }, v.version, v.current ? el("span", { class: "badge ok" }, t("idx.current")) : null),
        el("td", {}, el("span", { class: `badge ${v.status === "published" ? "ok" : "muted-badge"}` }, t(`ad.status.${v.status}`) || v.status)),
        el("td", {}, fmtTime(v.created_at)),
        el("td", { class: "small" }, metrics.map(([k, x]) => el("span", { class: "metric" }, `${k} ${fmtNumber(x)}`))),
        el("td", {}, v.current ? null : el("button", { type: "button", class: "small-btn", onclick: () => publish(`/admin/adapters/${encodeURIComponent(v.version)}/publish`, "ad") }, t("idx.publish")))));
    }
  } catch (err) {
    clear(table, el("tr", {}, el("td", { class: "bad-text" }, t("common.error", { msg: err.message }))));
  }
}

// --- glossary --------------------------------------------------------------------------------
function initGlossary() {
  $("gl-filter").addEventListener("input", renderGlossary);
  $("gl-add-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const term = $("gl-new-term").value.trim();
    const english = $("gl-new-english").value.trim();
    const chinese = $("gl-new-chinese").value.trim();
    if (!term || !(english || chinese) || !glossary) { status($("gl-status"), t("gl.needTerm"), "error"); return; }
    const existing = glossary.entries.find((x) => x.term.toLowerCase() === term.toLowerCase());
    if (existing) { existing.meanings.push({ english, chinese }); status($("gl-status"), t("gl.exists", { t: existing.term })); }
    else { glossary.entries.unshift({ term, meanings: [{ english, chinese }], source: "" }); status($("gl-status"), ""); }
    for (const id of ["gl-new-term", "gl-new-english", "gl-new-chinese"]) $(id).value = "";
    changed();
  });
  $("gl-save").addEventListener("click", saveGlossary);
  $("gl-discard").addEventListener("click", () => loadGlossary(true));
}

async function loadGlossary(force) {
  if (glossary && glossary.dirty && !force) { renderGlossary(); return; }
  try {
    const data = await adminApi("/admin/glossary");
    glossary = { ...data, entries: data.entries.map((e) => ({ term: e.term, source: e.source, meanings: e.meanings.map((m) => ({ ...m })) })), dirty: 0 };
    status($("gl-status"), "");
    renderGlossary();
  } catch (err) {
    status($("gl-status"), t("common.error", { msg: err.message }), "error");
  }
}

function changed(rerender = true) {
  glossary.dirty += 1;
  if (rerender) renderGlossary(); else renderCounters();
}

function renderCounters() {
  clear($("gl-changes"), glossary.dirty ? t("gl.changes", { n: glossary.dirty }) : t("gl.noChanges"));
  $("gl-save").disabled = !glossary.dirty;
  $("gl-discard").disabled = !glossary.dirty;
}

function renderGlossary() {
  if (!glossary) return;
  clear($("gl-info"),
    el("span", { class: glossary.published ? "ok-text" : "warn-text", "data-testid": "glossary-published", "data-published": String(glossary.published) },
      glossary.published ? t("gl.published") : t("gl.unpublished")), " · ",
    t("gl.files", { f: glossary.files.map((f) => f.name).join(", ") || "–" }), " · ", t("gl.versions", { n: glossary.versions.length }));
  renderCounters();
  const needle = $("gl-filter").value.trim().toLowerCase();
  const matches = glossary.entries.filter((e) => !needle || e.term.toLowerCase().includes(needle)
    || e.meanings.some((m) => `${m.english} ${m.chinese}`.toLowerCase().includes(needle)));
  const shown = matches.slice(0, 200);
  const table = $("gl-table");
  clear(table, el("tr", {}, el("th", {}, t("gl.term")), el("th", {}, t("gl.english")), el("th", {}, t("gl.chinese")), el("th", {})));
  for (const entry of shown) {
    entry.meanings.forEach((meaning, i) => {
      const input = (field) => {
        const box = el("input", { type: "text", value: meaning[field], "aria-label": `${entry.term} ${t(`gl.${field}`)}`, "data-field": field });
        box.addEventListener("change", () => { meaning[field] = box.value.trim(); changed(false); });
        return box;
      };
      const first = i === 0;
      table.append(el("tr", { "data-testid": "glossary-row", "data-term": entry.term, class: first ? "first" : "" },
        el("td", { class: "term-cell" }, first ? el("b", {}, entry.term) : null),
        el("td", {}, input("english")), el("td", {}, input("chinese")),
        el("td", { class: "row-actions" },
          entry.meanings.length > 1 ? el("button", { type: "button", class: "link danger", title: t("gl.deleteMeaning"),
            onclick: () => { entry.meanings.splice(i, 1); changed(); } }, "✕") : null,
          first ? el("button", { type: "button", class: "link", onclick: () => { entry.meanings.push({ english: "", chinese: "" }); changed(); } }, "＋ " + t("gl.addMeaning")) : null,
          first ? el("button", { type: "button", class: "link danger", "data-testid": "delete-term",
            onclick: () => { glossary.entries.splice(glossary.entries.indexOf(entry), 1); changed(); } }, t("gl.deleteTerm")) : null)));
    });
  }
  clear($("gl-count"), t("gl.showing", { shown: shown.length, total: glossary.entries.length }));
}

async function saveGlossary() {
  if (!glossary) return;
  const entries = glossary.entries.map((e) => ({ term: e.term, meanings: e.meanings.filter((m) => m.english || m.chinese) }));
  const empty = entries.find((e) => !e.meanings.length);
  if (empty) { status($("gl-status"), t("gl.emptyMeaning", { t: empty.term }), "error"); return; }
  try {
    const saved = await adminApi("/admin/glossary", { method: "PUT", body: { entries, base_revision: glossary.revision } });
    glossary.dirty = 0;
    await loadGlossary(true);
    status($("gl-status"), el("span", { "data-testid": "glossary-saved" }, t("gl.saved", { v: saved.version, n: saved.terms }), " ",
      el("button", { type: "button", onclick: () => startJob("/admin/reindex", { full: false }) }, t("upload.reindexNow"))));
  } catch (err) {
    if (err.status === 409) status($("gl-status"), el("span", {}, t("gl.conflict"), " ", el("button", { type: "button", onclick: () => loadGlossary(true) }, t("gl.reload"))), "error");
    else status($("gl-status"), t("common.error", { msg: err.message }), "error");
  }
}

// --- evaluation ------------------------------------------------------------------------------
async function loadEval() {
  const box = $("ev-body");
  $("ev-open").classList.add("hidden");
  $("ev-frame").classList.add("hidden");
  try {
    const report = await adminApi("/admin/eval");
    const systems = Object.keys(report.metrics || {});
    const config = Object.entries(report.config || {}).filter(([, v]) => v !== null && typeof v !== "object");
    clear(box,
      el("p", { class: "muted" }, t("ev.written", { t: fmtTime(report.written_at) }), " · ", report.report_dir),
      el("table", { class: "grid", "data-testid": "eval-summary" },
        el("tr", {}, el("th", {}, t("ev.metric")), systems.map((s) => el("th", {}, t(`ev.${s}`)))),
        report.summary.map((row) => el("tr", {}, el("td", {}, row.metric),
          systems.map((s) => el("td", { class: "num-cell" }, row.values[s] === null || row.values[s] === undefined ? "–"
            : row.kind === "ms" ? Math.round(row.values[s]) : row.values[s].toFixed(3)))))),
      el("details", {}, el("summary", {}, t("ev.config")),
        el("dl", { class: "config" }, config.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]))));
    $("ev-open").classList.toggle("hidden", !report.has_html);
  } catch (err) {
    clear(box, el("p", { class: err.status === 404 ? "muted" : "bad-text" }, err.status === 404 ? t("ev.none") : t("common.error", { msg: err.message })));
  }
}

async function openReport() {
  // Fetched with the key and shown in a sandboxed frame (no scripts, no same-origin access).
  try {
    const response = await fetch("/admin/eval/report.html", { headers: { Authorization: `Bearer ${key()}` } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const frame = $("ev-frame");
    delete frame.dataset.loaded;
    frame.onload = () => { frame.dataset.loaded = "1"; };
    frame.srcdoc = await response.text();
    frame.classList.remove("hidden");
    frame.scrollIntoView({ block: "start" });
  } catch (err) {
    clear($("ev-body"), el("p", { class: "bad-text" }, t("common.error", { msg: err.message })));
  }
}
