// Small DOM and HTTP helpers shared by the chat and admin views. Text always goes in as text
// (textContent), never as HTML, so nothing a document or an answer contains can run.
import { t } from "./i18n.js";

/** el("button", {class: "x", onclick: f}, "text", child) -> HTMLElement */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const CHAT_KEY = "kb.chatKey";  // only when the server sets KB_CHAT_API_KEY; this tab's session only

export function chatHeaders() {
  const key = sessionStorage.getItem(CHAT_KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export function setChatKey(key) {
  if (key) sessionStorage.setItem(CHAT_KEY, key); else sessionStorage.removeItem(CHAT_KEY);
}

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** fetch JSON from this server; throws ApiError with the server's message on a non-2xx answer. */
export async function api(path, { method = "GET", body, headers = {}, form } = {}) {
  const init = { method, headers: { ...headers } };
  if (form) init.body = form;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, t("chat.networkError", { msg: err.message }));
  }
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** The message of an error answer: FastAPI's detail, an OpenAI-style error, or the status. */
export async function errorMessage(response) {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    const detail = body.detail ?? body.error?.message;
    if (typeof detail === "string") return detail;
    if (detail) return JSON.stringify(detail);
  } catch { /* not JSON */ }
  return `HTTP ${response.status} ${response.statusText || ""}`.trim() + (text ? `: ${text.slice(0, 200)}` : "");
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function fmtTime(value) {
  if (!value) return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const pad = (x) => String(x).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function fmtNumber(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(digits)) : String(v);
}

/** A page-wide message for failures outside any view (script errors, lost connection). */
export function banner(message) {
  const node = document.getElementById("banner");
  if (!node) return;
  clear(node, el("span", {}, message), el("button", { class: "link", onclick: () => node.classList.add("hidden") }, "×"));
  node.classList.remove("hidden");
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = el("textarea", { class: "offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}
