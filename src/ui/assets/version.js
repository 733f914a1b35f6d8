// One version: what it is (config, tags, source, artifacts) and one chart per metric.

import { Chart, chartControls, chartState, colorOf, columns } from "./chart.js?v={{chart.js}}";
import { cardIsEmpty, cardView } from "./markdown.js?v={{markdown.js}}";
import { api, chips, download, el, keyPath, link, modelNav, modelPath, num, params, problemText, ready, replace, showError, signedChip, when, withParams, fill } from "./lib.js?v={{lib.js}}";

/** A JSON value as a tree: objects and arrays fold, leaves are text. */
export function jsonTree(value, depth = 0) {
  if (value === null || typeof value !== "object") {
    return el("span", { class: `leaf ${value === null ? "null" : typeof value}` }, JSON.stringify(value));
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  if (!entries.length) return el("span", { class: "leaf" }, Array.isArray(value) ? "[]" : "{}");
  return el("ul", { class: "tree" }, entries.map(([k, v]) => {
    const nested = v !== null && typeof v === "object" && Object.keys(v).length;
    if (!nested) return el("li", {}, el("span", { class: "key" }, `${k}: `), jsonTree(v, depth + 1));
    const d = el("details", { open: depth < 2 }, el("summary", {}, el("span", { class: "key" }, String(k)),
      el("span", { class: "muted" }, Array.isArray(v) ? ` [${v.length}]` : ` {${Object.keys(v).length}}`)), jsonTree(v, depth + 1));
    return el("li", {}, d);
  }));
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return u ? `${v.toFixed(1)} ${units[u]}` : `${v} B`;
}

/** The zoomed range of one chart, from the URL (`zkey`, `zfrom`, `zto`). */
function zoomOf(p) {
  const from = Number(p.get("zfrom"));
  const to = Number(p.get("zto"));
  const key = p.get("zkey");
  return key && Number.isInteger(from) && Number.isInteger(to) && to >= from ? { key, from, to } : null;
}

/** One input: a dataset, another version (a link), or code. */
function inputItem(i) {
  if (i.kind === "version") {
    return el("li", {}, el("span", { class: "chip" }, i.relation.replaceAll("_", " ")), " ",
      link(`${i.model} v${i.version}`, { model: i.model, version: i.version }));
  }
  if (i.kind === "code") {
    return el("li", {}, el("span", { class: "chip" }, "code"), " ", el("span", { class: "mono" }, i.uri),
      i.commit ? el("span", { class: "mono muted" }, ` @ ${i.commit}`) : null);
  }
  return el("li", {}, el("span", { class: "chip" }, i.context || "dataset"), " ", el("strong", {}, i.name), " ",
    el("span", { class: "mono hash", title: "digest" }, i.digest), i.uri ? el("span", { class: "mono muted" }, ` ${i.uri}`) : null);
}

/** The versions made from this one (its dependants, one level down). */
async function madeInto(base, name, number) {
  const g = await api(`${base}/lineage?direction=down&depth=1`);
  const root = `${name}:${number}`;
  const users = g.edges.filter((e) => e.from === root);
  if (!users.length) return el("p", { class: "muted" }, "No version lists it as an input.");
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  return el("ul", { class: "inputs" }, users.map((e) => {
    const n = byId.get(e.to);
    return el("li", {}, el("span", { class: "chip" }, e.relation.replaceAll("_", " ")), " ",
      link(`${n.model} v${n.version}`, { model: n.model, version: n.version }), " ", el("span", { class: `chip status ${n.status}` }, n.status));
  }), g.truncated ? el("li", { class: "muted" }, "… and more") : null);
}

/** A schema as a table: part, name, type, shape, required. */
export function schemaTable(s) {
  const rows = [
    ...(s.inputs || []).map((c, i) => ["input", c, i]),
    ...(s.outputs || []).map((c, i) => ["output", c, i]),
    ...(s.params || []).map((c, i) => ["param", c, i]),
  ];
  if (!rows.length) return el("p", { class: "muted" }, "The schema lists nothing.");
  return el("div", { class: "scroll" }, el("table", { class: "schema" },
    el("thead", {}, el("tr", {}, ["Part", "Name", "Type", "Shape", "Required / default"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map(([part, c, i]) => el("tr", {},
      el("td", {}, part), el("td", { class: "mono" }, c.name ?? `#${i}`),
      el("td", { class: "mono" }, c.dtype ? `${c.type} ${c.dtype}` : c.type),
      el("td", { class: "mono" }, c.shape ? `[${c.shape.join(", ")}]` : "–"),
      el("td", {}, part === "param" ? `default ${JSON.stringify(c.default)}` : (c.required === false ? "optional" : "required")))))));
}

export async function versionPage(root, name, number) {
  const p = params();
  const base = `${modelPath(name)}/versions/${encodeURIComponent(number)}`;
  const v = await api(base);
  const opts = chartState(p);
  let zoom = zoomOf(p);
  const charts = new Map();
  const setUrl = (changes) => replace(withParams(changes));
  const controls = chartControls(opts, (change) => {
    Object.assign(opts, change);
    setUrl({ smooth: opts.smooth ? String(opts.smooth) : null, log: opts.log ? "1" : null, x: opts.time ? "time" : null });
    for (const c of charts.values()) c.setOptions(change);
  });
  const artifacts = v.artifacts.length
    ? el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Path"), el("th", {}, "Size"), el("th", { class: "hide-narrow" }, "SHA-256"), el("th", {}, ""))),
      el("tbody", {}, v.artifacts.map((a) => {
        const status = el("span", { class: "error" });
        return el("tr", {},
          el("td", { class: "mono" }, a.path),
          el("td", { class: "num" }, size(a.size)),
          el("td", { class: "hide-narrow mono hash" }, a.sha256),
          el("td", {}, el("button", {
            type: "button",
            onclick: () => download(`${base}/artifacts/${a.path.split("/").map(encodeURIComponent).join("/")}`, a.path.split("/").pop())
              .then(() => status.replaceChildren(), (err) => { status.textContent = problemText(err); }),
          }, "Download"), status));
      }))))
    : el("p", { class: "muted" }, "No artifacts.");
  const chartBox = el("div", { class: "charts" });
  const inputs = v.inputs.length ? el("ul", { class: "inputs" }, v.inputs.map(inputItem)) : el("p", { class: "muted" }, "No inputs recorded.");
  const dependants = el("div", {}, el("span", { class: "muted" }, "Loading…"));
  const card = el("section", { class: "model-card" });
  fill(root, 
    el("h1", {}, link(name, { model: name }), ` / v${v.version}`),
    modelNav(name, null),
    el("p", {}, el("span", { class: `chip status ${v.status}` }, v.status), " ",
      v.signed_by ? [signedChip(v.signed_by), " "] : null,
      `registered ${when(v.created_at)} by ${v.created_by}`,
      v.status_reason ? el("span", { class: "muted" }, ` (${v.status_reason})`) : null),
    v.description ? el("p", {}, v.description) : null,
    el("p", {}, chips(v.tags)),
    el("div", { class: "columns" },
      el("section", {}, el("h2", {}, "Config"), jsonTree(v.config)),
      el("section", {}, el("h2", {}, "Source"), jsonTree(v.source))),
    card,
    el("div", { class: "columns" },
      el("section", {}, el("h2", {}, "Made from"), inputs),
      el("section", {}, el("h2", {}, "Made into"), dependants)),
    el("section", {}, el("h2", {}, "Schema"), v.schema ? schemaTable(v.schema) : el("p", { class: "muted" }, "No schema declared.")),
    el("section", {}, el("h2", {}, "Artifacts"), artifacts),
    el("section", {}, el("h2", {}, "Metrics"),
      v.metrics.length ? controls : el("p", { class: "muted" }, "No metrics logged."), chartBox),
  );

  const draw = async (summary) => {
    const chart = charts.get(summary.key);
    const z = zoom && zoom.key === summary.key ? zoom : null;
    const q = new URLSearchParams({ max_points: String(chart.width()) });
    if (z) { q.set("from_step", String(z.from)); q.set("to_step", String(z.to)); }
    try {
      const answer = await api(`${base}/metrics/${keyPath(summary.key)}?${q}`);
      const s = columns(`v${v.version}`, answer, colorOf(0));
      const count = (n) => n.toLocaleString("en-US");
      const what = answer.buckets ? `${count(answer.buckets.length)} buckets of ${count(summary.count)} points` : `${count(s.x.length)} points`;
      chart.set([s], { zoomed: Boolean(z), note: `${what}; last ${num(summary.last)} at step ${summary.last_step}` });
    } catch (err) {
      chart.note.textContent = problemText(err);
    }
  };
  for (const m of v.metrics) {
    const chart = new Chart({
      title: m.key,
      onZoom: (range) => {
        const before = zoom;
        zoom = range ? { key: m.key, from: range[0], to: range[1] } : null;
        setUrl(zoom ? { zkey: zoom.key, zfrom: String(zoom.from), zto: String(zoom.to) } : { zkey: null, zfrom: null, zto: null });
        for (const s of v.metrics) if (s.key === m.key || (before && s.key === before.key)) draw(s);
      },
    });
    chart.options = { ...opts };
    charts.set(m.key, chart);
    chartBox.append(chart.root);
  }
  await Promise.all([
    ...v.metrics.map((m) => draw(m).catch((err) => showError(chartBox, err))),
    madeInto(base, name, v.version).then((n) => dependants.replaceChildren(n), (err) => showError(dependants, err)),
    api(`${base}/card`).then((c) => {
      // The model's readme is on the model's page; a version's own readme is shown here.
      const shown = { ...c.effective, readme: c.card.readme };
      if (!cardIsEmpty(JSON.parse(JSON.stringify(shown)))) fill(card, el("h2", {}, "Card"), cardView(shown));
    }, (err) => showError(card, err)),
  ]);
  ready(root);
}
