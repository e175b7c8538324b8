// The passage drawer: the whole chunk a citation or a verified number points at, with its
// source and page, the quoted part and the number highlighted.
import { t } from "./i18n.js";
import { api, chatHeaders, clear, el } from "./util.js";

const drawer = () => document.getElementById("passage");

export function closePassage() { drawer().classList.add("hidden"); }

/** openPassage({chunk_id, source, page, quote}, {highlight: "480元"}) */
export async function openPassage(citation, { highlight = "" } = {}) {
  const box = drawer();
  const meta = document.getElementById("passage-meta");
  const body = document.getElementById("passage-text");
  box.classList.remove("hidden");
  box.dataset.chunk = citation.chunk_id;
  clear(document.getElementById("passage-title"), citation.source || t("passage.title"));
  clear(meta, t("passage.loading"));
  clear(body);
  try {
    const p = await api(`/api/chunks/${encodeURIComponent(citation.chunk_id)}`, { headers: chatHeaders() });
    if (box.dataset.chunk !== citation.chunk_id) return;  // another passage was opened meanwhile
    const parts = [p.kind === "glossary" ? t("passage.glossary") : p.source];
    if (p.page) parts.push(t("chat.page", { n: p.page }));
    if (p.heading_path && p.heading_path.length) parts.push(p.heading_path.join(" › "));
    clear(meta, parts.join(" · "));
    clear(body, ...highlighted(p.text, citation.quote || "", highlight));
    body.querySelector("mark.hl-number, mark.hl-quote")?.scrollIntoView({ block: "center" });
  } catch (err) {
    clear(meta, t("passage.missing", { msg: err.message }));
    if (citation.quote) clear(body, el("mark", { class: "hl-quote" }, citation.quote));
  }
}

/** Text nodes and <mark>s: the quote (as far as it is found) and every occurrence of the number. */
function highlighted(text, quote, number) {
  const marks = [];
  const q = quote.replace(/[…\s]+$/u, "").slice(0, 400);
  const qi = q ? text.indexOf(q) : -1;
  if (qi >= 0) marks.push([qi, qi + q.length, "hl-quote"]);
  const needles = number ? [number, number.replace(/[^\d.,]/g, "")].filter((s) => s.length > 0) : [];
  for (const needle of needles) {
    let from = 0, i, found = false;
    while ((i = text.indexOf(needle, from)) >= 0) { marks.push([i, i + needle.length, "hl-number"]); from = i + needle.length; found = true; }
    if (found) break;
  }
  // Number marks win where they overlap the quote: split the quote around them.
  const numbers = marks.filter((m) => m[2] === "hl-number").sort((a, b) => a[0] - b[0]);
  const out = [];
  let pos = 0;
  const quoteMark = marks.find((m) => m[2] === "hl-quote");
  const inQuote = (i) => quoteMark && i >= quoteMark[0] && i < quoteMark[1];
  const pushText = (from, to) => {
    // plain text, inside the quote wrapped in a quote mark
    let i = from;
    while (i < to) {
      const q0 = inQuote(i);
      let j = i;
      while (j < to && inQuote(j) === q0) j++;
      const piece = text.slice(i, j);
      out.push(q0 ? el("mark", { class: "hl-quote" }, piece) : piece);
      i = j;
    }
  };
  for (const [start, end] of numbers) {
    if (start < pos) continue;
    pushText(pos, start);
    out.push(el("mark", { class: "hl-number" }, text.slice(start, end)));
    pos = end;
  }
  pushText(pos, text.length);
  return out;
}
