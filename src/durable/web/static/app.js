// The live runs page: plain ES modules and EventSource, no build step.
//
// Routes live in the address's fragment, so Back works and a copied address shows the same view:
//   #  or  #runs?status=failed&workflow=...&cursor=...   the runs list, filtered, one page
//   #run/<id>                                             one run
//   #run/<id>/step/<step id>                              one run, with a step opened beside it
//   #token=...                                            log in with the token, then forget it

import { login } from "./api.js";
import { byId } from "./dom.js";
import { RunsList, parseListHash, setUpStartForm } from "./list.js";
import { RunView } from "./run.js";

const list = new RunsList();
const runView = new RunView();

function parseRoute(hash) {
  const match = /^run\/([^/]+)(?:\/step\/([^/]+))?$/.exec(hash);
  if (match) return { view: "run", runId: decodeURIComponent(match[1]), stepId: match[2] ? decodeURIComponent(match[2]) : null };
  return { view: "list", params: parseListHash(hash) };
}

function route() {
  const target = parseRoute(location.hash.slice(1));
  if (target.view === "run") {
    list.hide();
    runView.show(target.runId, target.stepId);
  } else {
    runView.close();
    list.show(target.params);
  }
}

async function boot() {
  const hash = location.hash.slice(1);
  if (hash.startsWith("token=")) {
    // A link like /#token=...: the fragment never reaches the server. Log in with it, then
    // take it out of the address bar (and so out of the history).
    history.replaceState(null, "", location.pathname + location.search);
    await login(decodeURIComponent(hash.slice(6)));  // a wrong one: the login form asks below
  }
  try {
    await setUpStartForm(list);  // the first API call: asks for the token if the server wants one
  } catch (error) {
    byId("start-message").textContent = String(error.message || error);
  }
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (event) => {  // Escape closes an open step
    const open = parseRoute(location.hash.slice(1));
    if (event.key === "Escape" && open.view === "run" && open.stepId) location.hash = `run/${encodeURIComponent(open.runId)}`;
  });
  route();
}

boot();
