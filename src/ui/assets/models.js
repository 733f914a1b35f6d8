// The models list and a model's versions table.

import { cardIsEmpty, cardView } from "./markdown.js?v={{markdown.js}}";
import { Problem, api, chips, el, go, link, modelNav, modelPath, num, params, ready, showError, signedChip, when, fill } from "./lib.js?v={{lib.js}}";

export async function modelsPage(root) {
  const q = params().get("q") || "";
  const search = el("input", { type: "search", name: "q", value: q, placeholder: "Name starts with…", "aria-label": "Search models by name" });
  const form = el("form", { class: "bar", role: "search", onsubmit: (e) => { e.preventDefault(); go({ q: search.value.trim() }); } },
    search, el("button", { type: "submit" }, "Search"));
  const body = el("tbody");
  const table = el("div", { class: "scroll" }, el("table", {},
    el("thead", {}, el("tr", {}, el("th", {}, "Model"), el("th", {}, "Latest"), el("th", {}, "Stages"), el("th", { class: "hide-narrow" }, "Description"))),
    body));
  const more = el("div");
  fill(root, el("h1", {}, "Models"), form, table, more);
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
          el("td", {}, m.latest_version ? link(`v${m.latest_version}`, { model: m.name, version: m.latest_version }) : "–"),
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
  ready(root);
}

/** The filter as sent, with the character at the error's position marked. */
function filterEcho(text, position) {
  const at = Math.min(position, text.length);
  return el("p", { class: "filter-echo", "aria-label": `error at character ${at + 1}` },
    text.slice(0, at), el("mark", {}, text.slice(at, at + 1) || " "), text.slice(at + 1));
}

/** `cols=a,b`: the metric columns asked for. */
function metricColumns(p) {
  return (p.get("cols") || "").split(",").map((k) => k.trim()).filter(Boolean).slice(0, 20);
}

export async function versionsPage(root, name) {
  const p = params();
  const filter = p.get("filter") || "";
  const order = p.get("order_by") || "";
  const cols = metricColumns(p);
  const state = { model: name, filter, order_by: order, cols: cols.join(",") };
  const stages = el("p");
  const input = el("input", { class: "filter", name: "filter", value: filter, placeholder: "metric.val/auc > 0.9 and tag.team = \"fraud\"", "aria-label": "Filter versions" });
  const colInput = el("input", { name: "cols", value: cols.join(", "), list: "metric-keys", placeholder: "metric columns: acc, loss", "aria-label": "Metric columns (comma-separated keys)" });
  const keys = el("datalist", { id: "metric-keys" });
  const form = el("form", {
    class: "bar",
    onsubmit: (e) => {
      e.preventDefault();
      go({ ...state, filter: input.value.trim(), cols: colInput.value.split(",").map((k) => k.trim()).filter(Boolean).join(",") });
    },
  }, input, colInput, keys, el("button", { type: "submit" }, "Apply"));
  const problem = el("div", { "aria-live": "polite" });
  const selected = new Set();
  const compare = el("button", { type: "button", disabled: true, onclick: () => go({ model: name, view: "compare", versions: [...selected].sort((a, b) => a - b).join(",") }) }, "Compare selected");
  const head = el("tr", {}, el("th", {}, el("span", { class: "sr-only" }, "Select")));
  const sortable = [["version", "Version"], ["created_at", "Created"]];
  const sortHead = (key, label) => {
    const [current, dir] = order.split(":");
    const next = current === key && dir !== "asc" ? `${key}:asc` : `${key}:desc`;
    const mark = current === key ? (dir === "asc" ? " ▲" : " ▼") : "";
    return el("th", { "aria-sort": current === key ? (dir === "asc" ? "ascending" : "descending") : null },
      el("button", { type: "button", title: `Order by ${label}`, onclick: () => go({ ...state, order_by: next }) }, label + mark));
  };
  for (const [key, label] of sortable) head.append(sortHead(key, label));
  head.append(el("th", {}, "Status"));
  for (const c of cols) head.append(sortHead(`metric.${c}`, c));
  head.append(el("th", {}, "Stages"), el("th", { class: "hide-narrow" }, "Tags"));
  const body = el("tbody");
  const more = el("div", { class: "bar" });
  const card = el("div", { class: "model-card" });
  fill(root, el("h1", {}, name), modelNav(name, "versions"), stages, card, form, problem,
    el("div", { class: "bar" }, compare, el("span", { class: "muted" }, "Pick 2 to 10 versions.")),
    el("div", { class: "scroll" }, el("table", { class: "versions" }, el("thead", {}, head), body)), more);
  const holders = {};
  const model = api(modelPath(name)).then((m) => {
    for (const [stage, v] of Object.entries(m.stages)) (holders[v] = holders[v] || []).push(stage);
    stages.replaceChildren(...(m.description ? [el("span", { class: "muted" }, m.description), " "] : []),
      ...(Object.keys(m.stages).length ? chips(m.stages) : [el("span", { class: "muted" }, "No stage holds a version.")]));
    if (m.latest_version) {
      api(`${modelPath(name)}/versions/${m.latest_version}/metrics`)
        .then((s) => keys.replaceChildren(...s.items.map((i) => el("option", { value: i.key }))))
        .catch(() => {});
    }
  }).catch((err) => showError(stages, err));
  const cardShown = api(`${modelPath(name)}/card`).then((c) => {
    if (!cardIsEmpty(c.card)) fill(card, el("details", { open: true }, el("summary", {}, "About this model"), cardView(c.card)));
  }).catch((err) => showError(card, err));
  let cursor = null;
  const page = async () => {
    const query = new URLSearchParams({ limit: "100" });
    if (filter) query.set("filter", filter);
    if (order) query.set("order_by", order);
    if (cols.length) query.set("metrics", cols.join(","));
    if (cursor) query.set("cursor", cursor);
    try {
      const r = await api(`${modelPath(name)}/versions?${query}`);
      await model;
      const rows = r.items.map((v) => {
        const box = el("input", { type: "checkbox", "aria-label": `Select v${v.version}` });
        box.addEventListener("change", () => {
          if (box.checked) selected.add(v.version);
          else selected.delete(v.version);
          compare.disabled = selected.size < 2 || selected.size > 10;
          compare.textContent = `Compare selected (${selected.size})`;
        });
        return el("tr", {},
          el("td", {}, box),
          el("td", {}, link(`v${v.version}`, { model: name, version: v.version })),
          el("td", { class: "mono" }, when(v.created_at)),
          el("td", {}, v.status, v.signed_by ? [" ", signedChip(v.signed_by)] : null),
          cols.map((c) => el("td", { class: "num" }, num((v.last_metrics || {})[c]))),
          el("td", {}, (holders[v.version] || []).map((s) => el("span", { class: "chip stage" }, s))),
          el("td", { class: "hide-narrow" }, chips(v.tags)));
      });
      body.append(...rows);
      if (!r.items.length && !cursor) body.append(el("tr", {}, el("td", { colspan: 6 + cols.length, class: "muted" }, "No versions match.")));
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
  await Promise.all([page(), cardShown]);
  ready(root);
}
