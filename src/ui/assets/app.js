// The registry's web pages. They use only the public REST API, with the token kept in this
// tab's session storage. The view's state lives in the URL, so a pasted link opens the same
// view: `?model=m` (versions), `&view=stages|compare|storage|events`, `&version=n`.

import { comparePage } from "./compare.js?v={{compare.js}}";
import { eventsPage } from "./events.js?v={{events.js}}";
import { TOKEN_KEY, params, setRenderer, showError, whoami } from "./lib.js?v={{lib.js}}";
import { modelsPage, versionsPage } from "./models.js?v={{models.js}}";
import { stagesPage } from "./stages.js?v={{stages.js}}";
import { storagePage } from "./storage.js?v={{storage.js}}";
import { versionPage } from "./version.js?v={{version.js}}";

const main = () => document.getElementById("main");

/** Counts renders: a view that polls stops once another one is shown. */
let generation = 0;

async function render() {
  generation += 1;
  const mine = generation;
  const alive = () => mine === generation;
  const p = params();
  const model = p.get("model");
  const view = p.get("view");
  // Each render draws into an element of its own: one that a newer render replaced is out of
  // the page, so a slow answer to an older view can no longer overwrite the current one.
  const page = main();
  delete page.dataset.state;
  const root = document.createElement("div");
  root.append(document.createTextNode("Loading…"));
  page.replaceChildren(root);
  try {
    if (view === "events") await eventsPage(root, alive);
    else if (model && p.get("version")) await versionPage(root, model, p.get("version"));
    else if (model && view === "stages") await stagesPage(root, model);
    else if (model && view === "compare") await comparePage(root, model);
    else if (model && view === "storage") await storagePage(root, model);
    else if (model) await versionsPage(root, model);
    else await modelsPage(root);
  } catch (err) {
    if (alive()) {
      showError(root, err);
      page.dataset.state = "error";
    }
  }
}

async function showWhoami(refresh) {
  const out = document.getElementById("whoami");
  const me = await whoami(refresh);
  if (me.error) {
    out.textContent = me.error.status === 401 ? "no valid token" : "";
    return;
  }
  const scopes = (me.scopes || []).join(", ");
  out.textContent = `${me.name}${scopes ? ` (${scopes})` : ""}`;
}

function setupToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    input.value = "";
    showWhoami(true).then(render);
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showWhoami(true).then(render);
  });
}

setRenderer(render);
window.addEventListener("popstate", render);
setupToken();
showWhoami(false);
render();
