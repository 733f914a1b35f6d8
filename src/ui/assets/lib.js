// Shared pieces of the pages: building elements, calling the API, the URL as the view's state.
// Every value from the API reaches the page as text (text nodes and attributes, never HTML).

export const TOKEN_KEY = "modelreg.token";

/** An element with attributes and children; strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** A problem+json answer, thrown by api(). */
export class Problem extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Calls the API: GET by default, a JSON body when given. Throws Problem on an error. */
/** The furthest commit position the server answered (`Modelreg-Consistency`), kept for
 * this tab and sent back with every call: a page read from a replica after a promote or an
 * approval made here shows it. */
const POSITION_KEY = "modelreg.consistency";

function positionOf(text) {
  const m = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(text || "");
  return m ? (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`) : null;
}

function keepPosition(r) {
  const got = r.headers.get("modelreg-consistency");
  const p = positionOf(got);
  if (p === null) return;
  const kept = positionOf(sessionStorage.getItem(POSITION_KEY));
  if (kept === null || p > kept) sessionStorage.setItem(POSITION_KEY, got);
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const position = sessionStorage.getItem(POSITION_KEY);
  if (position) headers["modelreg-consistency"] = position;
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  keepPosition(r);
  const answer = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new Problem(r.status, answer);
  return answer;
}

/** Fetches a file with the caller's token and hands it to the browser as a download. */
export async function download(path, name) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers });
  if (!r.ok) throw new Problem(r.status, await r.json().catch(() => null));
  saveBlob(await r.blob(), name);
}

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export const enc = encodeURIComponent;
export const modelPath = (model) => `/api/v1/models/${enc(model)}`;
/** A metric key in a path: its `/` separators stay. */
export const keyPath = (key) => key.split("/").map(enc).join("/");

/** The current view, from the URL. */
export function params() {
  return new URLSearchParams(location.search);
}

let renderView = () => {};
export function setRenderer(f) {
  renderView = f;
}

function queryOf(query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  return q.toString() ? `?${q}` : "./";
}

/** Goes to a view (a URL query), keeping history. */
export function go(query) {
  history.pushState(null, "", queryOf(query));
  renderView();
}

/** Changes the current view's URL without a new history entry or a re-render. */
export function replace(query) {
  history.replaceState(null, "", queryOf(query));
}

/** The current query as an object, with `changes` applied. */
export function withParams(changes) {
  const out = Object.fromEntries(params());
  return Object.assign(out, changes);
}

export function link(text, query, attrs = {}) {
  return el("a", {
    ...attrs,
    href: queryOf(query),
    onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      go(query);
    },
  }, text);
}

/** A version's signed badge: the trusted key of its first verified signature. */
export function signedChip(key) {
  return el("span", { class: "chip signed", title: `Its files carry a signature verified with trusted key ${key}` }, `signed · ${key}`);
}

export function chips(map) {
  return Object.entries(map || {}).map(([k, v]) => el("span", { class: "chip" }, `${k}: ${v}`));
}

/** Readable words for the answers an operator meets in the middle of an incident. */
const EXPLAINED = {
  stage_conflict: "Someone changed this stage since the page was loaded. Reload and check before trying again.",
  version_not_ready: "Only a ready version can be on a stage.",
  nothing_to_roll_back: "Nothing is beneath the current version on this stage's stack.",
  not_in_history: "That version is not beneath the current one on this stage's stack.",
  policy_violation: "The stage's policy refused this change.",
  insufficient_scope: "This token may not do that.",
  unauthorized: "This registry needs a valid token: paste one above.",
};

export function problemText(err) {
  if (!(err instanceof Problem)) return `Cannot reach the registry: ${err.message}`;
  const code = err.body.code || `HTTP ${err.status}`;
  const why = EXPLAINED[code];
  return why ? `${why} (${code}: ${err.message})` : `${code}: ${err.message}`;
}

export function showError(target, err) {
  const nodes = [el("p", { class: "error", role: "alert" }, problemText(err))];
  const checks = err instanceof Problem ? err.body.checks : null;
  if (Array.isArray(checks)) {
    nodes.push(el("ul", { class: "checks" }, checks.map((c) => el("li", { class: c.ok ? "ok" : "bad" },
      `${c.ok ? "✓" : "✗"} ${c.check}: ${c.detail || ""}`))));
  }
  target.replaceChildren(...nodes);
}

export function when(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** A number for a table: short but exact enough to tell versions apart. */
export function num(v) {
  if (typeof v !== "number") return v === null || v === undefined ? "–" : String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(4) : String(Number(v.toPrecision(6)));
}

/** Who the caller is (`GET /api/v1/whoami`), asked once per token. */
let me = null;
export async function whoami(refresh = false) {
  if (!me || refresh) me = api("/api/v1/whoami").catch((err) => ({ error: err }));
  return me;
}

function globMatch(glob, name) {
  const re = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${re}$`).test(name);
}

/** Whether the caller may change the stages of `model` (the server decides; this hides buttons). */
export async function canPromote(model) {
  const w = await whoami();
  if (w.error) return false;
  const scopes = w.scopes || [];
  if (!scopes.includes("promote") && !scopes.includes("admin")) return false;
  return !w.models || w.models.some((g) => globMatch(g, model));
}

/** Marks the view as drawn, when it is still the one shown: the browser tests time
 * navigation to this mark. */
export function ready(root) {
  if (!root.isConnected) return;
  performance.mark("modelreg:ready");
  document.getElementById("main").dataset.state = "ready";
}

/** The page's navigation between a model's views. */
export function modelNav(model, current) {
  const views = [["versions", "Versions"], ["stages", "Stages"], ["compare", "Compare"], ["storage", "Storage"], ["events", "Events"]];
  return el("nav", { class: "tabs", "aria-label": `${model} views` }, views.map(([view, label]) =>
    link(label, { model, view: view === "versions" ? null : view }, view === current ? { "aria-current": "page" } : {})));
}

/** Replaces a node's children; null, false and nested arrays are allowed, as in el(). */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}
