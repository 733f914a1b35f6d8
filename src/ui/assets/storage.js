// A model's storage: what it holds (versions by status, artifact and metric bytes), its
// retention policy, and what the policy would do now, with the rule behind each action and
// the versions a keep rule saves.

import { Problem, api, el, fill, link, modelNav, modelPath, ready, showError } from "./lib.js?v={{lib.js}}";

/** Bytes for people: 1.5 MiB. */
export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

function usageView(u) {
  const statuses = ["pending", "ready", "archived", "failed", "erased"];
  const row = (label, value) => el("tr", {}, el("th", { scope: "row" }, label), el("td", { class: "num" }, value));
  return el("table", { class: "usage" }, el("tbody", {},
    row("Versions", `${u.versions.total} (${statuses.map((s) => `${u.versions[s] || 0} ${s}`).join(", ")})`),
    row("Artifacts", `${u.artifacts.count} files, ${bytes(u.artifacts.bytes)}`),
    u.logged_model_files.count ? row("Logged model files", `${u.logged_model_files.count} files, ${bytes(u.logged_model_files.bytes)}`) : null,
    row("Metrics", `${u.metrics.series} series, ${u.metrics.points.toLocaleString()} points, ${bytes(u.metrics.bytes)}`),
    row("Total", bytes(u.total_bytes))));
}

function policyView(p) {
  const rules = [];
  if (p.fail_pending_after) rules.push(`fail pending versions after ${p.fail_pending_after}`);
  if (p.archive_after) rules.push(`archive ready versions after ${p.archive_after}`);
  if (p.erase_after) rules.push(`erase archived and failed versions after ${p.erase_after}`);
  const keeps = [];
  if (p.keep_last) keeps.push(`the last ${p.keep_last}`);
  for (const k of p.keep_best || []) keeps.push(`the best ${k.n} by ${k.order_by}`);
  if (p.keep_staged_within) keeps.push(`those on a stage within ${p.keep_staged_within}`);
  keeps.push("live versions and rollback targets");
  return el("div", { class: "policy" },
    el("p", {}, el("strong", {}, "Retention: "), rules.join("; "), "."),
    el("p", {}, "Keeps ", keeps.join(", "), "."),
    el("p", { class: "muted" }, `Applied by the job; next run ${p.next_run_at}${p.last_run_at ? `, last ${p.last_run_at}` : ""}. Set by ${p.updated_by}.`),
    p.last_error ? el("p", { class: "error", role: "alert" }, `Last run failed: ${p.last_error}`) : null);
}

function planView(name, plan) {
  const rows = plan.actions.map((a) => el("tr", { class: `action ${a.action}` },
    el("td", {}, link(`v${a.version}`, { model: name, version: a.version })),
    el("td", {}, a.action), el("td", { class: "mono" }, a.rule), el("td", {}, a.reason)));
  const kept = plan.kept.map((k) => el("tr", { class: "kept" },
    el("td", {}, link(`v${k.version}`, { model: name, version: k.version })),
    el("td", {}, `keep (not ${k.action})`), el("td", { class: "mono" }, k.kept_by), el("td", {}, k.reason)));
  if (!rows.length && !kept.length) return el("p", { class: "muted preview" }, "The policy has nothing to do now.");
  return el("div", { class: "scroll preview" }, el("table", {},
    el("caption", {}, `What the policy would do now (${plan.actions.length} action${plan.actions.length === 1 ? "" : "s"})`),
    el("thead", {}, el("tr", {}, el("th", {}, "Version"), el("th", {}, "Action"), el("th", {}, "Rule"), el("th", {}, "Why"))),
    el("tbody", {}, rows, kept)));
}

export async function storagePage(root, name) {
  const usage = el("section", { "aria-label": "Usage" });
  const policy = el("section", { "aria-label": "Retention policy" });
  fill(root, el("h1", {}, name), modelNav(name, "storage"), el("h2", {}, "Usage"), usage, el("h2", {}, "Retention"), policy);
  const shown = api(`${modelPath(name)}/usage`).then((u) => fill(usage, usageView(u))).catch((err) => showError(usage, err));
  const retention = (async () => {
    try {
      const p = await api(`${modelPath(name)}/retention`);
      const plan = await api(`${modelPath(name)}/retention/preview`, { method: "POST" });
      fill(policy, policyView(p), planView(name, plan));
    } catch (err) {
      if (err instanceof Problem && err.body.code === "retention_not_found") {
        fill(policy, el("p", { class: "muted" }, "No retention policy: every version is kept until it is erased by hand. An admin sets one with PUT ", el("code", {}, `${modelPath(name)}/retention`), "."));
      } else {
        showError(policy, err);
      }
    }
  })();
  await Promise.all([shown, retention]);
  ready(root);
}
