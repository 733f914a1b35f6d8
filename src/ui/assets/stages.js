// A model's stages: who holds each, its history, and (for tokens with promote scope) promote,
// roll back and clear, each sending the holder the page showed as `expected_version`, so a
// change made by someone else in the meantime is refused (409) instead of overwritten.

import { api, canPromote, el, enc, keyPath, link, modelNav, modelPath, num, params, ready, showError, when, fill } from "./lib.js?v={{lib.js}}";
import { Chart, colorOf, columns } from "./chart.js?v={{chart.js}}";

const VERB = { "stage.promoted": "promoted", "stage.rolled_back": "rolled back", "stage.cleared": "cleared" };

function historyList(items) {
  if (!items.length) return el("p", { class: "muted" }, "No history.");
  return el("ol", { class: "timeline" }, items.map((h) => el("li", {},
    el("span", { class: "mono" }, when(h.at)), " ",
    el("strong", {}, VERB[h.action] || h.action), " ",
    h.from_version !== null && h.from_version !== undefined ? `v${h.from_version} → ` : "",
    h.to_version !== null && h.to_version !== undefined ? `v${h.to_version}` : "(empty)",
    " by ", el("span", { class: "actor" }, h.actor),
    h.forced ? el("span", { class: "chip bad" }, "forced") : null,
    h.reason ? el("q", {}, h.reason) : null)));
}

/** What a promote onto the stage must pass, from its policy (null: it has none). */
function policyView(p) {
  if (!p) return null;
  const checks = [];
  if (p.require) checks.push(["requires ", el("code", {}, p.require)]);
  for (const r of p.no_regression || []) {
    checks.push([`no regression on ${r.metric} (${r.higher_is_better ? "higher" : "lower"} is better`, r.tolerance ? `, tolerance ${r.tolerance})` : ")"]);
  }
  if (p.after_stage) checks.push([`on ${p.after_stage} first`, p.min_soak ? ` for ${p.min_soak}` : ""]);
  if (p.schema_compatible) {
    const other = typeof p.schema_compatible === "object" ? p.schema_compatible.with_stage : null;
    checks.push([`schema compatible with the version on ${other || "this stage"}`]);
  }
  if (p.signed_by) {
    const rule = Array.isArray(p.signed_by) ? { keys: p.signed_by, path: "" } : p.signed_by;
    checks.push(["signed by ", el("strong", { class: "signed-by" }, rule.keys.join(" or ")),
      ...(rule.path ? [" over ", el("code", {}, rule.path)] : [" over every artifact"])]);
  }
  if (p.approvals) checks.push([`${p.approvals} approval${p.approvals === 1 ? "" : "s"}`]);
  if (!checks.length) return null;
  return el("div", { class: "policy" }, el("strong", {}, "Policy: "), checks.flatMap((c, i) => [i ? "; " : "", ...c]));
}

const GUARD_STATE = { ok: "ok", tripped: "tripped", holding: "holding", insufficient_data: "not enough data" };

/** A stage's guard: its state, each condition's verdict now, the trip it holds on (with
 * re-arm for promote tokens), and the guarded metrics of the live version on a time axis. */
function guardView(g, base, name, mayChange, status, rerender) {
  if (!g) return null;
  const bad = g.state === "tripped" || g.state === "holding";
  const rows = g.evaluation.map((v) => el("li", {},
    el("span", { class: `chip${v.state === "tripped" ? " bad" : ""}` }, GUARD_STATE[v.state] || v.state), " ", v.detail));
  const trip = g.trip ? el("p", { class: "error" },
    `Tripped ${when(g.trip.at)} on v${g.trip.version}`, g.trip.rollback_event_id ? " and rolled back" : "", ": ", el("q", {}, g.trip.reason || ""),
    mayChange ? [" ", el("button", {
      type: "button",
      onclick: () => act(status, "Re-arm the guard", () => api(`${base}/guard/rearm`, { method: "POST" }), rerender),
    }, "Re-arm")] : null) : null;
  const charts = el("div", { class: "charts" });
  if (g.version) {
    const metrics = [...new Set(g.conditions.map((c) => c.metric))];
    for (const key of metrics) {
      const chart = new Chart({ title: `${key} (v${g.version})` });
      charts.append(chart.root);
      api(`${modelPath(name)}/versions/${g.version}/metrics/${keyPath(key)}?max_points=${chart.width()}`).then((answer) => {
        const limits = g.evaluation.filter((v) => v.metric === key && v.limit !== null).map((v) => num(v.limit));
        chart.set([columns(`v${g.version}`, answer, colorOf(0))], { note: limits.length ? `limit ${limits.join(", ")}` : "" });
      }, (err) => showError(charts, err));
    }
  }
  return el("div", { class: "guard" },
    el("strong", {}, "Guard: "), el("span", { class: `chip${bad ? " bad" : ""}` }, GUARD_STATE[g.state] || g.state),
    ` ${g.action === "rollback" ? "rolls back" : "records"} when breached; every ${g.period}`,
    g.grace_until ? el("span", { class: "muted" }, ` (in grace until ${when(g.grace_until)})`) : null,
    rows.length ? el("ul", {}, rows) : null, trip, charts);
}

/** Runs a stage change, then shows the outcome and re-renders the page. */
async function act(status, what, call, rerender) {
  status.replaceChildren(el("span", { class: "muted" }, `${what}…`));
  try {
    const r = await call();
    if (r && r.request_id) {
      status.replaceChildren(el("p", { role: "status" }, `Approval needed: request ${r.request_id} is pending.`));
    } else {
      await rerender(`${what}: done${r && r.version !== undefined ? ` (now v${r.version})` : ""}.`);
    }
  } catch (err) {
    showError(status, err);
  }
}

export async function stagesPage(root, name) {
  const focus = params().get("stage");
  const [list, mayChange, { items: policies }, { items: guards }] = await Promise.all([
    api(`${modelPath(name)}/stages`), canPromote(name), api(`${modelPath(name)}/policies`),
    api(`${modelPath(name)}/guards`)]);
  const render = async (message) => {
    await stagesPage(root, name);
    if (message) root.querySelector(".flash").replaceChildren(el("p", { role: "status", class: "ok" }, message));
  };
  const cards = await Promise.all(list.items.map(async (s) => {
    const base = `${modelPath(name)}/stages/${enc(s.stage)}`;
    const history = await api(`${base}/history?limit=20`);
    const guard = guards.find((g) => g.stage === s.stage);
    const policy = policies.find((p) => p.stage === s.stage);
    const status = el("div", { "aria-live": "polite" });
    const reason = el("input", { name: "reason", placeholder: "Reason (recorded)", "aria-label": `Reason for ${s.stage}` });
    const controls = mayChange ? el("div", { class: "bar controls" }, reason,
      el("button", {
        type: "button",
        class: "rollback",
        onclick: () => act(status, `Roll back ${s.stage}`, () => api(`${base}/rollback`, {
          method: "POST", body: { expected_version: s.version, ...(reason.value.trim() ? { reason: reason.value.trim() } : {}) },
        }), render),
      }, "Roll back"),
      el("button", {
        type: "button",
        class: "clear",
        onclick: () => {
          if (!confirm(`Clear ${s.stage}? It will hold no version.`)) return;
          act(status, `Clear ${s.stage}`, () => api(base, { method: "DELETE" }), render);
        },
      }, "Clear")) : null;
    return el("section", { class: "stage-card", id: `stage-${s.stage}`, "data-stage": s.stage },
      el("h2", {}, s.stage, " ", el("span", { class: "holder" }, "holds ", link(`v${s.version}`, { model: name, version: s.version })),
        el("span", { class: "muted" }, ` since ${when(s.since)}`)),
      policyView(policy), guardView(guard, base, name, mayChange, status, render), controls, status, historyList(history.items));
  }));

  let promote = null;
  if (mayChange) {
    const holders = Object.fromEntries(list.items.map((s) => [s.stage, s.version]));
    const stage = el("input", { name: "stage", required: true, list: "stage-names", value: focus || (list.items[0] && list.items[0].stage) || "production", "aria-label": "Stage" });
    const version = el("input", { name: "version", type: "number", min: "1", required: true, "aria-label": "Version to promote", placeholder: "version" });
    const reason = el("input", { name: "reason", placeholder: "Reason (recorded)", "aria-label": "Reason for the promote" });
    const status = el("div", { "aria-live": "polite" });
    promote = el("form", {
      class: "bar promote",
      "aria-label": "Promote",
      onsubmit: (e) => {
        e.preventDefault();
        const target = stage.value.trim();
        const body = { version: Number(version.value), expected_version: holders[target] ?? null };
        if (reason.value.trim()) body.reason = reason.value.trim();
        act(status, `Promote v${version.value} to ${target}`,
          () => api(`${modelPath(name)}/stages/${enc(target)}/promote`, { method: "POST", body }), render);
      },
    }, el("label", {}, "Promote version ", version), el("label", {}, " to ", stage),
    el("datalist", { id: "stage-names" }, ["production", "staging", ...Object.keys(holders)].map((s) => el("option", { value: s }))),
    reason, el("button", { type: "submit" }, "Promote"), status);
  }

  const pending = await api(`${modelPath(name)}/promotion-requests?status=pending`).catch(() => ({ items: [] }));
  const requests = pending.items.length ? el("section", {}, el("h2", {}, "Pending promotion requests"),
    el("ul", {}, pending.items.map((r) => {
      const status = el("span", { "aria-live": "polite" });
      const decide = (verb) => act(status, `${verb} request`, () => api(`${modelPath(name)}/promotion-requests/${enc(r.id)}/${verb}`, { method: "POST", body: {} }), render);
      return el("li", {}, `v${r.version} → ${r.stage}, asked by ${r.requested_by} (${r.approvals.length}/${r.approvals_needed} approvals) `,
        mayChange ? [el("button", { type: "button", onclick: () => decide("approve") }, "Approve"), " ",
          el("button", { type: "button", onclick: () => decide("reject") }, "Reject")] : null, status);
    }))) : null;

  fill(root, el("h1", {}, link(name, { model: name }), " / stages"), modelNav(name, "stages"),
    el("div", { class: "flash", "aria-live": "polite" }), promote,
    mayChange ? null : el("p", { class: "muted" }, "This token may not change stages (it needs the promote scope)."),
    requests,
    cards.length ? cards : el("p", { class: "muted" }, "No stage holds a version."));
  ready(root);
}
