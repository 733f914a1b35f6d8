// One version: what it is (config, tags, source, artifacts) and one chart per metric.

import { Chart, chartControls, chartState, colorOf, columns } from "./chart.js?v={{chart.js}}";
import { api, chips, download, el, keyPath, link, modelNav, modelPath, num, params, problemText, ready, replace, showError, when, withParams, fill } from "./lib.js?v={{lib.js}}";

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
  fill(root, 
    el("h1", {}, link(name, { model: name }), ` / v${v.version}`),
    modelNav(name, null),
    el("p", {}, el("span", { class: `chip status ${v.status}` }, v.status), " ",
      `registered ${when(v.created_at)} by ${v.created_by}`,
      v.status_reason ? el("span", { class: "muted" }, ` (${v.status_reason})`) : null),
    v.description ? el("p", {}, v.description) : null,
    el("p", {}, chips(v.tags)),
    el("div", { class: "columns" },
      el("section", {}, el("h2", {}, "Config"), jsonTree(v.config)),
      el("section", {}, el("h2", {}, "Source"), jsonTree(v.source))),
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
  await Promise.all(v.metrics.map((m) => draw(m).catch((err) => showError(chartBox, err))));
  ready(root);
}
