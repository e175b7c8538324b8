// Entry point: tabs, language switch, server health, the passage drawer and error reporting.
import { applyStatic, getLang, setLang, t } from "./i18n.js";
import { api, banner, clear, el } from "./util.js";
import { initChat, renderChat } from "./chat.js";
import { initAdmin, showAdmin } from "./admin.js";
import { closePassage } from "./passage.js";

let view = sessionStorage.getItem("kb.view") === "admin" ? "admin" : "chat";

// Errors anywhere become a visible message, never a blank or silently stuck page.
window.addEventListener("error", (e) => banner(t("banner.jsError", { msg: e.message })));
window.addEventListener("unhandledrejection", (e) => banner(t("banner.jsError", { msg: e.reason?.message || String(e.reason) })));

// Counts and the model name come only with the admin key (when the server has one); without it
// /healthz gives the status and the versions, and the line shows just those.
function health() {
  const key = sessionStorage.getItem("kb.adminKey");
  return api("/healthz", { headers: key ? { Authorization: `Bearer ${key}` } : {} });
}

export async function refreshHealth() {
  const node = document.getElementById("health");
  try {
    const h = await health();
    if (h.status !== "ok") { clear(node, el("span", { class: "warn-text" }, t("health.none"))); return; }
    const has = (v) => v !== undefined && v !== null;
    clear(node, [t("health.index", { v: h.index_version }), has(h.documents) && t("health.docs", { n: h.documents }),
                 has(h.chunks) && t("health.chunks", { n: h.chunks }),
                 has(h.glossary_terms) && t("health.terms", { n: h.glossary_terms }), h.generator].filter(Boolean).join(" · "));
    node.dataset.version = h.index_version;
  } catch {
    clear(node, el("span", { class: "bad-text" }, t("health.down")));
  }
}

function show(next) {
  view = next;
  sessionStorage.setItem("kb.view", view);
  for (const name of ["chat", "admin"]) {
    document.getElementById(`view-${name}`).classList.toggle("hidden", name !== view);
    const tab = document.getElementById(`tab-${name}`);
    tab.classList.toggle("active", name === view);
    tab.setAttribute("aria-selected", String(name === view));
  }
  if (view === "admin") showAdmin(); else document.getElementById("question").focus();
}

function relabel() {
  applyStatic();
  document.getElementById("lang").textContent = t("lang.switch");
  document.getElementById("lang").title = t("lang.switchTitle");
  renderChat();
  if (view === "admin") showAdmin();
  refreshHealth();
}

function start() {
  setLang(getLang());
  applyStatic();
  document.getElementById("lang").textContent = t("lang.switch");
  document.getElementById("lang").addEventListener("click", () => { setLang(getLang() === "zh" ? "en" : "zh"); relabel(); });
  document.getElementById("tab-chat").addEventListener("click", () => show("chat"));
  document.getElementById("tab-admin").addEventListener("click", () => show("admin"));
  document.getElementById("passage-close").addEventListener("click", closePassage);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePassage(); });
  initChat();
  initAdmin();
  show(view);
  refreshHealth();
  document.body.dataset.ready = "1";  // for tests and for anyone wondering whether the script ran
}

start();
