// The event feed: the newest events, then every new one as it is logged, from the event
// stream (`GET /api/v1/events/stream`, resumed with `Last-Event-ID` after a drop, so nothing
// is skipped or shown twice).

import { Problem, TOKEN_KEY, api, el, go, link, modelNav, params, ready, showError, when, fill } from "./lib.js?v={{lib.js}}";

const RETRY_MS = 2000;
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
  const pending = [];
  const show = () => {
    if (!pending.length) return;
    body.prepend(...pending.reverse().map((e) => { const r = row(e); r.classList.add("new"); return r; }));
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
    status.textContent = `${pending.length} new at ${when(new Date().toISOString())}`;
    pending.length = 0;
  };
  follow.addEventListener("change", () => { if (follow.checked) show(); });
  const query = new URLSearchParams();
  if (model) query.set("model", model);
  if (action) query.set("action", action);
  followStream(`/api/v1/events/stream?${query}`, cursor, alive, (e) => {
    pending.push(e);
    if (pending.length > MAX_ROWS) pending.shift();
    if (follow.checked) show();
  }, (err) => (err ? showError(problem, err) : problem.replaceChildren()));
}

/** Reads the event stream with the tab's token (which EventSource cannot send), from `after`;
 * after a drop it reconnects from the last event it had. Stops once `alive()` is false. */
async function followStream(path, after, alive, onEvent, onState) {
  let last = after;
  while (alive()) {
    const headers = { accept: "text/event-stream" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = `Bearer ${token}`;
    if (last) headers["last-event-id"] = String(last);
    const controller = new AbortController();
    const watch = setInterval(() => { if (!alive()) controller.abort(); }, 1000);
    try {
      const r = await fetch(path, { headers, signal: controller.signal });
      if (!r.ok) throw new Problem(r.status, await r.json().catch(() => null));
      onState(null);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = frame.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (!data) continue; // a heartbeat
          const e = JSON.parse(data);
          last = e.event_id;
          onEvent(e);
        }
      }
    } catch (err) {
      if (alive() && !(err instanceof DOMException && err.name === "AbortError")) onState(err);
    } finally {
      clearInterval(watch);
    }
    if (alive()) await new Promise((resolve) => { setTimeout(resolve, RETRY_MS); });
  }
}
