// Compare 2–10 versions: config diff, tags and artifacts side by side, one metric overlaid over
// the versions, and that metric's last value against version number across the model.

import { Chart, chartControls, chartState, colorOf, columns } from "./chart.js?v={{chart.js}}";
import { api, el, go, keyPath, link, modelNav, modelPath, num, params, problemText, ready, replace, showError, signedChip, withParams, fill } from "./lib.js?v={{lib.js}}";

function cell(v) {
  return v === undefined ? el("td", { class: "muted" }, "absent") : el("td", { class: "mono" }, JSON.stringify(v));
}

function diffTable(head, rows) {
  return el("div", { class: "scroll" }, el("table", { class: "diff" }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))), el("tbody", {}, rows)));
}

/** Each later version's schema against the first's: every change, compatible or breaking. */
function schemaDiffView(diffs, name) {
  const changed = diffs.filter((d) => d.changes.length);
  if (!changed.length) return el("p", { class: "muted" }, "The schemas are the same (or none is declared).");
  return changed.map((d) => el("div", {},
    el("h3", {}, link(`v${d.from}`, { model: name, version: d.from }), " → ", link(`v${d.to}`, { model: name, version: d.to }), " ",
      el("span", { class: `chip ${d.compatible ? "" : "bad"}` }, d.compatible ? "compatible" : "breaking")),
    diffTable(["Part", "Name", "Change", "Callers", "Detail"], d.changes.map((ch) => el("tr", { class: ch.compatible ? "" : "breaking" },
      el("td", {}, ch.part), el("td", { class: "mono" }, ch.name), el("td", {}, ch.change.replace("_", " ")),
      el("td", { class: ch.compatible ? "ok" : "error" }, ch.compatible ? "still work" : "break"),
      el("td", { class: "details" }, ch.detail))))));
}

/** Pages through the model's versions in version order, with the last value of `key`. */
async function lastValues(name, key, limit = 5000) {
  const out = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ order_by: "version:asc", metrics: key, limit: "1000" });
    if (cursor) q.set("cursor", cursor);
    const page = await api(`${modelPath(name)}/versions?${q}`);
    for (const v of page.items) if (v.last_metrics && typeof v.last_metrics[key] === "number") out.push({ step: v.version, value: v.last_metrics[key] });
    cursor = page.next_cursor;
  } while (cursor && out.length < limit);
  return out;
}

export async function comparePage(root, name) {
  const p = params();
  const versions = (p.get("versions") || "").split(",").map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
  const pick = el("input", { name: "versions", value: versions.join(","), placeholder: "3,5,8", "aria-label": "Versions to compare (2 to 10, comma-separated)" });
  const pickForm = el("form", { class: "bar", onsubmit: (e) => { e.preventDefault(); go({ model: name, view: "compare", versions: pick.value.replace(/\s+/g, "") }); } },
    el("label", {}, "Versions ", pick), el("button", { type: "submit" }, "Compare"));
  const heading = [el("h1", {}, link(name, { model: name }), " / compare"), modelNav(name, "compare"), pickForm];
  if (versions.length < 2) {
    fill(root, ...heading, el("p", { class: "muted" }, "Pick 2 to 10 versions here, or tick them in the versions table."));
    ready(root);
    return;
  }
  const c = await api(`${modelPath(name)}/compare?versions=${versions.join(",")}`);
  const vs = c.versions.map(String);
  const vHead = () => c.versions.map((v) => link(`v${v}`, { model: name, version: v }));
  const config = c.config.length
    ? diffTable(["Config path", ...vHead()], c.config.map((d) => el("tr", {}, el("td", { class: "mono" }, d.path), vs.map((v) => cell(d.values[v])))))
    : el("p", { class: "muted" }, "The configs are the same.");
  const tags = c.tags.length
    ? diffTable(["Tag", ...vHead()], c.tags.map((d) => el("tr", {}, el("td", {}, d.key), vs.map((v) => cell(d.values[v])))))
    : el("p", { class: "muted" }, "The tags are the same.");
  const artifacts = c.artifacts.length
    ? diffTable(["Artifact", ...vHead(), "Same"], c.artifacts.map((a) => el("tr", {}, el("td", { class: "mono" }, a.path),
      vs.map((v) => el("td", { class: "mono hash" }, a.sha256[v] ? a.sha256[v].slice(0, 12) : "absent")), el("td", {}, a.same ? "yes" : "no"))))
    : el("p", { class: "muted" }, "No artifacts.");
  const schemaDiff = schemaDiffView(c.schema_diff || [], name);
  const signed = c.signed_by || {};
  const signatures = diffTable(["", ...vHead()], [el("tr", {}, el("td", {}, "Signed by"),
    vs.map((v) => el("td", {}, signed[v] ? signedChip(signed[v]) : el("span", { class: "muted" }, "unsigned"))))]);
  const keys = Object.keys(c.metrics).sort();
  const metricsTable = keys.length
    ? diffTable(["Metric (last)", ...vHead()], keys.map((k) => el("tr", {}, el("td", {}, k),
      vs.map((v) => { const m = c.metrics[k][v]; return el("td", { class: "mono", title: m ? `min ${num(m.min)}, max ${num(m.max)}, ${m.count} points` : "" }, m ? num(m.last) : "–"); }))))
    : el("p", { class: "muted" }, "No metrics.");

  const metric = keys.includes(p.get("metric")) ? p.get("metric") : keys[0];
  const charts = el("div", { class: "charts" });
  const sections = [...heading,
    el("section", {}, el("h2", {}, "Signatures"), signatures),
    el("section", {}, el("h2", {}, "Config"), config),
    el("section", {}, el("h2", {}, "Schema"), schemaDiff),
    el("section", {}, el("h2", {}, "Metrics"), metricsTable)];
  if (metric) {
    const select = el("select", { id: "metric", "aria-label": "Metric to overlay" }, keys.map((k) => el("option", { value: k, selected: k === metric }, k)));
    select.addEventListener("change", () => go(withParams({ metric: select.value, zfrom: null, zto: null })));
    const opts = chartState(p);
    const overlay = new Chart({
      title: `${metric} by step`,
      onZoom: (range) => {
        replace(withParams(range ? { zfrom: String(range[0]), zto: String(range[1]) } : { zfrom: null, zto: null }));
        drawOverlay(range);
      },
    });
    const byVersion = new Chart({ title: `${metric} (last) by version`, xLabel: "version", markers: true });
    overlay.options = { ...opts };
    byVersion.options = { ...opts, time: false, smooth: 0 };
    const controls = chartControls(opts, (change) => {
      Object.assign(opts, change);
      replace(withParams({ smooth: opts.smooth ? String(opts.smooth) : null, log: opts.log ? "1" : null, x: opts.time ? "time" : null }));
      overlay.setOptions(change);
      byVersion.setOptions({ ...change, time: false, smooth: 0 });
    });
    charts.append(overlay.root, byVersion.root);
    sections.push(el("section", {}, el("h2", {}, "Charts"), el("div", { class: "bar" }, el("label", { for: "metric" }, "Metric"), select), controls, charts));
    const drawOverlay = async (range) => {
      const q = new URLSearchParams({ versions: vs.join(","), max_points: String(overlay.width()) });
      if (range) { q.set("from_step", String(range[0])); q.set("to_step", String(range[1])); }
      try {
        const r = await api(`${modelPath(name)}/metrics/${keyPath(metric)}?${q}`);
        const series = r.series.map((s) => columns(`v${s.version}`, s, colorOf(vs.indexOf(String(s.version)))));
        overlay.set(series, { zoomed: Boolean(range), note: series.some((s) => s.lo) ? "band: min–max per bucket, line: mean" : "every point" });
      } catch (err) {
        overlay.note.textContent = problemText(err);
      }
    };
    const from = Number(p.get("zfrom"));
    const to = Number(p.get("zto"));
    const zoom = p.has("zfrom") && Number.isInteger(from) && Number.isInteger(to) && to >= from ? [from, to] : null;
    fill(root, ...sections, el("section", {}, el("h2", {}, "Tags"), tags), el("section", {}, el("h2", {}, "Artifacts"), artifacts));
    await Promise.all([
      drawOverlay(zoom),
      lastValues(name, metric).then((points) => byVersion.set([columns(metric, { points }, colorOf(0))], { note: `${points.length} versions` }))
        .catch((err) => showError(charts, err)),
    ]);
  } else {
    fill(root, ...sections, el("section", {}, el("h2", {}, "Tags"), tags), el("section", {}, el("h2", {}, "Artifacts"), artifacts));
  }
  ready(root);
}
