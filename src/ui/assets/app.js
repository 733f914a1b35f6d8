// The registry's web pages. Uses only the public REST API, with the token kept in this tab's
// session storage. Every value from the API reaches the page as text (textContent, never
// HTML). The view's state lives in the URL, so a pasted link opens the same view.

const TOKEN_KEY = "modelreg.token";

/** An element with attributes and children; strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** A problem+json answer, thrown by api(). */
class Problem extends Error {
  constructor(status, body) {
    super(body && body.detail ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path) {
  const headers = { accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(path, { headers });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Problem(r.status, body);
  return body;
}

/** The current view, from the URL. */
function params() {
  return new URLSearchParams(location.search);
}

/** Goes to a view (a URL query), keeping history. */
function go(query) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) q.set(k, v);
  const url = q.toString() ? `?${q}` : "./";
  history.pushState(null, "", url);
  render();
}

function link(text, query) {
  const q = new URLSearchParams(query);
  return el("a", {
    href: `?${q}`,
    onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      go(query);
    },
  }, text);
}

function chips(map) {
  return Object.entries(map || {}).map(([k, v]) => el("span", { class: "chip" }, `${k}: ${v}`));
}

function showError(target, err) {
  const msg = err instanceof Problem
    ? `${err.body.code || "error"}: ${err.message}`
    : `cannot reach the registry: ${err.message}`;
  target.replaceChildren(el("p", { class: "error", role: "alert" }, msg));
  if (err instanceof Problem && err.status === 401) {
    target.append(el("p", {}, "This registry needs a token: paste one above."));
  }
}

const main = () => document.getElementById("main");

async function modelsPage() {
  const p = params();
  const q = p.get("q") || "";
  const root = main();
  const search = el("input", { type: "search", name: "q", value: q, placeholder: "Name starts with…", "aria-label": "Search models by name" });
  const form = el("form", { class: "bar", role: "search", onsubmit: (e) => { e.preventDefault(); go({ q: search.value.trim() }); } },
    search, el("button", { type: "submit" }, "Search"));
  const body = el("tbody");
  const table = el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "Model"), el("th", {}, "Latest"), el("th", {}, "Stages"), el("th", { class: "hide-narrow" }, "Description"))),
    body));
  const more = el("div");
  root.replaceChildren(el("h1", {}, "Models"), form, table, more);
  let cursor = null;
  const page = async () => {
    const query = new URLSearchParams({ limit: "50" });
    if (q) query.set("q", q);
    if (cursor) query.set("cursor", cursor);
    try {
      const r = await api(`/api/v1/models?${query}`);
      for (const m of r.items) {
        body.append(el("tr", {},
          el("td", {}, link(m.name, { model: m.name })),
          el("td", {}, m.latest_version ? `v${m.latest_version}` : "–"),
          el("td", {}, chips(m.stages)),
          el("td", { class: "hide-narrow muted" }, m.description || "")));
      }
      if (!r.items.length && !cursor) body.append(el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No models.")));
      cursor = r.next_cursor;
      more.replaceChildren(cursor ? el("button", { type: "button", onclick: page }, "More") : "");
    } catch (err) {
      showError(more, err);
    }
  };
  await page();
}

/** The filter as sent, with the character at the error's position marked. */
function filterEcho(text, position) {
  const at = Math.min(position, text.length);
  return el("p", { class: "filter-echo", "aria-label": `error at character ${at + 1}` },
    text.slice(0, at), el("mark", {}, text.slice(at, at + 1) || " "), text.slice(at + 1));
}

const SORTABLE = [["version", "Version"], ["created_at", "Created"]];

async function modelPage(name) {
  const p = params();
  const filter = p.get("filter") || "";
  const order = p.get("order_by") || "";
  const root = main();
  const heading = el("h1", {}, name);
  const stages = el("p");
  const input = el("input", { class: "filter", name: "filter", value: filter, placeholder: "metric.val/auc > 0.9 and tag.team = \"fraud\"", "aria-label": "Filter versions" });
  const form = el("form", { class: "bar", onsubmit: (e) => { e.preventDefault(); go({ model: name, filter: input.value.trim(), order_by: order }); } },
    input, el("button", { type: "submit" }, "Filter"));
  const problem = el("div", { "aria-live": "polite" });
  const head = el("tr");
  for (const [key, label] of SORTABLE) {
    const [current, dir] = order.split(":");
    const next = current === key && dir !== "asc" ? `${key}:asc` : `${key}:desc`;
    const mark = current === key ? (dir === "asc" ? " ▲" : " ▼") : "";
    head.append(el("th", { "aria-sort": current === key ? (dir === "asc" ? "ascending" : "descending") : null },
      el("button", { type: "button", onclick: () => go({ model: name, filter, order_by: next }) }, label + mark)));
  }
  head.append(el("th", {}, "Status"), el("th", { class: "hide-narrow" }, "Tags"), el("th", { class: "hide-narrow" }, "Config"));
  const body = el("tbody");
  const more = el("div");
  root.replaceChildren(heading, stages, form, problem,
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), body)), more);
  api(`/api/v1/models/${encodeURIComponent(name)}`)
    .then((m) => stages.replaceChildren(...(Object.keys(m.stages).length ? chips(m.stages) : [el("span", { class: "muted" }, "No stage holds a version.")])))
    .catch((err) => showError(stages, err));
  let cursor = null;
  const page = async () => {
    const query = new URLSearchParams({ limit: "100" });
    if (filter) query.set("filter", filter);
    if (order) query.set("order_by", order);
    if (cursor) query.set("cursor", cursor);
    try {
      const r = await api(`/api/v1/models/${encodeURIComponent(name)}/versions?${query}`);
      for (const v of r.items) {
        body.append(el("tr", {},
          el("td", {}, `v${v.version}`),
          el("td", { class: "mono" }, v.created_at),
          el("td", {}, v.status),
          el("td", { class: "hide-narrow" }, chips(v.tags)),
          el("td", { class: "hide-narrow mono" }, JSON.stringify(v.config))));
      }
      if (!r.items.length && !cursor) body.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No versions match.")));
      cursor = r.next_cursor;
      more.replaceChildren(cursor ? el("button", { type: "button", onclick: page }, "More") : "");
    } catch (err) {
      if (err instanceof Problem && err.body.field === "filter" && Number.isInteger(err.body.position)) {
        problem.replaceChildren(el("p", { class: "error", role: "alert" }, err.message), filterEcho(filter, err.body.position));
        input.setAttribute("aria-invalid", "true");
      } else {
        showError(problem, err);
      }
    }
  };
  await page();
}

async function whoami() {
  const out = document.getElementById("whoami");
  try {
    const me = await api("/api/v1/whoami");
    const scopes = (me.scopes || []).join(", ");
    out.textContent = `${me.name}${scopes ? ` (${scopes})` : ""}`;
  } catch (err) {
    out.textContent = err instanceof Problem && err.status === 401 ? "no valid token" : "";
  }
}

async function render() {
  const model = params().get("model");
  try {
    if (model) await modelPage(model);
    else await modelsPage();
  } catch (err) {
    showError(main(), err);
  }
}

function setupToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    input.value = "";
    whoami();
    render();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    whoami();
    render();
  });
}

window.addEventListener("popstate", render);
setupToken();
whoami();
render();
