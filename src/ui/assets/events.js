// The event feed: the newest events, then every new one as it is logged (polled with `after`,
// which never skips an event whose transaction commits late).

import { api, el, go, link, modelNav, params, ready, showError, when, fill } from "./lib.js?v={{lib.js}}";

const POLL_MS = 2000;
/** The most rows the feed keeps: the oldest go as new ones come (a tab left open for days
 * stays small; the full log is the API's). */
const MAX_ROWS = 500;

function row(e) {
  return el("tr", { "data-event": e.event_id },
    el("td", { class: "mono" }, when(e.at)),
    el("td", {}, e.action),
    el("td", {}, e.model ? link(e.model, { model: e.model }) : "–"),
    el("td", {}, e.version ? link(`v${e.version}`, { model: e.model, version: e.version }) : ""),
    el("td", {}, e.stage || ""),
    el("td", {}, e.actor),
    el("td", { class: "hide-narrow mono details" }, Object.keys(e.details || {}).length ? JSON.stringify(e.details) : ""));
}

/** `alive()` turns false when the page moves to another view: the feed then stops. */
export async function eventsPage(root, alive) {
  const p = params();
  const model = p.get("model");
  const action = p.get("action") || "";
  const actionInput = el("input", { name: "action", value: action, placeholder: "stage.promoted", "aria-label": "Only this action" });
  const form = el("form", { class: "bar", onsubmit: (e) => { e.preventDefault(); go({ view: "events", model, action: actionInput.value.trim() }); } },
    el("label", {}, "Action ", actionInput), el("button", { type: "submit" }, "Filter"));
  const follow = el("input", { type: "checkbox", checked: true, id: "follow" });
  const status = el("span", { class: "muted", "aria-live": "polite" });
  const body = el("tbody", { "aria-live": "polite" });
  const problem = el("div");
  fill(root, el("h1", {}, model ? [link(model, { model }), " / events"] : "Events"),
    model ? modelNav(model, "events") : null, form,
    el("div", { class: "bar" }, el("label", {}, follow, " Follow new events"), status), problem,
    el("div", { class: "scroll" }, el("table", {}, el("thead", {}, el("tr", {},
      ["At", "Action", "Model", "Version", "Stage", "Actor"].map((h) => el("th", {}, h)), el("th", { class: "hide-narrow" }, "Details"))), body)));
  const q = (extra) => {
    const query = new URLSearchParams(extra);
    if (model) query.set("model", model);
    if (action) query.set("action", action);
    return `/api/v1/events?${query}`;
  };
  let cursor = null;
  try {
    const first = await api(q({ newest: "true", limit: "50" }));
    body.append(...first.items.reverse().map(row));
    if (!first.items.length) status.textContent = "No events yet.";
    cursor = first.next_cursor;
  } catch (err) {
    showError(problem, err);
    ready(root);
    return;
  }
  ready(root);
  const poll = async () => {
    if (!alive()) return;
    if (follow.checked) {
      try {
        const next = await api(q(cursor ? { after: cursor, limit: "100" } : { limit: "100" }));
        if (next.items.length) {
          body.prepend(...next.items.reverse().map((e) => { const r = row(e); r.classList.add("new"); return r; }));
          while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
          cursor = String(next.items[0].event_id);
          status.textContent = `${next.items.length} new at ${when(new Date().toISOString())}`;
        }
        problem.replaceChildren();
      } catch (err) {
        showError(problem, err);
      }
    }
    setTimeout(poll, POLL_MS);
  };
  setTimeout(poll, POLL_MS);
}
