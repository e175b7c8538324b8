// Chat view: streamed answers from POST /v1/chat/completions with the conversation so far.
// The conversation lives in sessionStorage: one per browser tab, kept across reloads.
import { t } from "./i18n.js";
import { ApiError, chatHeaders, clear, copyText, el, errorMessage, setChatKey } from "./util.js";
import { openPassage } from "./passage.js";

const STORE = "kb.chat.v1";
const HISTORY_MESSAGES = 20;  // turns sent with a question; the engine reads the last few
let turns = loadTurns();
let busy = false;

function loadTurns() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "[]");
    return Array.isArray(saved) ? saved : [];
  } catch { return []; }
}

function saveTurns() {
  try { sessionStorage.setItem(STORE, JSON.stringify(turns)); } catch { /* storage full: keep in memory */ }
}

export function initChat() {
  const form = document.getElementById("ask-form");
  const box = document.getElementById("question");
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
  });
  document.getElementById("new-chat").addEventListener("click", () => {
    turns = []; saveTurns(); renderChat(); box.focus();
  });
  renderChat();
}

function submit() {
  const box = document.getElementById("question");
  const question = box.value.trim();
  if (!question || busy) return;
  box.value = "";
  ask(question);
}

/** Re-draw the whole conversation (on load and when the language changes). */
export function renderChat() {
  const list = document.getElementById("messages");
  clear(list);
  if (!turns.length) list.append(el("p", { class: "empty-hint" }, t("chat.empty")));
  for (const turn of turns) list.append(turn.role === "user" ? userMessage(turn.content) : answerMessage(turn.kb, turn));
  scrollDown();
}

function scrollDown() {
  const list = document.getElementById("messages");
  list.scrollTop = list.scrollHeight;
}

function userMessage(text) {
  return el("article", { class: "msg user", "data-testid": "question" }, el("div", { class: "bubble" }, text));
}

function errorArticle(message, partial = "") {
  return el("article", { class: "msg error", role: "alert", "data-testid": "error" },
    partial ? el("div", { class: "answer-text" }, partial) : null,
    el("div", { class: "bubble" }, "⚠ ", message));
}

async function ask(question) {
  busy = true;
  document.getElementById("send").disabled = true;
  const list = document.getElementById("messages");
  list.querySelector(".empty-hint")?.remove();
  const history = turns.slice(-HISTORY_MESSAGES).map(({ role, content }) => ({ role, content }));
  turns.push({ role: "user", content: question });
  saveTurns();
  list.append(userMessage(question));
  const textNode = el("div", { class: "answer-text streaming" });
  const pending = el("article", { class: "msg assistant pending", "data-testid": "pending" },
    el("div", { class: "msg-head" }, el("span", { class: "spinner" }), t("chat.thinking")), textNode);
  list.append(pending);
  scrollDown();
  let streamed = "";
  let deltas = 0;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...chatHeaders() },
      body: JSON.stringify({ model: "kb-assistant", stream: true, messages: [...history, { role: "user", content: question }] }),
    });
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    let kb = null;
    for await (const data of serverEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk.error.message || "server error");
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) { streamed += piece; deltas += 1; textNode.textContent = streamed; scrollDown(); }
      if (chunk.kb) kb = chunk.kb;
    }
    if (!kb) throw new ApiError(0, "the stream ended without an answer");
    const turn = { role: "assistant", content: kb.answer, kb, deltas, question };
    turns.push(turn);
    saveTurns();
    pending.replaceWith(answerMessage(kb, turn));
  } catch (err) {
    turns.pop();  // a failed question is not part of the history the next one is read with
    saveTurns();
    if (err instanceof ApiError && err.status === 401) pending.replaceWith(keyPrompt(question));
    else pending.replaceWith(errorArticle(streamed ? t("chat.partial", { msg: err.message }) : t("chat.error", { msg: err.message }), streamed));
  } finally {
    busy = false;
    document.getElementById("send").disabled = false;
    scrollDown();
  }
}

/** Yields the data field of each server-sent event of a fetch response. */
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) yield data;
    }
  }
}

function keyPrompt(question) {
  const input = el("input", { type: "password", autocomplete: "off", "aria-label": t("chat.keyLabel") });
  const box = el("form", { class: "msg error key-prompt", role: "alert" },
    el("div", { class: "bubble" }, t("chat.keyNeeded")), input, el("button", { type: "submit" }, t("chat.keySave")));
  box.addEventListener("submit", (e) => {
    e.preventDefault();
    setChatKey(input.value.trim());
    box.remove();
    ask(question);
  });
  return box;
}

// --- one answer -------------------------------------------------------------------------------
function answerMessage(kb, turn = {}) {
  const citations = kb.citations || [];
  const verification = kb.verification || { status: "not_applicable", numbers: [] };
  const numbers = verification.numbers || [];
  const copyButton = el("button", { class: "link copy", type: "button", title: t("chat.copy"), "data-testid": "copy" }, t("chat.copy"));
  copyButton.addEventListener("click", async () => {
    const sources = citations.map((c, i) => `[${i + 1}] ${c.source}${c.page ? " " + t("chat.page", { n: c.page }) : ""}`);
    if (await copyText([kb.answer, ...(sources.length ? ["", ...sources] : [])].join("\n"))) {
      copyButton.textContent = t("chat.copied");
      setTimeout(() => { copyButton.textContent = t("chat.copy"); }, 1500);
    }
  });
  const standalone = kb.standalone_question ?? "";  // the answer engine fills it for rewritten follow-ups
  return el("article", { class: `msg assistant route-${kb.route}`, "data-testid": "answer", "data-route": kb.route,
                         "data-verification": verification.status, "data-deltas": turn.deltas ?? "" },
    el("div", { class: "msg-head" },
      el("span", { class: `badge route route-${kb.route}`, "data-testid": "route" }, t(`route.${kb.route}`)),
      el("span", { class: "muted" }, t("chat.confidence", { p: `${Math.round((kb.confidence || 0) * 100)}%` })),
      kb.timings_ms?.total !== undefined ? el("span", { class: "muted" }, `${Math.round(kb.timings_ms.total)} ms`) : null,
      el("span", { class: "spacer" }), copyButton),
    standalone ? el("div", { class: "standalone", "data-testid": "standalone" }, el("span", { class: "label" }, t("chat.standalone") + "："), standalone) : null,
    el("div", { class: "answer-text", "data-testid": "answer-text" }, ...annotate(kb.answer || "", numbers, citations)),
    termsLine(kb.terms || []),
    verificationLine(verification, citations),
    citations.length ? el("ol", { class: "citations", "data-testid": "citations" },
      citations.map((c, i) => el("li", {},
        el("button", { class: "cite", type: "button", "data-testid": "citation", "data-chunk": c.chunk_id, onclick: () => openPassage(c) },
          `[${i + 1}] ${c.source}`, c.page ? ` · ${t("chat.page", { n: c.page })}` : ""),
        el("span", { class: "quote" }, shorten(c.quote || "", 110))))) : null,
    el("details", { class: "more" }, el("summary", {}, t("chat.details")),
      el("dl", {},
        kb.rewritten_query ? [el("dt", {}, t("chat.rewritten")), el("dd", {}, kb.rewritten_query)] : null,
        kb.reason ? [el("dt", {}, t("chat.reason")), el("dd", {}, kb.reason)] : null,
        kb.timings_ms ? [el("dt", {}, t("chat.timings")), el("dd", {}, Object.entries(kb.timings_ms).map(([k, v]) => `${k} ${Math.round(v)} ms`).join(" · "))] : null)));
}

function shorten(text, n) { return text.length > n ? text.slice(0, n) + "…" : text; }

function evidenceOf(check, citations) {
  return citations.find((c) => c.chunk_id === check.evidence) || (check.evidence ? { chunk_id: check.evidence, source: "", quote: "" } : null);
}

function numberTitle(check, citations) {
  if (!check.supported) return t("verify.noEvidence");
  const cite = evidenceOf(check, citations);
  const where = cite ? `${cite.source || cite.chunk_id}${cite.page ? " " + t("chat.page", { n: cite.page }) : ""}${cite.quote ? " — " + shorten(cite.quote, 140) : ""}` : "";
  return [t("verify.supported"), where ? t("verify.evidence", { src: where }) : "", check.detail ? t("verify.derived", { d: check.detail }) : ""].filter(Boolean).join("\n");
}

function numberMark(check, citations, text) {
  const cite = evidenceOf(check, citations);
  return el("mark", {
    class: `num ${check.supported ? "supported" : "unsupported"}`, tabindex: 0, "data-testid": "number",
    "data-supported": String(!!check.supported), title: numberTitle(check, citations),
    onclick: () => { if (check.supported && cite) openPassage(cite, { highlight: check.text }); },
  }, text);
}

/** The answer as text with every checked number marked and [n] turned into citation links. */
function annotate(text, numbers, citations) {
  const spans = [];
  const taken = new Uint8Array(text.length);
  const checks = numbers.filter((n) => n.text).sort((a, b) => b.text.length - a.text.length);
  for (const check of checks) {
    let from = 0, at;
    while ((at = text.indexOf(check.text, from)) >= 0) {
      const end = at + check.text.length;
      if (!taken.subarray(at, end).some((x) => x)) { spans.push({ at, end, check }); taken.fill(1, at, end); }
      from = end;
    }
  }
  for (const m of text.matchAll(/\[(\d{1,2})\]/g)) {
    if (!taken[m.index]) spans.push({ at: m.index, end: m.index + m[0].length, cite: Number(m[1]) });
  }
  spans.sort((a, b) => a.at - b.at);
  const out = [];
  let pos = 0;
  for (const span of spans) {
    out.push(text.slice(pos, span.at));
    const piece = text.slice(span.at, span.end);
    if (span.check) out.push(numberMark(span.check, citations, piece));
    else {
      const cite = citations[span.cite - 1];
      out.push(cite ? el("button", { class: "cite-ref", type: "button", title: cite.source, onclick: () => openPassage(cite) }, piece) : piece);
    }
    pos = span.end;
  }
  out.push(text.slice(pos));
  return out;
}

function meaningText(m) {
  if (!m) return "";
  const zh = m.meaning || m.chinese || "";
  const en = m.expansion || m.english || "";
  return zh && en ? `${zh}（${en}）` : zh || en;
}

function termsLine(terms) {
  if (!terms.length) return null;
  return el("div", { class: "terms", "data-testid": "terms" }, el("span", { class: "label" }, t("chat.terms") + "："),
    terms.map((term) => el("span", { class: "term", "data-testid": "term", "data-term": term.term, "data-meaning": term.meaning || "" },
      el("b", {}, term.term), " = ", meaningText(term),
      term.decided === false ? el("span", { class: "muted" }, ` (${t("chat.undecided")})`) : null,
      (term.alternatives || []).length ? el("span", { class: "alts" }, ` · ${t("chat.alternatives")}：`,
        term.alternatives.map((a) => (typeof a === "string" ? a : meaningText(a) + (a.score >= 0.01 ? ` ${Math.round(a.score * 100)}%` : ""))).join("；")) : null)));
}

function verificationLine(v, citations) {
  const numbers = v.numbers || [];
  if (v.status === "not_applicable" && !numbers.length) return null;
  return el("div", { class: `verify verify-${v.status}`, "data-testid": "verification", "data-status": v.status },
    el("span", { class: "label" }, (v.status === "verified" ? "✓ " : v.status === "not_applicable" ? "" : "⚠ ") + t(`verify.${v.status}`)),
    v.note ? el("span", { class: "muted" }, `（${v.note}）`) : null,
    numbers.map((n) => el("span", { class: `chip ${n.supported ? "ok" : "bad"}`, "data-testid": "number-chip", "data-supported": String(!!n.supported),
      title: numberTitle(n, citations), tabindex: 0,
      onclick: () => { const c = evidenceOf(n, citations); if (n.supported && c) openPassage(c, { highlight: n.text }); } },
      n.supported ? "✓ " : "✗ ", n.text, n.supported ? "" : ` · ${t("verify.withheld")}`)));
}
